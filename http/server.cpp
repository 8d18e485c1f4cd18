#include "http/server.hpp"

#include "core/limits.hpp"
#include "http/problem.hpp"
#include "http/request_mapping.hpp"

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
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unordered_map>

namespace rsv::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

/// HTTP metrics by route and status. Label lookups in prometheus-cpp take a
/// lock, so each I/O thread caches the series it has used.
class http_metrics {
public:
  explicit http_metrics(prometheus::Registry& registry)
      : requests_(prometheus::BuildCounter()
                      .Name("rsv_http_requests_total")
                      .Help("HTTP requests answered, by route and status")
                      .Register(registry)),
        latency_(prometheus::BuildHistogram()
                     .Name("rsv_http_request_duration_seconds")
                     .Help("Time from a request's last byte to its answer")
                     .Register(registry)),
        connections_(prometheus::BuildGauge()
                         .Name("rsv_http_connections_open")
                         .Help("Open HTTP connections")
                         .Register(registry)
                         .Add({})),
        refused_(prometheus::BuildCounter()
                     .Name("rsv_http_connections_refused_total")
                     .Help("Connections closed as soon as accepted, by the "
                           "cap they were over (node or address)")
                     .Register(registry)),
        refused_node_(refused_.Add({{"cap", "node"}})),
        refused_address_(refused_.Add({{"cap", "address"}})),
        accept_errors_(prometheus::BuildCounter()
                           .Name("rsv_http_accept_errors_total")
                           .Help("Failed accepts (most often: out of file "
                                 "descriptors)")
                           .Register(registry)
                           .Add({})) {}

  void observe(const char* route, unsigned status, double seconds) {
    thread_local std::unordered_map<uint64_t, prometheus::Counter*> counters;
    thread_local std::unordered_map<const char*, prometheus::Histogram*>
        histograms;
    auto key = (reinterpret_cast<uint64_t>(route) << 10) ^ status;
    auto counter = counters.find(key);
    if (counter == counters.end()) {
      std::lock_guard<std::mutex> guard{mutex_};
      counter =
          counters
              .emplace(key,
                       &requests_.Add({{"route", route},
                                       {"status", std::to_string(status)}}))
              .first;
    }
    counter->second->Increment();
    auto histogram = histograms.find(route);
    if (histogram == histograms.end()) {
      std::lock_guard<std::mutex> guard{mutex_};
      static const prometheus::Histogram::BucketBoundaries buckets{
          0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
      histogram =
          histograms.emplace(route, &latency_.Add({{"route", route}}, buckets))
              .first;
    }
    histogram->second->Observe(seconds);
  }

  prometheus::Gauge& connections() { return connections_; }
  prometheus::Counter& refused_over_node_cap() { return refused_node_; }
  prometheus::Counter& refused_over_address_cap() { return refused_address_; }
  prometheus::Counter& accept_errors() { return accept_errors_; }

private:
  std::mutex mutex_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Gauge& connections_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Counter& refused_node_;
  prometheus::Counter& refused_address_;
  prometheus::Counter& accept_errors_;
};

/// Open connections per client address, so that one client cannot take
/// them all. IPv6 clients are counted per /64: one host usually has a whole
/// /64 to pick addresses from. Taken on the acceptor's thread, released on
/// the connection's.
class address_counts {
public:
  explicit address_counts(std::size_t max) : max_(max) {}

  /// The key to release later, or nothing when `address` is at the cap.
  std::optional<std::string> take(const asio::ip::address& address) {
    auto key = key_of(address);
    if (max_ == 0) return key;
    std::lock_guard<std::mutex> guard{mutex_};
    auto& count = counts_[key];
    if (count >= max_) return std::nullopt;
    ++count;
    return key;
  }

  void release(const std::string& key) {
    if (max_ == 0) return;
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = counts_.find(key);
    if (it == counts_.end()) return;
    if (--it->second == 0) counts_.erase(it);
  }

private:
  static std::string key_of(const asio::ip::address& address) {
    if (address.is_v6() && !address.to_v6().is_v4_mapped()) {
      auto bytes = address.to_v6().to_bytes();
      return std::string(reinterpret_cast<const char*>(bytes.data()), 8);
    }
    auto v4 = address.is_v6() ? asio::ip::make_address_v4(asio::ip::v4_mapped,
                                                          address.to_v6())
                              : address.to_v4();
    auto bytes = v4.to_bytes();
    return std::string(reinterpret_cast<const char*>(bytes.data()), 4);
  }

  std::size_t max_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> counts_;
};

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

/// What every connection shares with the server.
struct server::shared_state {
  api& handler;
  server_config config;
  http_metrics metrics;
  std::atomic<int64_t> connections{0};
  /// Set once in start(), before the first accept.
  std::size_t connections_cap = limits::connections_max;
  address_counts per_address;
  /// Requests from their first byte until their answer is written (or the
  /// connection fails): what a drain waits for.
  std::atomic<int64_t> requests_in_progress{0};
  /// steady_clock ticks of the latest request's first byte.
  std::atomic<int64_t> last_request_started{0};
  std::atomic<bool> draining{false};

  shared_state(api& h, server_config c, prometheus::Registry& registry)
      : handler(h), config(std::move(c)), metrics(registry),
        per_address(config.connections_per_address_max) {}
};

namespace {

std::size_t
route_body_limit(const bhttp::request_parser<bhttp::string_body>& p) {
  return body_limit_for(p.get().method(), p.get().target());
}

/// One client connection, served by one I/O thread.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, asio::ip::address peer, std::string address_key,
          std::shared_ptr<server::shared_state> shared)
      : stream_(std::move(socket)), deadline_(stream_.get_executor()),
        shared_(std::move(shared)), peer_(std::move(peer)),
        address_key_(std::move(address_key)) {
    shared_->connections.fetch_add(1);
    shared_->metrics.connections().Increment();
  }

  ~session() {
    end_request();
    shared_->per_address.release(address_key_);
    shared_->connections.fetch_sub(1);
    shared_->metrics.connections().Decrement();
  }

  void start() {
    asio::dispatch(
        stream_.get_executor(),
        beast::bind_front_handler(&session::read_header, shared_from_this()));
  }

private:
  /// Waits for the first byte of the next request: on a new connection for
  /// the first-byte timeout, between requests for the keep-alive idle
  /// timeout; from then on the header must arrive within the header timeout.
  void read_header() {
    // Also while draining: a request on a connection kept alive before the
    // drain began, or on one accepted just before the listener closed, is
    // served (and answered with Connection: close).
    if (buffer_.size() > 0) {
      read_header_now();
      return;
    }
    stream_.expires_after(std::chrono::milliseconds(
        answered_any_ ? limits::keepalive_idle_timeout_ms
                      : limits::first_byte_timeout_ms));
    stream_.async_read_some(
        buffer_.prepare(4096),
        [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
          if (ec) {
            self->close();
            return;
          }
          self->buffer_.commit(bytes);
          self->read_header_now();
        });
  }

  void read_header_now() {
    begin_request();
    parser_.emplace();
    parser_->header_limit(limits::header_bytes_max);
    // No body limit yet: the route, known after the header, sets it, and a
    // Content-Length above it is answered 413 in on_header.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(
        std::chrono::milliseconds(limits::header_read_timeout_ms));
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::header_limit) {
      fail_and_close(problem(431, problem_code::headers_too_large,
                             "request headers exceed 8 KiB"));
      return;
    }
    if (ec) {
      close(); // end of stream, timeout, garbage: nothing to answer
      return;
    }
    auto limit = route_body_limit(*parser_);
    auto length = parser_->content_length();
    if (length && *length > limit) {
      fail_and_close(too_large(limit));
      return;
    }
    parser_->body_limit(limit);
    if (parser_->is_done()) {
      on_request();
      return;
    }
    const auto& req = parser_->get();
    auto expect = req[bhttp::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      // curl and others wait for this before sending a larger body.
      static const std::string continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
      stream_.expires_after(
          std::chrono::milliseconds(limits::write_timeout_ms));
      asio::async_write(
          stream_, asio::buffer(continue_line),
          [self = shared_from_this()](beast::error_code e, std::size_t) {
            if (e)
              self->close();
            else
              self->read_body();
          });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_.expires_after(
        std::chrono::milliseconds(limits::body_read_timeout_ms));
    bhttp::async_read(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::body_limit) {
      fail_and_close(too_large(route_body_limit(*parser_)));
      return;
    }
    if (ec) {
      close();
      return;
    }
    on_request();
  }

  api_response too_large(std::size_t limit) {
    return problem(413, problem_code::payload_too_large,
                   "request bodies on this route are limited to " +
                       std::to_string(limit / 1024) + " KiB");
  }

  void on_request() {
    stream_.expires_never();
    auto message = parser_->release();
    keep_alive_ = message.keep_alive();
    auto req = to_api_request(std::move(message));
    req.remote_address = peer_.to_string();
    // On this thread already (a Redis answer on the thread's own
    // connection) it runs at once; from any other thread it is posted.
    req.resume = [executor = stream_.get_executor()](
                     std::function<void()> continuation) {
      asio::dispatch(executor, std::move(continuation));
    };
    started_ = std::chrono::steady_clock::now();
    auto generation = ++generation_;
    waiting_ = true;
    deadline_.expires_after(
        std::chrono::milliseconds(shared_->config.request_timeout_ms));
    deadline_.async_wait([weak = weak_from_this(),
                          generation](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->respond(generation,
                    problem(503, problem_code::unavailable,
                            "no answer within the request deadline; retry "
                            "with the same Idempotency-Key to learn whether "
                            "it took effect"));
    });
    shared_->handler.handle(
        std::move(req),
        [self = shared_from_this(), generation](api_response response) {
          auto executor = self->stream_.get_executor();
          // Inline when already on this connection's thread, posted otherwise.
          asio::dispatch(executor, [self, generation,
                                    response = std::move(response)]() mutable {
            self->respond(generation, std::move(response));
          });
        });
  }

  void respond(uint64_t generation, api_response response) {
    if (generation != generation_ || !waiting_)
      return; // a late answer to a request already answered 503
    waiting_ = false;
    deadline_.cancel();
    auto elapsed = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - started_)
                       .count();
    shared_->metrics.observe(response.route, response.status, elapsed);
    write(std::move(response));
  }

  void fail_and_close(api_response response) {
    keep_alive_ = false;
    shared_->metrics.observe(response.route, response.status, 0);
    write(std::move(response));
  }

  void write(api_response response) {
    response_ = {};
    response_.version(11);
    response_.result(response.status);
    if (!response.content_type.empty())
      response_.set(bhttp::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers)
      response_.set(name, value);
    response_.body() = std::move(response.body);
    bool keep = keep_alive_ && !shared_->draining;
    response_.keep_alive(keep);
    response_.prepare_payload();
    stream_.expires_after(std::chrono::milliseconds(limits::write_timeout_ms));
    bhttp::async_write(
        stream_, response_,
        [self = shared_from_this(), keep](beast::error_code ec, std::size_t) {
          self->end_request();
          self->answered_any_ = true;
          if (ec || !keep)
            self->close();
          else
            self->read_header();
        });
  }

  /// A request has begun (its first byte is here): a drain waits for it.
  void begin_request() {
    if (in_request_) return;
    in_request_ = true;
    shared_->requests_in_progress.fetch_add(1);
    shared_->last_request_started.store(
        std::chrono::steady_clock::now().time_since_epoch().count());
  }

  void end_request() {
    if (!in_request_) return;
    in_request_ = false;
    shared_->requests_in_progress.fetch_sub(1);
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
    deadline_.cancel();
    waiting_ = false;
    end_request();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  asio::steady_timer deadline_;
  std::shared_ptr<server::shared_state> shared_;
  asio::ip::address peer_;
  std::string address_key_;
  std::chrono::steady_clock::time_point started_;
  uint64_t generation_ = 0;
  bool waiting_ = false;
  bool in_request_ = false;
  bool keep_alive_ = true;
  bool answered_any_ = false;
};

} // namespace

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
  std::make_shared<session>(std::move(socket), peer.address(), std::move(*key),
                            shared_)
      ->start();
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
