#pragma once

#include "core/model.hpp"
#include "messaging/change_sink.hpp"
#include "messaging/front_end_services.hpp"
#include "messaging/redis_client.hpp"

#include <caf/expected.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <prometheus/registry.h>
#include <string>
#include <vector>

namespace rsv {
struct crash_fault; // core/supervised.hpp
} // namespace rsv

namespace rsv::messaging {

struct read_model_config {
  std::shared_ptr<prometheus::Registry> registry;
  /// The chaos facility's crashes of the publishing thread; may be null.
  std::shared_ptr<crash_fault> crashes;
};

/// The availability read model: every committed change of a section is
/// published to Redis after its acknowledgement (a change sink), so that any
/// node can answer event counts and seat maps without asking the owning
/// actor. Per section, `rsv:rm:{<event>}:<section>:seats` is a bitmap of 2
/// bits per seat (BITFIELD u2: 0 free, 1 held, 2 booked) and `...:counts` a
/// hash of free, held and booked. Changes gather for a couple of milliseconds
/// and go out as one Lua script call per event, which sets the seats' bits
/// and moves the counts by what the bits were, so counts always agree with
/// the bitmap. All writes of one event go through one Redis connection, in
/// order.
///
/// Redis is not the truth: a section whose keys are missing (a new event, a
/// restarted Redis) is published whole from its actor's seat map (the
/// snapshot source set by the wiring), and so is every section after each
/// reconnection. The staleness (from a change's acknowledgement to its
/// script's success in Redis) is the histogram
/// rsv_read_model_staleness_seconds.
///
/// Thread-safe; `publish` never blocks. Reads answer on the Redis client's
/// thread (they must only post) with errc::unavailable when Redis cannot be
/// asked or has no copy, and the caller then asks the actors.
class redis_read_model final : public change_sink, public read_model_service {
public:
  /// `next` receives every change too (the counting sink).
  redis_read_model(std::shared_ptr<redis_client> redis,
                   std::shared_ptr<change_sink> next, read_model_config config);
  ~redis_read_model() override;

  /// What publishes a section whole: asked with its event id, section id
  /// and section number; it must answer through `publish_section` (or not at
  /// all when the section is gone). Set once, before `start`.
  using snapshot_source = std::function<void(uint32_t section_no)>;
  void set_snapshot_source(snapshot_source all_or_one,
                           std::function<void()> every_section);

  void publish(const seat_change& change) override;

  /// Writes a section whole (from its actor's seat map).
  void publish_section(const std::string& event_id,
                       const std::string& section_id,
                       const std::vector<seat_status>& statuses);

  /// The counts of the given sections of one event, in that order.
  void read_counts(const std::string& event_id,
                   const std::vector<std::string>& section_ids,
                   std::function<void(caf::expected<std::vector<seat_counts>>)>
                       done) override;

  /// One section's statuses (`seat_count` seats).
  void read_seats(
      const std::string& event_id, const std::string& section_id,
      uint32_t seat_count,
      std::function<void(caf::expected<section_availability>)> done) override;

  /// Starts the thread that publishes whole sections when asked (missing
  /// keys) and after every reconnection.
  void start();
  void stop();

  static std::string key(const std::string& event_id,
                         const std::string& section_id, const char* part);

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace rsv::messaging
