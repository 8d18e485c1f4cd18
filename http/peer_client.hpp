#pragma once

#include "http/api_types.hpp"

#include <boost/asio/io_context.hpp>
#include <caf/expected.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace prometheus {
class Counter;
class Histogram;
class Registry;
} // namespace prometheus

namespace rsv::http {

/// The client side of forwarding between cluster nodes: a request for an
/// event that another node owns goes to that node over HTTP/1.1 on a
/// keep-alive connection, and its answer comes back unchanged.

struct peer_config {
  std::size_t idle_connections_per_peer_max = 64; // per I/O thread
  int64_t connect_timeout_ms = 1000;
  int64_t request_timeout_ms = 4000; // whole exchange
  // Drop pooled connections idle longer (server side idles out at 60 s).
  int64_t idle_keepalive_ms = 20000;
  // Resolved names are kept this long (IP literals are never resolved).
  int64_t resolve_cache_ms = 30000;
};

/// The forwarding metrics, created once per registry and shared by every
/// thread's pool (prometheus-cpp counters and histograms are thread-safe).
/// Immutable after make_peer_metrics.
struct peer_metrics {
  std::shared_ptr<prometheus::Registry> registry; // keeps the series alive
  prometheus::Counter* ok = nullptr;
  prometheus::Counter* error = nullptr;
  prometheus::Histogram* seconds = nullptr;
  prometheus::Counter* connections_opened = nullptr;
};

/// Registers `rsv_forwarded_requests_total{outcome="ok|error"}`,
/// `rsv_forward_seconds` and `rsv_forward_connections_opened_total`. Call
/// once per registry, on any thread, before the I/O threads attach.
std::shared_ptr<const peer_metrics>
make_peer_metrics(std::shared_ptr<prometheus::Registry> registry);

/// One per I/O thread: keep-alive connections to peer nodes, used only on
/// that thread's io_context. Owns its idle connections (at most
/// `idle_connections_per_peer_max` per peer, closed after
/// `idle_keepalive_ms`), the resolved endpoints per address, and the
/// exchanges in flight. Created, used and destroyed on the io_context's one
/// thread (attach_peer_pool does all three); destroying it answers every
/// forward still in flight with `unavailable`, so each `done` runs exactly
/// once even when the io_context stops first.
class peer_pool {
public:
  peer_pool(boost::asio::io_context& io, peer_config config,
            std::shared_ptr<const peer_metrics> metrics);
  ~peer_pool();
  peer_pool(const peer_pool&) = delete;
  peer_pool& operator=(const peer_pool&) = delete;

  /// See rsv::http::forward; this pool's thread only.
  void forward(const std::string& address, const api_request& req,
               std::vector<std::pair<std::string, std::string>> extra_headers,
               std::function<void(caf::expected<api_response>)> done);

  /// Idle connections kept to all peers (for tests and diagnostics).
  std::size_t idle_connections() const;

  /// The pool attached to the calling thread, or nullptr.
  static peer_pool* current();

  struct state;

private:
  std::shared_ptr<state> state_;
};

/// Forwards `req` to `address` ("host:port", IPv4/IPv6 literal or name; an
/// IPv6 literal in brackets) on the calling I/O thread's pool and calls
/// `done` exactly once on that thread, never before forward returns, with
/// the peer's answer (status, content type, body, and every end-to-end
/// header; not the hop-by-hop ones: Connection and what it names,
/// Keep-Alive, Transfer-Encoding, Content-Length, Date, Server, TE,
/// Trailer, Upgrade, Proxy-Connection), or with `errc::unavailable` and a
/// message saying why (refused, timed out, closed early, ...).
///
/// The forwarded request has the original method, target and body, the
/// headers the API reads (Content-Type, Authorization, Idempotency-Key when
/// present, X-Admission-Token, If-None-Match), `X-Forwarded-For` when the
/// remote address is known, `Host: <address>`, and `extra_headers`.
///
/// On a thread without an attached pool (not an I/O thread) `done` is
/// called at once, inside forward, with `unavailable`: such a thread has no
/// io_context to run the exchange on.
void forward(const std::string& address, const api_request& req,
             std::vector<std::pair<std::string, std::string>> extra_headers,
             std::function<void(caf::expected<api_response>)> done);

/// What io_thread_started should create on each I/O thread, on that thread,
/// and keep alive while the thread runs: a peer_pool on `io`, made the
/// thread's current pool. Dropping the handle (on the same thread, after
/// io.run() returned) detaches and destroys the pool. `metrics` may be null.
std::shared_ptr<void>
attach_peer_pool(boost::asio::io_context& io, peer_config config,
                 std::shared_ptr<const peer_metrics> metrics = nullptr);

} // namespace rsv::http
