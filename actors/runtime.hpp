#pragma once

#include "actors/directory.hpp"
#include "actors/protocol.hpp"
#include "core/clock.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "messaging/change_sink.hpp"
#include "persistence/recovery.hpp"
#include "persistence/store.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <memory>
#include <string>
#include <vector>

namespace rsv {

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
  std::shared_ptr<rsv::store> store;
  std::shared_ptr<rsv::change_sink> sink;
  std::shared_ptr<clock_source> clock;
  std::shared_ptr<domain_metrics> metrics;
  reload_policy reload;
};

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
  caf::expected<std::size_t> recover(recovered_state state);

  const caf::actor& shard_for(const std::string& customer_id) const {
    return shards_->for_customer(customer_id);
  }

private:
  caf::actor_system& system_;
  runtime_deps deps_;
  std::shared_ptr<directory> directory_;
  std::shared_ptr<customer_shards> shards_;
  caf::actor registry_;
  caf::actor accounts_;
};

/// Spawns one section actor for `entry` (whose layout is set). Exposed for
/// tests; the registry uses it for every section of a new event.
caf::actor spawn_section(caf::actor_system& system,
                         std::shared_ptr<section_entry> entry,
                         const runtime_deps& deps,
                         std::shared_ptr<const customer_shards> shards,
                         int64_t hold_ttl_ms, bool customer_limit,
                         std::vector<recorded_hold> recorded = {});

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

} // namespace rsv
