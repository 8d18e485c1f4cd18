#pragma once

// The short names http/'s sources use for Boost.Asio and Boost.Beast, in
// one place rather than at the top of each file. Include it in .cpp files
// only: headers spell the names out.

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/verb.hpp>

namespace rsv::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

} // namespace rsv::http
