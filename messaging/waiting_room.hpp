#pragma once

#include "core/clock.hpp"
#include "messaging/front_end_services.hpp"
#include "messaging/redis_client.hpp"

#include <caf/expected.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <prometheus/registry.h>
#include <string>
#include <vector>

namespace rsv {
struct crash_fault; // core/supervised.hpp
} // namespace rsv

namespace rsv::messaging {

/// An event whose waiting room is enabled, as the admission loop sees it.
struct waiting_room_event {
  std::string event_id;
  int64_t admit_per_second = 0;
};

struct waiting_room_config {
  /// This node's name in the admission lease (distinct per node).
  std::string node_id;
  /// An admission lasts this long; joining after it queues again.
  int64_t admission_ttl_ms = 600'000;
  int64_t tick_ms = 100;
  int64_t lease_ms = 2000;
  /// The events to admit for, read every tick (from the directory).
  std::function<std::vector<waiting_room_event>()> events;
  std::shared_ptr<prometheus::Registry> registry;
  /// The chaos facility's crashes of the admission thread; may be null.
  std::shared_ptr<crash_fault> crashes;
};

/// The waiting rooms of all events, kept in Redis so that every node sees
/// the same queue:
///
/// - `rsv:wr:{<event>}:q`, a sorted set of the waiting customers scored by a
///   join number from `...:seq` (INCR), so the rank is the exact position;
/// - `...:adm`, a hash customer -> admission time (ms, Redis's clock);
/// - `...:lease`, the node that runs the event's admission loop, with an
///   expiry; `...:st`, the loop's last tick and fractional carry.
///
/// Each is touched by one Lua script per call, so joining, polling and
/// admitting are each one atomic round trip. Every node runs an admission
/// thread that ticks every `tick_ms`; for each event only the holder of the
/// lease admits (`admit_per_second` times the time since its last tick,
/// the oldest joins first); another node takes the lease over once it has
/// expired, so a dead node's loop stops for at most `lease_ms`.
///
/// Answers run on the Redis client's thread (see redis_client): they must
/// only post. Redis unreachable: errc::unavailable.
class waiting_room final : public waiting_room_service {
public:
  waiting_room(std::shared_ptr<redis_client> redis, waiting_room_config config);
  ~waiting_room() override;
  waiting_room(const waiting_room&) = delete;
  waiting_room& operator=(const waiting_room&) = delete;

  /// Puts the customer in the queue unless it is there or admitted (an
  /// admission past its time is dropped and the customer queues again).
  void join(const std::string& event_id, const std::string& customer_id,
            answer_fn done) override;

  /// Where the customer stands; `absent` when not queued (or the admission
  /// is past its time).
  void poll(const std::string& event_id, const std::string& customer_id,
            answer_fn done) override;

  /// Starts the admission thread.
  void start();
  /// Stops it (idempotent).
  void stop();

  /// Redis key of an event's queue, for tests and operators.
  static std::string key(const std::string& event_id, const char* part);

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace rsv::messaging
