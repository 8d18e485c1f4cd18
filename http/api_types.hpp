#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace rsv::http {

enum class method { get, post, del, other };

/// A request as the API sees it, independent of Beast, so that handlers can
/// be tested and fuzzed without sockets. Only the headers the API reads.
struct api_request {
  method verb = method::other;
  std::string method_text; // as sent, for logs
  std::string target;      // path and query
  std::string content_type;
  std::string authorization;
  std::string idempotency_key;
  bool has_idempotency_key = false;
  std::string admission_token;
  std::string if_none_match; // for the web pages' ETags
  /// Accept-Encoding allows gzip (seat maps are sent compressed then).
  bool accepts_gzip = false;
  /// X-Rsv-Forwarded: set by a cluster node that forwarded the request to
  /// this one (docs/cluster.md, "Forwarding"); empty otherwise.
  std::string forwarded;
  std::string body;
  /// The client's IP address as text (for per-address rate limits); empty
  /// when unknown. The server sets the connection's peer; the api replaces
  /// it with the client a trusted proxy names (api_config::trusted_proxies).
  std::string remote_address;
  /// X-Forwarded-For, every field line of it joined with commas.
  std::string forwarded_for;
  /// Runs a continuation on the connection's I/O thread (set by the server):
  /// at once when called there, posted from any other thread; unset: the API
  /// runs it inline. Used after a Redis answer, so that request work does not
  /// pile up on the Redis client's thread.
  std::function<void(std::function<void()>)> resume;
};

struct api_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  /// The route's name for metrics, e.g. "POST /v1/holds".
  const char* route = "unmatched";

  api_response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

/// Called exactly once per request, from any thread.
using respond_fn = std::function<void(api_response)>;

} // namespace rsv::http
