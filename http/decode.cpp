#include "http/decode.hpp"

#include "http/ascii.hpp"
#include "http/problem.hpp"

namespace rsv::http {

namespace {

/// The JSON of a request's body, or the problem: a body needs Content-Type
/// application/json (an empty body passes, and then fails to parse).
std::variant<nlohmann::json, api_response> json_of(const api_request& req) {
  if (!req.body.empty() && media_type(req.content_type) != "application/json")
    return problem(415, problem_code::unsupported_media_type,
                   "send the body as Content-Type: application/json");
  auto json = parse_json(req.body);
  if (!json)
    return problem(400, problem_code::invalid_json, "the body is not JSON");
  return std::move(*json);
}

/// Sets `member` from a body mapping's result; the problem when it refused.
template <class T>
std::optional<api_response> take(caf::expected<T>&& parsed,
                                 std::optional<T>& member) {
  if (!parsed) return problem_from(parsed.error());
  member = std::move(*parsed);
  return std::nullopt;
}

std::optional<api_response> decode_body(body_kind kind,
                                        const nlohmann::json& json,
                                        const decode_options& options,
                                        command& out) {
  switch (kind) {
  case body_kind::none:
    return std::nullopt;
  case body_kind::event:
    return take(parse_event(json, options.waiting_rooms), out.event);
  case body_kind::hold:
    return take(parse_hold(json), out.hold);
  case body_kind::registration:
    return take(parse_registration(json), out.credentials);
  case body_kind::login:
    return take(parse_login(json), out.credentials);
  case body_kind::booking:
    return take(parse_booking(json), out.hold_id);
  case body_kind::json_object:
    if (!json.is_object())
      return problem(422, problem_code::validation_failed,
                     "the body must be a JSON object");
    out.object = json;
    return std::nullopt;
  }
  return std::nullopt;
}

void decode_path(path_kind kind, const std::vector<std::string>& params,
                 command& out) {
  switch (kind) {
  case path_kind::none:
  case path_kind::event:
    return;
  case path_kind::ticket:
    out.ticket = read_ticket(params.at(0));
    return;
  case path_kind::hold:
    out.record = parse_hold_id(params.at(0));
    return;
  case path_kind::booking:
    out.record = parse_booking_id(params.at(0));
    return;
  }
}

} // namespace

decoded decode(const route_def& route, const api_request& req,
               const std::vector<std::string>& params,
               const decode_options& options) {
  command out;
  decode_path(route.path, params, out);
  if (route.body == body_kind::none) return out;
  auto json = json_of(req);
  if (auto* refused = std::get_if<api_response>(&json))
    return std::move(*refused);
  if (auto refused =
          decode_body(route.body, std::get<nlohmann::json>(json), options, out))
    return std::move(*refused);
  return out;
}

} // namespace rsv::http
