#include "http/router.hpp"

#include "core/enum_names.hpp"

#include <array>

namespace rsv::http {

namespace {

using h = route_handlers;

/// The route table: every route of the contract, and the chaos facility's
/// admin routes (an extension outside the contract; they exist only with
/// --chaos). Adding a route is a row here and its handler.
constexpr std::array routes{
    route_def{.verb = method::get,
              .pattern = "/health",
              .name = "GET /health",
              .handler = &h::health},
    route_def{.verb = method::get,
              .pattern = "/ready",
              .name = "GET /ready",
              .handler = &h::readiness},
    route_def{.verb = method::get,
              .pattern = "/metrics",
              .name = "GET /metrics",
              .handler = &h::metrics},
    route_def{.verb = method::post,
              .pattern = "/v1/customers",
              .name = "POST /v1/customers",
              .handler = &h::create_customer,
              .rate_limited = true,
              .body = body_kind::registration},
    route_def{.verb = method::post,
              .pattern = "/v1/sessions",
              .name = "POST /v1/sessions",
              .handler = &h::create_session,
              .rate_limited = true,
              .body = body_kind::login,
              .no_store = true},
    route_def{.verb = method::get,
              .pattern = "/v1/events",
              .name = "GET /v1/events",
              .handler = &h::list_events},
    route_def{.verb = method::post,
              .pattern = "/v1/events",
              .name = "POST /v1/events",
              .handler = &h::create_event,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .body_bytes_max = limits::event_body_bytes_max,
              .body = body_kind::event},
    route_def{.verb = method::get,
              .pattern = "/v1/events/{}",
              .name = "GET /v1/events/{id}",
              .handler = &h::get_event,
              .path = path_kind::event},
    route_def{.verb = method::get,
              .pattern = route_id::seats,
              .name = "GET /v1/events/{id}/sections/{id}/seats",
              .handler = &h::get_seats,
              .path = path_kind::event},
    route_def{.verb = method::get,
              .pattern = "/v1/events/{}/stats",
              .name = "GET /v1/events/{id}/stats",
              .handler = &h::get_stats,
              .auth = auth_kind::admin,
              .path = path_kind::event},
    route_def{.verb = method::post,
              .pattern = "/v1/events/{}/queue",
              .name = "POST /v1/events/{id}/queue",
              .handler = &h::queue_join,
              .auth = auth_kind::customer,
              .idempotent = true,
              .rate_limited = true,
              .path = path_kind::event},
    route_def{.verb = method::get,
              .pattern = "/v1/queue/{}",
              .name = "GET /v1/queue/{ticket}",
              .handler = &h::queue_ticket,
              .auth = auth_kind::customer,
              .path = path_kind::ticket},
    route_def{.verb = method::post,
              .pattern = "/v1/holds",
              .name = "POST /v1/holds",
              .handler = &h::create_hold,
              .auth = auth_kind::customer,
              .idempotent = true,
              .rate_limited = true,
              .body = body_kind::hold,
              .waiting_room_gate = true},
    route_def{.verb = method::get,
              .pattern = route_id::hold,
              .name = "GET /v1/holds/{id}",
              .handler = &h::get_hold,
              .auth = auth_kind::customer,
              .path = path_kind::hold},
    route_def{.verb = method::del,
              .pattern = route_id::hold,
              .name = "DELETE /v1/holds/{id}",
              .handler = &h::release_hold,
              .auth = auth_kind::customer,
              .rate_limited = true,
              .path = path_kind::hold},
    route_def{.verb = method::get,
              .pattern = "/v1/bookings",
              .name = "GET /v1/bookings",
              .handler = &h::list_bookings,
              .auth = auth_kind::customer},
    route_def{.verb = method::post,
              .pattern = "/v1/bookings",
              .name = "POST /v1/bookings",
              .handler = &h::create_booking,
              .auth = auth_kind::customer,
              .idempotent = true,
              .rate_limited = true,
              .body = body_kind::booking},
    route_def{.verb = method::get,
              .pattern = "/v1/bookings/{}",
              .name = "GET /v1/bookings/{id}",
              .handler = &h::get_booking,
              .auth = auth_kind::customer,
              .path = path_kind::booking},
    route_def{.verb = method::del,
              .pattern = "/v1/bookings/{}",
              .name = "DELETE /v1/bookings/{id}",
              .handler = &h::cancel_booking,
              .auth = auth_kind::customer,
              .rate_limited = true,
              .path = path_kind::booking},
    route_def{.verb = method::get,
              .pattern = "/v1/admin/version",
              .name = "GET /v1/admin/version",
              .handler = &h::version,
              .auth = auth_kind::admin},
    route_def{.verb = method::get,
              .pattern = "/v1/admin/chaos",
              .name = "GET /v1/admin/chaos",
              .handler = &h::chaos_state,
              .auth = auth_kind::admin,
              .chaos = true},
    route_def{.verb = method::del,
              .pattern = "/v1/admin/chaos",
              .name = "DELETE /v1/admin/chaos",
              .handler = &h::chaos_clear,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .chaos = true},
    route_def{.verb = method::post,
              .pattern = "/v1/admin/chaos/kill-section",
              .name = "POST /v1/admin/chaos/kill-section",
              .handler = &h::chaos_kill_section,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .body = body_kind::json_object,
              .chaos = true},
    route_def{.verb = method::post,
              .pattern = "/v1/admin/chaos/kill-random",
              .name = "POST /v1/admin/chaos/kill-random",
              .handler = &h::chaos_kill_random,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .body = body_kind::json_object,
              .chaos = true},
    route_def{.verb = method::post,
              .pattern = "/v1/admin/chaos/store",
              .name = "POST /v1/admin/chaos/store",
              .handler = &h::chaos_store,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .body = body_kind::json_object,
              .chaos = true},
    route_def{.verb = method::post,
              .pattern = "/v1/admin/chaos/relay",
              .name = "POST /v1/admin/chaos/relay",
              .handler = &h::chaos_relay,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .body = body_kind::json_object,
              .chaos = true},
    route_def{.verb = method::post,
              .pattern = "/v1/admin/chaos/redis",
              .name = "POST /v1/admin/chaos/redis",
              .handler = &h::chaos_redis,
              .auth = auth_kind::admin,
              .rate_limited = true,
              .body = body_kind::json_object,
              .chaos = true},
};

const char* method_name(method verb) {
  static constexpr auto names =
      names_up_to<method::other>({"GET", "POST", "DELETE", ""});
  return names.name(verb, "");
}

/// Matches a path against a pattern, collecting parameters. Parameters are
/// non-empty segments.
bool match_path(std::string_view pattern, std::string_view path,
                std::vector<std::string>& params) {
  params.clear();
  while (!pattern.empty() && !path.empty()) {
    if (pattern.substr(0, 2) == "{}") {
      auto end = path.find('/');
      auto segment = path.substr(0, end);
      if (segment.empty()) return false;
      params.emplace_back(segment);
      pattern.remove_prefix(2);
      path.remove_prefix(segment.size());
      continue;
    }
    if (pattern.front() != path.front()) return false;
    pattern.remove_prefix(1);
    path.remove_prefix(1);
  }
  return pattern.empty() && path.empty();
}

} // namespace

std::span<const route_def> route_table() {
  return routes;
}

route_match match_route(method verb, std::string_view target, bool with_chaos) {
  auto path = target.substr(0, target.find('?'));
  route_match match;
  std::vector<std::string> params;
  for (const auto& def : routes) {
    if (def.chaos && !with_chaos) continue;
    if (!match_path(def.pattern, path, params)) continue;
    if (def.verb == verb) {
      match.result = route_match::kind::found;
      match.def = &def;
      match.route = def.pattern;
      match.name = def.name;
      match.params = std::move(params);
      return match;
    }
    match.result = route_match::kind::wrong_method;
    if (!match.allow.empty()) match.allow += ", ";
    match.allow += method_name(def.verb);
  }
  return match;
}

std::size_t body_bytes_max_for(method verb, std::string_view target) {
  auto match = match_route(verb, target, true);
  return match.def ? match.def->body_bytes_max : limits::body_bytes_max;
}

} // namespace rsv::http
