#include "http/request_mapping.hpp"

#include "core/limits.hpp"

namespace rsv::http {

namespace bhttp = boost::beast::http;

method to_method(bhttp::verb verb) {
  switch (verb) {
  case bhttp::verb::get:
    return method::get;
  case bhttp::verb::post:
    return method::post;
  case bhttp::verb::delete_:
    return method::del;
  default:
    return method::other;
  }
}

std::size_t body_limit_for(bhttp::verb verb, std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  if (verb == bhttp::verb::post && path == "/v1/events")
    return limits::event_body_bytes_max;
  return limits::body_bytes_max;
}

api_request to_api_request(bhttp::request<bhttp::string_body>&& message) {
  api_request req;
  req.verb = to_method(message.method());
  req.method_text = std::string{message.method_string()};
  req.target = std::string{message.target()};
  req.content_type = std::string{message[bhttp::field::content_type]};
  req.authorization = std::string{message[bhttp::field::authorization]};
  if (auto key = message.find("Idempotency-Key"); key != message.end()) {
    req.has_idempotency_key = true;
    req.idempotency_key = std::string{key->value()};
  }
  req.admission_token = std::string{message["X-Admission-Token"]};
  req.if_none_match = std::string{message[bhttp::field::if_none_match]};
  req.forwarded = std::string{message["X-Rsv-Forwarded"]};
  // A header sent on several lines is one comma-separated list (RFC 9110
  // section 5.3): proxies may append a line of their own.
  auto [first, last] = message.equal_range("X-Forwarded-For");
  for (auto field = first; field != last; ++field) {
    if (!req.forwarded_for.empty()) req.forwarded_for += ',';
    req.forwarded_for += std::string{field->value()};
  }
  req.body = std::move(message.body());
  return req;
}

} // namespace rsv::http
