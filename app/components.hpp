#pragma once

#include "actors/cluster_coordinator.hpp"
#include "actors/runtime.hpp"
#include "app/config.hpp"
#include "app/validate.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "http/api.hpp"
#include "http/server.hpp"
#include "messaging/cluster_membership.hpp"
#include "messaging/kafka_relay.hpp"
#include "messaging/rate_limiter.hpp"
#include "messaging/read_model.hpp"
#include "messaging/redis_client.hpp"
#include "messaging/waiting_room.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/recovery.hpp"

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <functional>
#include <memory>

namespace rsv::app {

/// The parts of a running node. They are declared in the order the node
/// brings them up, and `stop` takes them down in exactly the reverse order:
/// this declaration is the shutdown order. In short: no new work from the
/// I/O threads, then none from the hashing pool, then the actors finish and
/// the store commits what it has queued (late answers land in the stopped
/// io_contexts and are dropped), then the rest goes. Each member's comment
/// says why it comes where it does.
///
/// Lifecycle: construct (the actor system starts), `start` once, then on a
/// signal `drain` and `stop`. When `start` fails, the members' destructors
/// take down what came up, in the same reverse order. Main thread only.
class server_stack {
public:
  server_stack(const serve_config& cfg, const checked_config& checked);
  ~server_stack();
  server_stack(const server_stack&) = delete;
  server_stack& operator=(const server_stack&) = delete;

  /// Recovers, wires and starts every part, then reports ready: the node
  /// serves. Answers exit_code::ok, or the code to exit with (the reason is
  /// logged).
  int start();

  /// /ready answers 200 while ready, 503 otherwise.
  void set_ready(bool ready);

  /// Closes the listener and waits, at most `deadline`, for the requests in
  /// progress to be answered. Answers how many were not.
  std::size_t drain(std::chrono::milliseconds deadline);

  /// Stops every part in reverse order of the declaration below, then
  /// releases the API and the server (which joins its I/O threads). The
  /// Kafka relay has what is left of `deadline` (asked when its turn comes)
  /// to hand over the rest of the outbox. Answers what the relay did.
  messaging::kafka_relay::stop_report
  stop(const std::function<std::chrono::milliseconds()>& deadline);

  /// Whether change events go to Kafka.
  bool relays() const { return relay_ != nullptr; }

private:
  int open_store();
  int open_postgres();
  int start_relay(persistence::pg_store_config& pg_cfg);
  void log_recorded_state() const;
  void make_redis();
  int start_runtime();
  void start_redis_services();
  void start_waiting_room_and_limits();
  void set_read_model_source();
  int start_http();
  http::api_config api_config_of_tokens() const;
  int add_services_to(http::api_config& api_cfg) const;
  void start_cluster(http::api_config& api_cfg);
  int create_demo_event();
  std::shared_ptr<crash_fault> crashes_of(crash_fault thread_faults::*member);

  const serve_config& cfg_;
  const checked_config& checked_;
  // Read at start, handed to the runtime (then empty).
  persistence::recovered_state recovered_;
  std::chrono::steady_clock::time_point recovery_started_;
  unsigned short bound_port_ = 0;

  // Up first, down last: actors' exit functors run on its threads until it
  // is destroyed, so what they touch is owned by them. The system keeps a
  // reference to its configuration.
  caf::actor_system_config caf_cfg_;
  caf::actor_system system_;
  std::shared_ptr<prometheus::Registry> registry_;
  // The chaos facility's crashes of the relay and the Redis threads: only
  // with --chaos, so that without it their injection points test a null.
  std::shared_ptr<thread_faults> chaos_threads_;
  // With --cluster: partition owners, and the store's cluster reads.
  std::shared_ptr<actors::ownership> owners_;
  std::shared_ptr<persistence::cluster_store> cluster_db_;
  // Made before its users, which add their scripts, and connected once they
  // have (start_redis_services). Stopped last: nothing sends to it once the
  // actors are gone and the store has committed.
  std::shared_ptr<messaging::redis_client> redis_;
  // Started before the store, which pokes it after each outbox commit.
  // Stopped after the store's last commits: it hands the rest of the outbox
  // to Kafka in the time left; what it does not finish stays in the outbox
  // and is relayed after the next start.
  std::shared_ptr<messaging::kafka_relay> relay_;
  // Stopped (closed) once the actors are done: its last acknowledgements
  // answer requests through the I/O threads' io_contexts, which the server
  // keeps until the end of `stop`.
  std::shared_ptr<persistence::store> store_;
  // The actors. Stopping waits for every actor to finish.
  std::unique_ptr<actors::runtime> runtime_;
  // With --cluster: drives the runtime (loads and drops partitions); the
  // slot lets the store report fenced writes before it exists.
  std::shared_ptr<std::atomic<actors::cluster_coordinator*>> coordinator_slot_;
  std::unique_ptr<actors::cluster_coordinator> coordinator_;
  // With Redis: made before the runtime (it is the actors' change sink),
  // started with the waiting room. Both read the directory, so they stop
  // before the runtime goes.
  std::shared_ptr<messaging::redis_read_model> read_model_;
  std::shared_ptr<messaging::waiting_room> queues_;
  std::shared_ptr<messaging::rate_limiter> limits_shared_; // nothing to stop
  // No new work from the hashing pool once stopped; no new work from the
  // I/O threads once the server is stopped, before it.
  std::unique_ptr<http::api> api_;
  std::unique_ptr<http::server> server_;
  // Up last, once forwarded requests can reach this node. Down first:
  // leaving the group hands the partitions over at once (no session
  // timeout to wait for); their events are dropped here first, and writes
  // still queued commit before the new owner raises the epochs, or are
  // fenced.
  std::unique_ptr<messaging::cluster_membership> membership_;
};

} // namespace rsv::app
