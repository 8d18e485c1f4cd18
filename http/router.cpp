#include "http/router.hpp"

#include <array>

namespace rsv::http {

namespace {

struct route_def {
  method verb;
  std::string_view pattern; // '{}' is one path segment parameter
  route_id route;
  const char* name;
  /// The chaos facility's routes exist only with --chaos.
  bool chaos = false;
};

constexpr std::array routes{
    route_def{method::get, "/health", route_id::health, "GET /health"},
    route_def{method::get, "/ready", route_id::ready, "GET /ready"},
    route_def{method::get, "/metrics", route_id::metrics, "GET /metrics"},
    route_def{method::post, "/v1/customers", route_id::customers,
              "POST /v1/customers"},
    route_def{method::post, "/v1/sessions", route_id::sessions,
              "POST /v1/sessions"},
    route_def{method::get, "/v1/events", route_id::events, "GET /v1/events"},
    route_def{method::post, "/v1/events", route_id::events, "POST /v1/events"},
    route_def{method::get, "/v1/events/{}", route_id::event,
              "GET /v1/events/{id}"},
    route_def{method::get, "/v1/events/{}/sections/{}/seats", route_id::seats,
              "GET /v1/events/{id}/sections/{id}/seats"},
    route_def{method::get, "/v1/events/{}/stats", route_id::stats,
              "GET /v1/events/{id}/stats"},
    route_def{method::post, "/v1/events/{}/queue", route_id::queue_join,
              "POST /v1/events/{id}/queue"},
    route_def{method::get, "/v1/queue/{}", route_id::queue_ticket,
              "GET /v1/queue/{ticket}"},
    route_def{method::post, "/v1/holds", route_id::holds, "POST /v1/holds"},
    route_def{method::get, "/v1/holds/{}", route_id::hold,
              "GET /v1/holds/{id}"},
    route_def{method::del, "/v1/holds/{}", route_id::hold,
              "DELETE /v1/holds/{id}"},
    route_def{method::get, "/v1/bookings", route_id::bookings,
              "GET /v1/bookings"},
    route_def{method::post, "/v1/bookings", route_id::bookings,
              "POST /v1/bookings"},
    route_def{method::get, "/v1/bookings/{}", route_id::booking,
              "GET /v1/bookings/{id}"},
    route_def{method::del, "/v1/bookings/{}", route_id::booking,
              "DELETE /v1/bookings/{id}"},
    route_def{method::get, "/v1/admin/chaos", route_id::chaos,
              "GET /v1/admin/chaos", true},
    route_def{method::del, "/v1/admin/chaos", route_id::chaos,
              "DELETE /v1/admin/chaos", true},
    route_def{method::post, "/v1/admin/chaos/kill-section",
              route_id::chaos_kill_section,
              "POST /v1/admin/chaos/kill-section", true},
    route_def{method::post, "/v1/admin/chaos/kill-random",
              route_id::chaos_kill_random, "POST /v1/admin/chaos/kill-random", true},
    route_def{method::post, "/v1/admin/chaos/store", route_id::chaos_store,
              "POST /v1/admin/chaos/store", true},
    route_def{method::post, "/v1/admin/chaos/relay", route_id::chaos_relay,
              "POST /v1/admin/chaos/relay", true},
    route_def{method::post, "/v1/admin/chaos/redis", route_id::chaos_redis,
              "POST /v1/admin/chaos/redis", true},
};

const char* method_name(method verb) {
  switch (verb) {
  case method::get:
    return "GET";
  case method::post:
    return "POST";
  case method::del:
    return "DELETE";
  case method::other:
    break;
  }
  return "";
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

route_match match_route(method verb, std::string_view target,
                        bool with_chaos) {
  auto path = target.substr(0, target.find('?'));
  route_match match;
  std::vector<std::string> params;
  for (const auto& def : routes) {
    if (def.chaos && !with_chaos) continue;
    if (!match_path(def.pattern, path, params)) continue;
    if (def.verb == verb) {
      match.result = route_match::kind::found;
      match.route = def.route;
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

} // namespace rsv::http
