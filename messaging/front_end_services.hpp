#pragma once

// What the HTTP front end (http/) asks of the services that every node
// shares through Redis: the rate limits of the write routes, the waiting
// rooms and the availability read model. http/ sees only these interfaces,
// as the actors see only change_sink; the implementations on Redis
// (rate_limiter.hpp, waiting_room.hpp, read_model.hpp) are made by the
// wiring in app/.

#include "core/clock.hpp"
#include "core/model.hpp"

#include <caf/expected.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace rsv::messaging {

/// The outcome of one check, with the header values of
/// draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` lists the
/// limits that apply, `RateLimit` the one closest to running out.
struct rate_decision {
  bool allowed = true;
  int64_t retry_after_seconds = 0; // when refused: until the window ends
  std::string policy;              // RateLimit-Policy, empty: no header
  std::string remaining;           // RateLimit, empty: no header
};

/// Rate limits shared by every node, per customer and per client address
/// (implemented by rate_limiter). Thread-safe; see rate_limiter for on which
/// thread `done` runs.
class rate_limit_service {
public:
  virtual ~rate_limit_service() = default;

  /// Whether any limit is on; when not, nothing need be checked.
  virtual bool enabled() const = 0;

  /// Counts one request of `customer_id` (empty: unknown) from `address`
  /// (empty: unknown) and says whether it is within the limits. When the
  /// limits cannot be asked the request is allowed (fail open).
  virtual void check(const std::string& customer_id, const std::string& address,
                     std::function<void(rate_decision)> done) = 0;

  /// The decision at once, without a callback, when the calling thread can
  /// make it from what it holds; nullopt otherwise, and then `check` it.
  virtual std::optional<rate_decision>
  check_now(const std::string& customer_id, const std::string& address) = 0;

  /// Gives the calling thread, which runs `io`, what it keeps for its
  /// checks; call it on that thread before `io` runs, and drop the answer on
  /// the same thread once `io` no longer runs, before `io` is destroyed.
  virtual std::shared_ptr<void> attach(boost::asio::io_context& io) = 0;
};

/// Where a customer stands in an event's waiting room.
struct queue_standing {
  enum class kind { absent, waiting, admitted };
  kind what = kind::absent;
  int64_t position = 0;      // 1-based while waiting
  millis admitted_at_ms = 0; // Redis's clock, when admitted
};

/// The waiting rooms of all events, one queue per event that every node
/// sees the same (implemented by waiting_room). Answers may run on another
/// thread: they must only post. Cannot be asked: errc::unavailable.
class waiting_room_service {
public:
  using answer_fn = std::function<void(caf::expected<queue_standing>)>;

  virtual ~waiting_room_service() = default;

  /// Puts the customer in the queue unless it is there or admitted (an
  /// admission past its time is dropped and the customer queues again).
  virtual void join(const std::string& event_id, const std::string& customer_id,
                    answer_fn done) = 0;

  /// Where the customer stands; `absent` when not queued (or the admission
  /// is past its time).
  virtual void poll(const std::string& event_id, const std::string& customer_id,
                    answer_fn done) = 0;
};

/// A section's availability as the read model has it.
struct section_availability {
  seat_counts counts;
  /// Seat statuses in dense index order; empty when only counts were asked.
  std::vector<seat_status> statuses;
};

/// The availability of every node's sections, readable from any node
/// without asking the owning actor (implemented by redis_read_model).
/// Answers may run on another thread: they must only post. errc::unavailable
/// when it cannot answer (no copy, or not reachable): then ask the actors.
class read_model_service {
public:
  virtual ~read_model_service() = default;

  /// The counts of the given sections of one event, in that order.
  virtual void read_counts(
      const std::string& event_id, const std::vector<std::string>& section_ids,
      std::function<void(caf::expected<std::vector<seat_counts>>)> done) = 0;

  /// One section's statuses (`seat_count` seats).
  virtual void
  read_seats(const std::string& event_id, const std::string& section_id,
             uint32_t seat_count,
             std::function<void(caf::expected<section_availability>)> done) = 0;
};

} // namespace rsv::messaging
