#pragma once

#include "actors/ownership.hpp"
#include "core/clock.hpp"
#include "core/limits.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace rsv::persistence {
class cluster_store;
struct recovered_event;
} // namespace rsv::persistence

namespace rsv::actors {

class runtime;

struct coordinator_config {
  /// How often the owners of other partitions are read from PostgreSQL, so
  /// that forwarding follows moves without waiting for a misdirected answer.
  millis refresh_interval_ms = limits::cluster_owners_refresh_ms_default;
  /// After a failed epoch raise or load, the next attempt.
  millis retry_ms = 250;
  /// Tells the store the layouts of events it now writes for (their seat
  /// ids); may be empty.
  std::function<void(const std::vector<persistence::recovered_event>&)>
      learn_layouts;
};

/// The cluster coordinator: the one actor that changes this node's
/// `ownership` (docs/cluster.md, "Handoff"). On assignment (from the Kafka
/// consumer group) it marks the partitions loading, raises their epochs in
/// PostgreSQL, loads their events under the new epochs and hands them to the
/// registry, then marks them local. On revocation, loss or a fenced write it
/// marks them remote and has the registry drop their events. It reads the
/// owners of the other partitions every `refresh_interval_ms`.
///
/// Its functions below are thread-safe and may be called from the
/// membership's poll thread.
class cluster_coordinator {
public:
  cluster_coordinator(caf::actor_system& system, runtime& rt,
                      std::shared_ptr<ownership> owners,
                      std::shared_ptr<persistence::cluster_store> db,
                      coordinator_config config);
  ~cluster_coordinator();
  cluster_coordinator(const cluster_coordinator&) = delete;
  cluster_coordinator& operator=(const cluster_coordinator&) = delete;

  void assigned(std::vector<uint32_t> partitions);
  /// Returns once the registry dropped the partitions' events, or after
  /// `wait_ms`; answers whether it finished.
  bool revoked(std::vector<uint32_t> partitions, millis wait_ms);
  /// The group says the assignment was lost (not handed over): the
  /// partitions are served on until another node takes them (its higher
  /// epoch in PostgreSQL, or a fenced write, tells).
  void lost(std::vector<uint32_t> partitions);
  /// A write of the partition was fenced: it moved without this node
  /// hearing of it yet.
  void fenced(uint32_t partition);
  /// Reads the owners from PostgreSQL now; `then` runs afterwards (on a
  /// store thread), whether the read worked or not.
  void refresh(std::function<void()> then);

  const ownership& owners() const { return *owners_; }

private:
  std::shared_ptr<ownership> owners_;
  caf::actor actor_;
};

} // namespace rsv::actors
