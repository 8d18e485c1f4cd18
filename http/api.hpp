#pragma once

#include "actors/runtime.hpp"
#include "core/ids.hpp"
#include "http/api_types.hpp"
#include "http/auth.hpp"
#include "http/auth_throttle.hpp"
#include "http/client_address.hpp"
#include "http/hashing_pool.hpp"
#include "http/peer_client.hpp"
#include "http/router.hpp"
#include "http/seat_maps.hpp"
#include "http/static_files.hpp"
#include "messaging/front_end_services.hpp"

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <prometheus/registry.h>
#include <string>
#include <vector>

namespace rsv::persistence {
class cluster_store; // persistence/cluster_store.hpp
} // namespace rsv::persistence

namespace rsv {
struct thread_faults; // core/supervised.hpp
} // namespace rsv

namespace rsv::http {

struct api_config {
  std::string admin_token;
  /// Signs session and admission tokens; it and the accepted secrets
  /// (previous ones, while they rotate) verify them.
  std::string token_secret;
  std::vector<std::string> token_secrets_accepted;
  int64_t session_ttl_seconds = 24 * 3600;
  password_cost hash_cost;
  /// Threads that hash and check passwords, and how many such jobs may
  /// wait for them (beyond: 503 at once).
  std::size_t hash_threads = 1;
  std::size_t hash_queue_max = 32;
  /// The request deadline (server_config): a password job still waiting
  /// when it passes is dropped unhashed.
  int64_t request_timeout_ms = 5000;
  /// Logins and registrations per client address and per email (0 per
  /// minute: no limit).
  throttle_rate auth_per_address;
  throttle_rate auth_per_email;
  /// Health of optional services; unset means "disabled".
  std::function<service_state()> kafka_health;
  std::function<service_state()> redis_health;
  /// The web pages served from `/` (GET of any path outside the API's
  /// routes); null means there are none and such paths answer 404.
  std::shared_ptr<const static_files> web_pages;
  /// The waiting room (Redis); null when Redis is not configured, and then
  /// joining an event's enabled waiting room answers 503.
  std::shared_ptr<messaging::waiting_room_service> waiting_room;
  /// How long an admission token is valid after the admission.
  int64_t admission_ttl_seconds = 600;
  /// Shared rate limits of the write routes; null or disabled: none.
  std::shared_ptr<messaging::rate_limit_service> rate_limits;
  /// The availability read model in Redis; with `reads_from_read_model`
  /// event counts and seat maps are answered from it (the actors and the
  /// directory when it cannot answer).
  std::shared_ptr<messaging::read_model_service> read_model;
  bool reads_from_read_model = false;
  /// Proxies (load balancers) whose X-Forwarded-For names the client:
  /// requests from them count under that address (per-address throttles
  /// and rate limits). Empty: the connection's peer is the client.
  std::vector<address_range> trusted_proxies;
  /// The chaos facility's admin routes (--chaos): off, they answer 404.
  bool chaos = false;
  /// With chaos: the crashes it injects into the relay and the Redis
  /// threads (those that run: kafka_health, redis_health, read_model).
  std::shared_ptr<rsv::thread_faults> chaos_threads;

  /// In a cluster (docs/cluster.md); all null or empty on a single node.
  /// Which node serves which partition.
  std::shared_ptr<const actors::ownership> cluster;
  /// Reads what no single node has in memory: the event list, a
  /// customer's bookings across events.
  std::shared_ptr<persistence::cluster_store> cluster_db;
  /// Reads the owners again now, then runs the continuation (any thread).
  std::function<void(std::function<void()>)> refresh_owners;
  /// The value of X-Rsv-Forwarded that marks a request forwarded by a node
  /// of this cluster (derived from the token secret, which all share), and
  /// those of the accepted secrets, which nodes that have not rotated yet
  /// still send.
  std::string forward_marker;
  std::vector<std::string> forward_markers_accepted;
  /// Connections to the other nodes (per I/O thread).
  peer_config peers;
  /// The consumer group's view for /health: state of the membership.
  std::function<service_state()> membership_health;
};

/// The HTTP API of the contract, independent of sockets: takes a parsed
/// request, answers through `respond_fn` exactly once, from whichever thread
/// finishes the work (an I/O thread for answers it knows at once, an actor
/// thread for answers from actors, the hashing pool for passwords).
///
/// Routes are the rows of the route table (http/router.cpp); `handle` runs
/// the checks a row asks for, the decode stage (http/decode.hpp), then the
/// row's handler. The handlers are in api_<family>.cpp and chaos_api.cpp.
///
/// Created once at start; `handle` is called concurrently by every I/O
/// thread and never blocks.
class api final : public route_handlers {
public:
  api(actors::runtime& rt, api_config config,
      std::shared_ptr<prometheus::Registry> registry);
  ~api() override;

  void handle(api_request req, respond_fn done);

  /// Called by each I/O thread, on it, before it runs `io`: what the API
  /// keeps per thread (the rate limits' own Redis connection). The thread
  /// drops the answer once `io` no longer runs.
  std::shared_ptr<void> io_thread_started(boost::asio::io_context& io);

  /// `/ready` answers 200 only while ready: false while starting and once
  /// draining begins.
  void set_ready(bool ready) { ready_ = ready; }
  bool ready() const { return ready_; }

  /// Waits for password hashing and seat map rendering in progress; what
  /// is still queued for hashing is answered unhashed. Call after the server
  /// stopped and before the actors stop; the api must outlive the actors,
  /// whose answers may still call into it.
  void stop() {
    hashing_.stop();
    seat_maps_.stop();
  }

private:
  using context = request_context;

  // The handlers of the route table (route_handlers), by route family.
  // Operations (api_operations.cpp).
  void health(context& ctx) override;
  void readiness(context& ctx) override;
  void metrics(context& ctx) override;
  void version(context& ctx) override;
  // Accounts (api_accounts.cpp).
  void create_customer(context& ctx) override;
  void create_session(context& ctx) override;
  // Events and their waiting rooms (api_events.cpp).
  void list_events(context& ctx) override;
  void create_event(context& ctx) override;
  void get_event(context& ctx) override;
  void get_seats(context& ctx) override;
  void get_stats(context& ctx) override;
  void queue_join(context& ctx) override;
  void queue_ticket(context& ctx) override;
  // Holds and bookings (api_holds.cpp).
  void create_hold(context& ctx) override;
  void get_hold(context& ctx) override;
  void release_hold(context& ctx) override;
  void create_booking(context& ctx) override;
  void list_bookings(context& ctx) override;
  void get_booking(context& ctx) override;
  void cancel_booking(context& ctx) override;
  // The chaos facility (chaos_api.cpp).
  void chaos_state(context& ctx) override;
  void chaos_clear(context& ctx) override;
  void chaos_kill_section(context& ctx) override;
  void chaos_kill_random(context& ctx) override;
  void chaos_store(context& ctx) override;
  void chaos_relay(context& ctx) override;
  void chaos_redis(context& ctx) override;

  /// Answers a request that matched no route (web pages, 404, 405).
  void unmatched(api_request& req, route_match& match,
                 const respond_fn& done) const;
  /// The route's checks in the row's order (router.hpp, route_def), then
  /// the decode stage and the row's handler.
  void run(context& ctx);
  void decode_and_handle(context& ctx);

  /// Counts a login or registration against the client's address and the
  /// email; false, with 429 answered, when either is over its rate.
  bool admit_password_check(context& ctx, const std::string& email);
  hashing_pool::clock::time_point password_check_deadline() const;
  static api_response password_checks_busy();
  static api_response password_check_late();

  bool require_admin(context& ctx);
  bool require_customer(context& ctx);
  /// Whether a customer may hold seats of `event`: with its row's waiting
  /// room gate and the event's waiting room on, only with the admission
  /// token of its ticket; 403 answered otherwise.
  bool admitted(context& ctx, const actors::event_entry& event);
  /// Checks the shared rate limits, then routes the request (429 when over).
  void limited(std::shared_ptr<context> ctx);
  /// Answers 429, or routes the request with the RateLimit headers added.
  void after_limits(context& ctx, messaging::rate_decision decision);
  /// Runs `body` under the request's Idempotency-Key, if it has one.
  void idempotent(context& ctx, std::function<void(context&)> body);
  /// In a cluster: runs the request here when this node serves the
  /// request's event (or it names none), else forwards it to the owner; a
  /// misdirected answer (421) makes it read the owners again and route once
  /// more.
  void route(context& ctx, bool may_retry = true);
  void forward(std::shared_ptr<context> ctx, std::string owner, bool may_retry);
  /// The partition of the event a request names, if it names one.
  std::optional<uint32_t> partition_of_request(context& ctx);
  /// Whether the request came from a node of this cluster.
  bool forwarded(const context& ctx) const;
  /// The answer for an event, section, hold or booking this node does not
  /// have: `not_found`, unless this is a cluster node that no longer serves
  /// the partition (it moved while the request waited, for its
  /// Idempotency-Key say): then 503 with Retry-After, which is not kept as
  /// the key's answer, so the retry reaches the new owner.
  api_response absent(api_response not_found,
                      std::optional<uint32_t> partition) const;
  std::optional<uint32_t> event_partition(const std::string& event_id) const;
  std::optional<uint32_t>
  record_partition(const std::optional<record_ref>& ref) const;
  /// The event the route's first parameter names; null, with 404 answered
  /// (or 503 where it moved, as absent()), when this node has none.
  std::shared_ptr<const actors::event_entry> event_of_route(context& ctx);
  /// Sends `Request` about the hold or booking the route's id names to its
  /// section, answered with `render`; `missing` (not_found) when no section
  /// has it (api_holds.cpp).
  template <class Request, class Render>
  void send_to_record(context& ctx, caf::error (*missing)(), Render render);

  actors::runtime& rt_;
  api_config config_;
  token_signer tokens_;
  admission_signer admissions_;
  std::shared_ptr<prometheus::Registry> registry_;
  hashing_pool hashing_;
  auth_throttle throttle_;
  std::string dummy_hash_; // compared against for unknown emails
  std::shared_ptr<const peer_metrics> peer_metrics_; // in a cluster
  seat_maps seat_maps_{limits::seat_map_render_threads};
  std::atomic<bool> ready_{false};
};

} // namespace rsv::http
