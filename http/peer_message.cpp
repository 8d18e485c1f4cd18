#include "http/peer_message.hpp"

#include "core/errc.hpp"
#include "http/boost_names.hpp"

#include <boost/beast/core/string.hpp>
#include <charconv>
#include <exception>

namespace rsv::http {

namespace {

/// Headers about the connection to the peer, not about the answer; Date and
/// Server too, since this node's server writes its own.
bool is_hop_by_hop(std::string_view name,
                   const std::vector<std::string_view>& named_by_connection) {
  static constexpr std::string_view fixed[] = {"Connection",
                                               "Keep-Alive",
                                               "Transfer-Encoding",
                                               "Content-Length",
                                               "Date",
                                               "Server",
                                               "TE",
                                               "Trailer",
                                               "Upgrade",
                                               "Proxy-Connection"};
  for (auto hop : fixed)
    if (beast::iequals(name, hop)) return true;
  for (auto hop : named_by_connection)
    if (beast::iequals(name, hop)) return true;
  return false;
}

} // namespace

caf::error forward_error(const std::string& address, const std::string& why) {
  return make_error(errc::unavailable, "forward to " + address + ": " + why);
}

std::optional<std::string> parse_address(const std::string& address,
                                         peer_address& out) {
  std::string port;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() ||
        address[close + 1] != ':')
      return "not [IPv6]:port";
    out.host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string::npos) return "no port";
    out.host = address.substr(0, colon);
    if (out.host.find(':') != std::string::npos)
      return "an IPv6 address needs brackets";
    port = address.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] =
      std::from_chars(port.data(), port.data() + port.size(), value);
  if (out.host.empty() || port.empty() || ec != std::errc{} ||
      end != port.data() + port.size() || value == 0 || value > 65535)
    return "not host:port";
  out.port = std::move(port);
  beast::error_code bad;
  auto ip = asio::ip::make_address(out.host, bad);
  if (!bad) out.literal = tcp::endpoint{ip, static_cast<unsigned short>(value)};
  return std::nullopt;
}

api_response to_api_response(bhttp::response<bhttp::string_body>&& message) {
  api_response out;
  out.status = message.result_int();
  out.content_type = std::string{message[bhttp::field::content_type]};
  std::vector<std::string_view> named;
  auto [first, last] = message.equal_range(bhttp::field::connection);
  for (auto it = first; it != last; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      auto comma = list.find(',');
      auto token = list.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
        token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      if (!token.empty()) named.push_back(token);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  for (auto& field : message) {
    // Content-Type travels in its own field of api_response.
    if (field.name() == bhttp::field::content_type ||
        is_hop_by_hop(field.name_string(), named))
      continue;
    out.headers.emplace_back(std::string{field.name_string()},
                             std::string{field.value()});
  }
  out.body = std::move(message.body());
  return out;
}

caf::expected<bhttp::request<bhttp::string_body>>
to_peer_request(const std::string& address, const api_request& req,
                std::vector<std::pair<std::string, std::string>>& extra) {
  try {
    bhttp::request<bhttp::string_body> message;
    message.version(11);
    std::string_view name = req.method_text;
    if (name.empty()) {
      switch (req.verb) {
      case method::get:
        name = "GET";
        break;
      case method::post:
        name = "POST";
        break;
      case method::del:
        name = "DELETE";
        break;
      case method::other:
        return forward_error(address, "the request has no method");
      }
    }
    if (auto verb = bhttp::string_to_verb(name); verb != bhttp::verb::unknown)
      message.method(verb);
    else
      message.method_string(name);
    message.target(req.target.empty() ? "/" : req.target);
    message.set(bhttp::field::host, address);
    if (!req.content_type.empty())
      message.set(bhttp::field::content_type, req.content_type);
    if (!req.authorization.empty())
      message.set(bhttp::field::authorization, req.authorization);
    if (req.has_idempotency_key)
      message.set("Idempotency-Key", req.idempotency_key);
    if (!req.admission_token.empty())
      message.set("X-Admission-Token", req.admission_token);
    if (!req.if_none_match.empty())
      message.set(bhttp::field::if_none_match, req.if_none_match);
    if (!req.remote_address.empty())
      message.set("X-Forwarded-For", req.remote_address);
    for (auto& [field, value] : extra)
      message.insert(field, value);
    message.body() = req.body;
    message.keep_alive(true);
    message.prepare_payload();
    return message;
  } catch (const std::exception& e) {
    return forward_error(address, std::string{"bad request: "} + e.what());
  }
}

} // namespace rsv::http
