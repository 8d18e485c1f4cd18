#pragma once

// What goes between this node and a peer it forwards to (docs/cluster.md):
// the peer's address, the API request as the peer's HTTP request, and the
// peer's answer as the API's. Pure functions, used by peer_client.cpp on
// the I/O threads; Beast's exceptions end here.

#include "http/api_types.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rsv::http {

/// A peer's "host:port" or "[v6]:port", split.
struct peer_address {
  std::string host;
  std::string port;
  /// Set when the host is an IP literal: no name to resolve.
  std::optional<boost::asio::ip::tcp::endpoint> literal;
};

/// Splits `address` into `out`; answers why it is not an address.
std::optional<std::string> parse_address(const std::string& address,
                                         peer_address& out);

/// A forward that failed: 503 with the peer named.
caf::error forward_error(const std::string& address, const std::string& why);

/// The request as it goes to the peer at `address`, with `extra` headers
/// (the forwarding marks) appended.
caf::expected<boost::beast::http::request<boost::beast::http::string_body>>
to_peer_request(const std::string& address, const api_request& req,
                std::vector<std::pair<std::string, std::string>>& extra);

/// The peer's answer as the API's: Content-Type in its own field, every
/// end-to-end header in order, hop-by-hop ones (and whatever `Connection`
/// names) left out, since they describe the connection to the peer.
api_response to_api_response(
    boost::beast::http::response<boost::beast::http::string_body>&& message);

} // namespace rsv::http
