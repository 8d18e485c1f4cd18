#include "http/request_mapping.hpp"

#include "http/boost_names.hpp"
#include "http/router.hpp"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <optional>
#include <string>

namespace rsv::http {

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
  return body_bytes_max_for(to_method(verb), target);
}

bool accepts_gzip(std::string_view accept_encoding) {
  // Comma-separated codings, each with optional parameters; only q matters:
  // "gzip;q=0" refuses it. "*" stands for any coding not named.
  auto trim = [](std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
      text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
      text.remove_suffix(1);
    return text;
  };
  std::optional<bool> gzip, any;
  while (!accept_encoding.empty()) {
    auto comma = accept_encoding.find(',');
    auto item = accept_encoding.substr(0, comma);
    accept_encoding = comma == std::string_view::npos
                          ? std::string_view{}
                          : accept_encoding.substr(comma + 1);
    auto semicolon = item.find(';');
    auto coding = trim(item.substr(0, semicolon));
    bool allowed = true;
    if (semicolon != std::string_view::npos) {
      std::string params{trim(item.substr(semicolon + 1))};
      params.erase(std::remove(params.begin(), params.end(), ' '),
                   params.end());
      if (params.size() >= 2 && (params[0] == 'q' || params[0] == 'Q') &&
          params[1] == '=') {
        auto q = params.substr(2);
        // q=0, q=0.0, q=0.000: not acceptable.
        allowed = q.find_first_not_of("0.") != std::string::npos;
      }
    }
    if (boost::beast::iequals(coding, "gzip") ||
        boost::beast::iequals(coding, "x-gzip"))
      gzip = allowed;
    if (coding == "*") any = allowed;
  }
  return gzip ? *gzip : any.value_or(false);
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
  req.accepts_gzip = accepts_gzip(message[bhttp::field::accept_encoding]);
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
