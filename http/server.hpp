#pragma once

#include "core/limits.hpp"
#include "http/api.hpp"

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/expected.hpp>
#include <chrono>
#include <memory>
#include <prometheus/registry.h>
#include <string>
#include <thread>
#include <vector>

namespace rsv::http {

struct server_config {
  std::string host = "127.0.0.1";
  unsigned short port = 8080;
  std::size_t io_threads = 2;
  int64_t request_timeout_ms = limits::request_timeout_ms_default;
  /// 0: no per-address cap.
  std::size_t connections_per_address_max =
      limits::connections_per_address_default;
};

class http_metrics;

/// The Boost.Beast front end: one io_context per I/O thread, connections
/// spread over them round-robin, each connection served by one thread, so
/// connection state needs no locks. Requests are read one at a time per
/// connection (pipelined requests wait in the read buffer and are answered
/// in order). A request waits for the actors without blocking its thread:
/// the answer is dispatched back to the connection's io_context, and a
/// per-request deadline answers 503 if it does not come in time.
///
/// Lifecycle: construct, start() on the main thread; on SIGTERM
/// stop_accepting() and drain() (docs/operations.md, "Shutdown"); stop(),
/// then destroy once no actor can answer.
class server {
public:
  server(server_config config, api& handler,
         std::shared_ptr<prometheus::Registry> registry);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds, listens and starts the I/O threads; answers the bound port.
  caf::expected<unsigned short> start();

  /// Takes the connections already waiting in the listen queue, then
  /// closes the listening socket: new connections are refused. Returns
  /// once it is closed. Main thread only.
  void stop_accepting();

  /// From now on every answer says Connection: close. Waits until no
  /// request is in progress (from its first byte until its answer is
  /// written) and none began for `quiet`, at most `deadline`. Answers how
  /// many requests are still in progress (0: everything was answered).
  /// Idle keep-alive connections stay open until stop(); a request that
  /// arrives on one meanwhile is served.
  int64_t drain(std::chrono::milliseconds deadline,
                std::chrono::milliseconds quiet);

  /// Stops the I/O threads. The io_contexts stay alive until destruction,
  /// so answers that actors send later are queued and dropped, never sent
  /// into freed memory.
  void stop();

  struct shared_state;

private:
  void accept_next();
  void retry_accept_later(const boost::system::error_code& ec);
  void start_session(boost::asio::ip::tcp::socket socket);

  server_config config_;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::thread> threads_;
  std::shared_ptr<shared_state> shared_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::size_t next_context_ = 0; // the acceptor's thread only
  // The acceptor's thread only: back-off after failed accepts.
  std::unique_ptr<boost::asio::steady_timer> accept_retry_;
  int64_t accept_retry_ms_ = 0;
  std::chrono::steady_clock::time_point accept_error_logged_{};
  uint64_t accept_errors_unlogged_ = 0;
  bool listener_closed_ = false; // the main thread only
};

} // namespace rsv::http
