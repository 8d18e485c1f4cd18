#pragma once

#include "core/clock.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace prometheus {
class Counter;
class Registry;
} // namespace prometheus

namespace rsv::http {

/// How fast one key may go: `per_minute` on average, up to `burst` at once.
/// `per_minute` 0 means no limit.
struct throttle_rate {
  int64_t per_minute = 0;
  int64_t burst = 1;
};

/// Counts per key in this process (GCRA, the token bucket written as one
/// time per key), bounded in memory. Thread-safe: sharded, a mutex per shard.
class key_throttle {
public:
  key_throttle(throttle_rate rate, std::size_t keys_max);

  /// Takes one from `key`'s allowance at `now_ms`: 0 when allowed, else the
  /// milliseconds until it would be (and nothing is taken). A key that is
  /// new when its shard is full of keys that are all busy is let through
  /// untracked (`untracked` set), so that memory stays bounded.
  int64_t take(std::string_view key, millis now_ms, bool* untracked = nullptr);

  bool enabled() const { return interval_ms_ > 0; }
  std::size_t keys() const;

private:
  static constexpr std::size_t shard_count = 16;
  struct shard {
    mutable std::mutex mutex;
    // The key's "theoretical arrival time": its allowance is full when
    // this is not after now, so such keys can be forgotten.
    std::unordered_map<std::string, millis> next_ms;
  };
  int64_t interval_ms_ = 0;  // one request's share of the rate
  int64_t tolerance_ms_ = 0; // how far ahead a burst may run
  std::size_t keys_per_shard_max_;
  std::array<shard, shard_count> shards_;
};

/// The throttle of password checks, logins and registrations alike: per
/// client address (one address cannot fill the hashing pool, and with it
/// every other client's logins) and per email (one account cannot be
/// guessed at faster than a person types). In-process, so it works without
/// Redis; a cluster's nodes each count their own (docs/operations.md).
///
/// Created once by the api; `admit` is called from any I/O thread.
class auth_throttle {
public:
  struct config {
    throttle_rate per_address;
    throttle_rate per_email;
    std::size_t keys_max = 100'000; // per kind
    prometheus::Registry* registry = nullptr;
  };
  explicit auth_throttle(const config& cfg);

  struct decision {
    bool allowed = true;
    int64_t retry_after_seconds = 0;
    /// "address" or "email" when refused.
    const char* by = "";
  };
  /// Counts one password check for `address` (the client's, as text;
  /// empty: unknown, not counted) and `email` (normalised).
  decision admit(std::string_view address, std::string_view email,
                 millis now_ms);

private:
  key_throttle address_;
  key_throttle email_;
  prometheus::Counter* refused_address_ = nullptr;
  prometheus::Counter* refused_email_ = nullptr;
  prometheus::Counter* untracked_ = nullptr;
};

/// The key an address is counted under: IPv4 as it is, an IPv4-mapped IPv6
/// address as its IPv4 address, any other IPv6 address as its /64 (one
/// subscriber commonly has a whole /64, so counting single IPv6 addresses
/// would count nothing). Text that is no address is its own key.
std::string address_key(std::string_view address);

} // namespace rsv::http
