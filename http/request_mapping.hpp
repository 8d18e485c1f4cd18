#pragma once

#include "http/api_types.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <string_view>

namespace rsv::http {

/// From Beast's request to the API's, and the limits the server reads a
/// request with: the part of the server that is pure functions, shared by
/// `server.cpp` and the fuzzer (fuzz/README.md), so that both take the same
/// path from bytes to `api::handle`.

method to_method(boost::beast::http::verb verb);

/// The body limit of a route, as its row in the route table says: 1 MiB
/// for `POST /v1/events`, 64 KiB otherwise (core/limits.hpp). `target` is
/// the path and query.
std::size_t body_limit_for(boost::beast::http::verb verb,
                           std::string_view target);

/// Whether an Accept-Encoding value allows a gzip-encoded answer.
bool accepts_gzip(std::string_view accept_encoding);

/// The request as `api::handle` takes it; the body is moved out.
api_request to_api_request(
    boost::beast::http::request<boost::beast::http::string_body>&& message);

} // namespace rsv::http
