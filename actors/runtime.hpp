#pragma once

#include "actors/directory.hpp"
#include "actors/ownership.hpp"
#include "actors/protocol.hpp"
#include "actors/section_state.hpp"
#include "core/clock.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "messaging/change_sink.hpp"
#include "persistence/recovery.hpp"
#include "persistence/store.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace rsv::persistence {
class cluster_store; // persistence/cluster_store.hpp
} // namespace rsv::persistence

namespace rsv::actors {

/// How a stale section (one whose write failed) retries loading itself from
/// the store; the reasons for the defaults are in core/limits.hpp. Times are
/// real (steady) time, not the domain clock: they pace calls to the store.
/// Tests stretch the timer to tell a reload that a request started from one
/// that the timer started.
struct reload_policy {
  /// A request starts a load if no load is under way and the last failed one
  /// is at least this long ago.
  millis request_gap_ms = limits::section_reload_gap_ms;
  /// The timer of an idle stale section: the first retry after
  /// `backoff_first_ms`, each next one after twice as long, up to
  /// `backoff_max_ms`.
  millis backoff_first_ms = limits::section_reload_gap_ms;
  millis backoff_max_ms = limits::section_reload_backoff_max_ms;
};

/// What the actors are built on: the store they write through, the sink that
/// receives committed changes, the clock, the metrics, and how stale sections
/// retry their reload.
struct runtime_deps {
  std::shared_ptr<persistence::store> store;
  std::shared_ptr<messaging::change_sink> sink;
  std::shared_ptr<clock_source> clock;
  std::shared_ptr<domain_metrics> metrics;
  reload_policy reload;
  /// How long a section keeps an ended hold in memory (section_state.hpp).
  millis hold_retention_ms = limits::ended_hold_retention_ms;
  /// When a section writes a snapshot, with a store that keeps them: after
  /// `writes` writes since the last, or `interval_ms` after the first.
  struct snapshot_policy {
    uint32_t writes = limits::snapshot_writes_default;
    millis interval_ms = limits::snapshot_interval_ms_default;
  } snapshots;
  /// In a cluster (docs/cluster.md), both set: which partitions this node
  /// serves, and the store's cluster reads and numbers. Null on a single
  /// node.
  std::shared_ptr<const ownership> cluster;
  std::shared_ptr<persistence::cluster_store> cluster_db;
  /// In a cluster: a write of this partition was fenced (it moved to
  /// another node). Called on any thread; must not block.
  std::function<void(uint32_t)> on_fenced;
};

/// The seats (held and booked) of each customer in each of `events`, from
/// their recorded holds: what the customer shards count for the limits.
std::unordered_map<std::string, std::unordered_map<std::string, int64_t>>
seats_by_event_and_customer(
    const std::vector<persistence::recovered_event>& events,
    const std::unordered_map<uint32_t, std::vector<recorded_hold>>& holds);

/// The customer shard actors: customer-scoped state (per-event seat counts
/// for limits, the bookings list, idempotency records) lives in the shard
/// that the customer id hashes to. Immutable after start.
struct customer_shards {
  std::vector<caf::actor> actors;
  const caf::actor& for_customer(const std::string& customer_id) const;
};

/// Spawns and owns the node's actors: the registry (events), the accounts
/// actor (customers), the customer shards, and through the registry every
/// section actor. Created once at start on the main thread; its accessors are
/// safe from any thread. Destroying it stops the actors.
class runtime {
public:
  runtime(caf::actor_system& system, runtime_deps deps,
          std::size_t customer_shard_count);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  caf::actor_system& system() { return system_; }
  const runtime_deps& deps() const { return deps_; }
  const directory& dir() const { return *directory_; }
  const caf::actor& registry() const { return registry_; }
  const caf::actor& accounts() const { return accounts_; }
  /// Rebuilds the node's memory from what the store recorded: customers,
  /// each customer's seats and bookings, every event with its sections'
  /// holds. Call once, before serving; blocks (bounded) until the directory
  /// has every event. Answers the number of events.
  caf::expected<std::size_t> recover(persistence::recovered_state state);

  const caf::actor& shard_for(const std::string& customer_id) const {
    return shards_->for_customer(customer_id);
  }

  /// The chaos facility (--chaos, docs/operations.md): kills a random
  /// section actor every `interval_ms` for `duration_ms`, replacing any
  /// schedule that runs. Thread-safe.
  void chaos_kill_random(millis interval_ms, millis duration_ms);
  /// Stops random kills, if any run; true when some did.
  bool chaos_stop();
  /// Whether random kills are running now.
  bool chaos_killing();

private:
  caf::actor_system& system_;
  runtime_deps deps_;
  std::shared_ptr<directory> directory_;
  std::shared_ptr<customer_shards> shards_;
  caf::actor registry_;
  caf::actor accounts_;
  std::mutex chaos_mutex_;
  caf::actor chaos_killer_; // guarded by chaos_mutex_
  std::chrono::steady_clock::time_point chaos_until_{}; // guarded too
};

/// Kills a section's actor as a crash would (the chaos facility); its
/// supervisor restarts it. False when it has none. Thread-safe.
bool kill_section(const section_entry& section, domain_metrics& metrics);

/// The actor behind runtime::chaos_kill_random.
caf::actor spawn_chaos_killer(caf::actor_system& system,
                              std::shared_ptr<const directory> dir,
                              std::shared_ptr<domain_metrics> metrics,
                              millis interval_ms, millis duration_ms);

/// A section actor's memory, shared with its supervisor (the registry): when
/// the actor dies, the next incarnation starts from it, so that its reload
/// can correct by the difference what followed memory (the active holds
/// gauge, the customers' seat counts). The actor alone touches it while it
/// lives; the registry takes it only after the actor's down message.
struct section_memory {
  std::unique_ptr<section_state> seats;
  /// What rsv_hold_records counts of this section: the actor adds the
  /// difference to seats->records_in_memory() after every message.
  std::size_t records_counted = 0;
};

/// A section's memory for its first start: `recorded` restored (holds due
/// meanwhile expire at the actor's first message) and counted in the gauge.
std::shared_ptr<section_memory>
make_section_memory(const std::shared_ptr<const section_layout>& layout,
                    int64_t hold_ttl_ms, std::vector<recorded_hold> recorded,
                    const runtime_deps& deps);

/// How a section actor starts: for the first time (serving its memory),
/// after its predecessor died (reloading from the store before it serves),
/// or failed after a restart storm (answering 503 only).
enum class section_start { fresh, restarted, failed };

/// Spawns one section actor for `entry` (whose layout is set) on `memory`.
/// The registry spawns and supervises them (registry_actor.cpp).
caf::actor spawn_section(caf::actor_system& system,
                         std::shared_ptr<section_entry> entry,
                         const runtime_deps& deps,
                         std::shared_ptr<const customer_shards> shards,
                         int64_t hold_ttl_ms, bool customer_limit,
                         std::shared_ptr<section_memory> memory,
                         section_start start = section_start::fresh);

caf::actor spawn_customer_shard(caf::actor_system& system,
                                const runtime_deps& deps);

/// Spawns the accounts actor: the one owner of the email -> customer index,
/// so that an email is registered at most once. It stores records; password
/// hashing happens before, off the actor threads (http/auth).
caf::actor spawn_accounts(caf::actor_system& system, const runtime_deps& deps);

/// Spawns the registry actor: the one writer of the directory. It validates
/// nothing (the front end did), makes event ids unique, spawns an event's
/// section actors, writes the event through the store, and publishes it.
caf::actor spawn_registry(caf::actor_system& system, const runtime_deps& deps,
                          std::shared_ptr<directory> dir,
                          std::shared_ptr<const customer_shards> shards);

} // namespace rsv::actors
