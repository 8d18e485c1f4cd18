#pragma once

#include "messaging/front_end_services.hpp"
#include "messaging/redis_client.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <prometheus/registry.h>
#include <string>

namespace rsv::messaging {

struct rate_limit_config {
  /// Requests per window per customer and per client address; 0 turns
  /// that limit off.
  int64_t customer_per_window = 0;
  int64_t address_per_window = 0;
  int64_t window_seconds = 10;
  /// Request numbers reserved ahead for a key that keeps coming, at most
  /// (see below); 0: every request is counted in Redis.
  int64_t lease_max = 0;
  std::shared_ptr<prometheus::Registry> registry;
};

/// Rate limits shared by every node: fixed windows counted in Redis (keys
/// `rsv:rl:c:<customer>` and `rsv:rl:a:<address>`, each window starting at
/// the first request and ending with the key's expiry, Redis's clock).
///
/// Each HTTP I/O thread has a Redis connection of its own (`attach`, a
/// redis_pipe driven by the thread's io_context): a check made on that
/// thread goes out from it and is answered on it, with no other thread woken
/// and no lock taken. A check from any other thread goes through the shared
/// redis_client.
///
/// Checks are batched per connection: while limits::rate_limit_calls_max
/// script calls are in flight, new checks wait, and the next call counts all
/// of them at once (each distinct key moved by INCRBY of its requests, the
/// requests then numbered in arrival order), so under load one Lua call and
/// one round trip serve many requests, and a lone request still goes out at
/// once.
/// When Redis cannot be asked the request is allowed (fail open) and
/// rsv_rate_limit_requests_total{outcome="fail_open"} counts it: Redis is
/// never in the way of a booking.
///
/// Thread-safe. On an attached thread `done` runs on that thread, later or
/// at once; otherwise on the Redis client's thread, or at once on the
/// caller's when Redis is down: there it must only post.
class rate_limiter final : public rate_limit_service {
public:
  rate_limiter(std::shared_ptr<redis_client> redis, rate_limit_config config);
  ~rate_limiter() override;

  bool enabled() const override {
    return config_.customer_per_window > 0 || config_.address_per_window > 0;
  }

  /// Counts one request of `customer_id` (empty: unknown) from `address`
  /// (empty: unknown) and says whether it is within the limits.
  void check(const std::string& customer_id, const std::string& address,
             std::function<void(rate_decision)> done) override;

  /// The decision at once, on an attached thread whose leases hold a
  /// number for every key of the request (no Redis call, no callback);
  /// nullopt otherwise, and then `check` it.
  std::optional<rate_decision> check_now(const std::string& customer_id,
                                         const std::string& address) override;

  /// Gives the calling thread, which runs `io`, a Redis connection of its
  /// own for its checks; call it on that thread before `io` runs. The
  /// answer holds the connection: drop it on the same thread once `io` no
  /// longer runs, before `io` is destroyed.
  std::shared_ptr<void> attach(boost::asio::io_context& io) override;

  /// ok while every attached thread's connection is up (and when none is
  /// attached), down otherwise.
  service_state health() const;

  struct batcher;
  struct lane;
  struct lanes;

private:
  rate_limit_config config_;
  std::shared_ptr<batcher> batcher_;
  std::shared_ptr<lanes> lanes_;
  /// The shared client: checks from threads without a connection of their
  /// own, and the endpoint and timeouts of those connections.
  std::shared_ptr<redis_client> redis_;
};

} // namespace rsv::messaging
