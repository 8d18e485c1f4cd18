#pragma once

#include "core/limits.hpp"
#include "http/api_types.hpp"

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rsv::http {

/// One request on its way through the API (http/api_context.hpp).
struct request_context;

/// The handlers the route table names, one per row; `api` implements them
/// (api_*.cpp, chaos_api.cpp). Pure virtual so that the table can name a
/// handler without its definition: the fuzzer (fuzz/) compiles the table,
/// the router and the decode stage, but not the API, which needs the actor
/// system. A handler runs after the checks its row asks for (api.cpp).
class route_handlers {
public:
  virtual ~route_handlers() = default;

  virtual void health(request_context& ctx) = 0;
  virtual void readiness(request_context& ctx) = 0;
  virtual void metrics(request_context& ctx) = 0;
  virtual void version(request_context& ctx) = 0;
  virtual void create_customer(request_context& ctx) = 0;
  virtual void create_session(request_context& ctx) = 0;
  virtual void list_events(request_context& ctx) = 0;
  virtual void create_event(request_context& ctx) = 0;
  virtual void get_event(request_context& ctx) = 0;
  virtual void get_seats(request_context& ctx) = 0;
  virtual void get_stats(request_context& ctx) = 0;
  virtual void queue_join(request_context& ctx) = 0;
  virtual void queue_ticket(request_context& ctx) = 0;
  virtual void create_hold(request_context& ctx) = 0;
  virtual void get_hold(request_context& ctx) = 0;
  virtual void release_hold(request_context& ctx) = 0;
  virtual void create_booking(request_context& ctx) = 0;
  virtual void list_bookings(request_context& ctx) = 0;
  virtual void get_booking(request_context& ctx) = 0;
  virtual void cancel_booking(request_context& ctx) = 0;
  virtual void chaos_state(request_context& ctx) = 0;
  virtual void chaos_clear(request_context& ctx) = 0;
  virtual void chaos_kill_section(request_context& ctx) = 0;
  virtual void chaos_kill_random(request_context& ctx) = 0;
  virtual void chaos_store(request_context& ctx) = 0;
  virtual void chaos_relay(request_context& ctx) = 0;
  virtual void chaos_redis(request_context& ctx) = 0;
};

/// Who may call a route: anyone, the operator (the admin token), or a
/// customer (a session token; the handler knows the customer's id).
enum class auth_kind { none, admin, customer };

/// What a route's body is decoded into before its handler runs
/// (http/decode.hpp); `none` ignores any body.
enum class body_kind {
  none,
  event,        // parse_event
  hold,         // parse_hold
  registration, // parse_registration
  login,        // parse_login
  booking,      // parse_booking: the hold to book
  json_object,  // any JSON object (the chaos routes read their members)
};

/// What the first path parameter names: decoded with the body, and in a
/// cluster it decides which node serves the request.
enum class path_kind { none, event, ticket, hold, booking };

/// One row of the route table: method and path, the handler, and what the
/// API does before the handler runs, in this order: Cache-Control no-store,
/// the token check, the Idempotency-Key, then the decode stage (415, 400,
/// 422). The shared rate limits run first of all, before the token check.
struct route_def {
  method verb = method::other;
  std::string_view pattern; // '{}' is one path segment parameter
  const char* name = "";    // e.g. "POST /v1/holds", for metrics
  void (route_handlers::*handler)(request_context&) = nullptr;
  auth_kind auth = auth_kind::none;
  /// Runs under its Idempotency-Key, if the request has one.
  bool idempotent = false;
  /// Counted against the shared rate limits of the write routes.
  bool rate_limited = false;
  std::size_t body_bytes_max = limits::body_bytes_max;
  body_kind body = body_kind::none;
  path_kind path = path_kind::none;
  /// For an event with an enabled waiting room, the caller needs the
  /// admission token of its ticket (X-Admission-Token).
  bool waiting_room_gate = false;
  /// The answer holds a credential: no cache on the way may keep it (as
  /// OAuth's token endpoint answers, RFC 6749 section 5.1).
  bool no_store = false;
  /// The chaos facility's routes exist only with --chaos.
  bool chaos = false;
};

/// The paths of the routes that code outside the table names: a route's
/// identity is its path pattern, whatever the method.
namespace route_id {
constexpr std::string_view seats = "/v1/events/{}/sections/{}/seats";
constexpr std::string_view hold = "/v1/holds/{}";
} // namespace route_id

/// The outcome of matching a request line: a route with its path
/// parameters, or not found, or a known path with the wrong method (with
/// the methods the path allows, for the Allow header).
struct route_match {
  enum class kind { found, not_found, wrong_method } result = kind::not_found;
  const route_def* def = nullptr; // the row found
  std::string_view route;         // its pattern
  const char* name = "unmatched"; // e.g. "POST /v1/holds", for metrics
  std::vector<std::string> params;
  std::string allow;
};

/// Every row of the route table, chaos routes included, in match order.
std::span<const route_def> route_table();

/// Matches `target` (path and optional query) against the route table.
/// Without `with_chaos` the chaos routes do not exist: 404 like any unknown
/// path, never 405.
route_match match_route(method verb, std::string_view target,
                        bool with_chaos = false);

/// The body limit of the route `verb` and `target` name; that of any route
/// for an unknown one.
std::size_t body_bytes_max_for(method verb, std::string_view target);

} // namespace rsv::http
