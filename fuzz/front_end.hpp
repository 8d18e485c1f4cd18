#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rsv::fuzz {

/// Feeds `bytes`, as if they arrived on one connection, through the path the
/// server takes up to the actors: Beast's request parser with the server's
/// header and body limits (up to four pipelined requests), the conversion to
/// `api_request`, the router, the bearer token check, Idempotency-Key and
/// path id checks, the content-type rule, JSON parsing, the request body
/// mappings of every POST route, the problem answers for what is refused,
/// and the rendering of what was accepted.
///
/// Answers the invariants that broke, one line each (empty: none): every
/// answer has a valid status and a JSON body, a 405 names the allowed
/// methods, what is accepted renders as JSON that says the same.
std::vector<std::string> serve_bytes(std::string_view bytes);

/// The session token secret the harness checks tokens with, and a token it
/// accepts (for seed inputs).
std::string valid_token();

} // namespace rsv::fuzz
