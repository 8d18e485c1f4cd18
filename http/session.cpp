#include "http/boost_names.hpp"
#include "http/problem.hpp"
#include "http/request_mapping.hpp"
#include "http/server_state.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace rsv::http {

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

void serve_connection(tcp::socket socket, asio::ip::address peer,
                      std::string address_key,
                      std::shared_ptr<server::shared_state> shared) {
  std::make_shared<session>(std::move(socket), std::move(peer),
                            std::move(address_key), std::move(shared))
      ->start();
}

} // namespace rsv::http
