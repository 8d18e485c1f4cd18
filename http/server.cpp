#include "http/server.hpp"

#include "core/limits.hpp"
#include "http/boost_names.hpp"
#include "http/server_state.hpp"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <limits>
#include <mutex>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

namespace rsv::http {

/// The connection cap this process can keep: connections_max, or less when
/// the file limit would run out first (see core/limits.hpp). Raises the soft
/// file limit to the hard one first.
std::size_t connections_cap_from_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return limits::connections_max;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = std::min<rlim_t>(limit.rlim_max, 1u << 20);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return limits::connections_max;
  auto files = static_cast<std::size_t>(limit.rlim_cur);
  auto reserve = limits::connections_fd_reserve_min +
                 std::min(files / 4, limits::connections_fd_reserve_max);
  auto cap = files > reserve ? files - reserve : 1;
  return std::min(cap, limits::connections_max);
}

server::server(server_config config, api& handler,
               std::shared_ptr<prometheus::Registry> registry)
    : config_(config),
      shared_(std::make_shared<shared_state>(handler, config, *registry)) {
  auto threads = std::max<std::size_t>(1, config_.io_threads);
  for (std::size_t i = 0; i < threads; ++i)
    contexts_.push_back(std::make_unique<asio::io_context>(1));
}

server::~server() {
  stop();
}

void server::stop() {
  stop_accepting();
  for (auto& context : contexts_)
    context->stop();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

caf::expected<unsigned short> server::start() {
  beast::error_code ec;
  auto address = asio::ip::make_address(config_.host, ec);
  if (ec)
    return make_error(errc::validation_failed,
                      "listen address " + config_.host + ": " + ec.message());
  tcp::endpoint endpoint{address, config_.port};
  acceptor_ = std::make_unique<tcp::acceptor>(*contexts_[0]);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(errc::unavailable,
                      "cannot listen on " + config_.host + ":" +
                          std::to_string(config_.port) + ": " + ec.message());
  auto port = acceptor_->local_endpoint().port();
  shared_->connections_cap = connections_cap_from_file_limit();
  spdlog::info("connections: at most {} ({} per client address)",
               shared_->connections_cap,
               config_.connections_per_address_max == 0
                   ? std::string{"no cap"}
                   : std::to_string(config_.connections_per_address_max));
  accept_retry_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  accept_next();
  for (auto& context : contexts_) {
    auto* ctx = context.get();
    threads_.emplace_back([ctx, shared = shared_] {
      auto guard = asio::make_work_guard(*ctx);
      auto per_thread = shared->handler.io_thread_started(*ctx);
      ctx->run();
      // Before the io_context goes (it outlives the thread).
      per_thread.reset();
    });
  }
  return port;
}

void server::start_session(tcp::socket socket) {
  beast::error_code ignored;
  if (shared_->connections.load() >=
      static_cast<int64_t>(shared_->connections_cap)) {
    shared_->metrics.refused_over_node_cap().Increment();
    socket.close(ignored);
    return;
  }
  auto peer = socket.remote_endpoint(ignored);
  if (ignored) {
    socket.close(ignored); // reset before we got to it
    return;
  }
  auto key = shared_->per_address.take(peer.address());
  if (!key) {
    shared_->metrics.refused_over_address_cap().Increment();
    socket.close(ignored);
    return;
  }
  socket.set_option(tcp::no_delay(true), ignored);
  serve_connection(std::move(socket), peer.address(), std::move(*key), shared_);
}

void server::accept_next() {
  if (!acceptor_ || !acceptor_->is_open()) return;
  auto& target = *contexts_[next_context_++ % contexts_.size()];
  acceptor_->async_accept(target,
                          [this](beast::error_code ec, tcp::socket socket) {
                            if (ec == asio::error::operation_aborted) return;
                            if (ec) {
                              retry_accept_later(ec);
                              return;
                            }
                            accept_retry_ms_ = 0;
                            start_session(std::move(socket));
                            accept_next();
                          });
}

void server::retry_accept_later(const beast::error_code& ec) {
  shared_->metrics.accept_errors().Increment();
  ++accept_errors_unlogged_;
  auto now = std::chrono::steady_clock::now();
  if (now - accept_error_logged_ >=
      std::chrono::milliseconds(limits::accept_error_log_interval_ms)) {
    spdlog::warn("accept failed {} time(s) since the last report, the latest: "
                 "{}; the acceptor backs off",
                 accept_errors_unlogged_, ec.message());
    accept_error_logged_ = now;
    accept_errors_unlogged_ = 0;
  }
  // A client that reset its connection before we took it costs nothing:
  // take the next one at once. Anything else (EMFILE, ENFILE, ENOBUFS)
  // would fail again right away: wait, longer while it keeps failing.
  if (ec == asio::error::connection_aborted) {
    accept_next();
    return;
  }
  accept_retry_ms_ =
      std::clamp(accept_retry_ms_ * 2, limits::accept_retry_ms_min,
                 limits::accept_retry_ms_max);
  accept_retry_->expires_after(std::chrono::milliseconds(accept_retry_ms_));
  accept_retry_->async_wait([this](beast::error_code wait_ec) {
    if (!wait_ec) accept_next();
  });
}

void server::stop_accepting() {
  if (!acceptor_ || listener_closed_) return;
  listener_closed_ = true;
  // Connections the kernel has completed but this process has not taken
  // yet would be reset by the close: take them first (without blocking),
  // so that a client that got through before the listener closed is
  // served; then close, and new connections are refused.
  auto close_listener = [this] {
    beast::error_code ec;
    acceptor_->cancel(ec);
    if (accept_retry_) accept_retry_->cancel();
    acceptor_->non_blocking(true, ec);
    for (std::size_t taken = 0; !ec && taken < limits::connections_max;
         ++taken) {
      tcp::socket socket{*contexts_[next_context_++ % contexts_.size()]};
      acceptor_->accept(socket, ec);
      if (!ec) start_session(std::move(socket));
    }
    acceptor_->close(ec);
  };
  if (threads_.empty()) {
    close_listener(); // never started: no I/O thread owns the acceptor
    return;
  }
  // On the acceptor's own thread; the caller waits, so that no answer says
  // Connection: close (drain) while a client could still connect and be
  // reset by the close.
  auto closed = std::make_shared<std::promise<void>>();
  auto future = closed->get_future();
  asio::dispatch(*contexts_[0], [close_listener, closed] {
    close_listener();
    closed->set_value();
  });
  if (future.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
    spdlog::warn("the listener did not close within 5 s");
}

int64_t server::drain(std::chrono::milliseconds deadline,
                      std::chrono::milliseconds quiet) {
  shared_->draining = true;
  auto until = std::chrono::steady_clock::now() + deadline;
  auto quiet_since_last_request = [&] {
    auto last = std::chrono::steady_clock::time_point{
        std::chrono::steady_clock::duration{
            shared_->last_request_started.load()}};
    return std::chrono::steady_clock::now() - last >= quiet;
  };
  // Bounded wait for requests in progress; each check is cheap and the loop
  // ends at the deadline whatever happens. The quiet time covers a client
  // whose next request on a kept-alive connection is on its way.
  while ((shared_->requests_in_progress.load() > 0 ||
          !quiet_since_last_request()) &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return shared_->requests_in_progress.load();
}

} // namespace rsv::http
