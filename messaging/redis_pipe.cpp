#include "messaging/redis_pipe.hpp"

#include "core/limits.hpp"
#include "messaging/hiredis_support.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <spdlog/spdlog.h>

namespace rsv::messaging {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

/// Appends one command in RESP, the form Redis reads.
void append_resp(std::string& out, const std::vector<std::string>& args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto& arg : args) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
  }
}

} // namespace

struct redis_pipe::impl : std::enable_shared_from_this<redis_pipe::impl> {
  enum class phase { stopped, waiting, connecting, handshake, ready };

  impl(asio::io_context& context, redis_pipe_config cfg)
      : config(std::move(cfg)), resolver(context), socket(context),
        timer(context), session(config.endpoint, config.scripts) {}

  ~impl() { drop_reader(); }

  // -- connecting -------------------------------------------------------------

  void connect() {
    state = phase::connecting;
    ++attempts;
    ++generation;
    auto gen = generation;
    timer.expires_after(std::chrono::milliseconds(config.connect_timeout_ms));
    timer.async_wait([self = shared_from_this(), gen](auto ec) {
      if (!ec && self->generation == gen && self->state == phase::connecting)
        self->broken("no connection within " +
                     std::to_string(self->config.connect_timeout_ms) + " ms");
    });
    resolver.async_resolve(
        config.endpoint.host, std::to_string(config.endpoint.port),
        [self = shared_from_this(), gen](auto ec,
                                         tcp::resolver::results_type results) {
          if (self->generation != gen) return;
          if (ec) return self->broken(ec.message());
          asio::async_connect(
              self->socket, results,
              [self, gen](auto connect_ec, const tcp::endpoint&) {
                if (self->generation != gen) return;
                if (connect_ec) return self->broken(connect_ec.message());
                self->connected();
              });
        });
  }

  void connected() {
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    socket.set_option(asio::socket_base::keep_alive(true), ignored);
    drop_reader();
    reader = redisReaderCreate();
    state = phase::handshake;
    for (const auto& command : session.open())
      append_resp(out, command);
    flush();
    read();
    tick();
    if (session.ready()) ready();
  }

  void ready() {
    state = phase::ready;
    backoff.reset();
    up->store(true, std::memory_order_release);
    if (warned)
      spdlog::info("redis: rate-limit connection to {}:{} is back",
                   config.endpoint.host, config.endpoint.port);
    warned = false;
    auto early = std::move(first_wait);
    first_wait.clear();
    for (auto& e : early)
      issue(e.script, std::move(e.command), std::move(e.done));
  }

  /// The connection is lost (or never came): what waits is answered
  /// unavailable, and a new attempt follows the backoff.
  void broken(const std::string& why) {
    if (state == phase::stopped) return;
    if (!warned)
      spdlog::warn("redis: rate-limit connection to {}:{}: {} (reconnecting)",
                   config.endpoint.host, config.endpoint.port, why);
    warned = true;
    close(phase::waiting);
    auto gen = generation;
    timer.expires_after(backoff.next());
    timer.async_wait([self = shared_from_this(), gen](auto ec) {
      if (!ec && self->generation == gen && self->state == phase::waiting)
        self->connect();
    });
  }

  /// Closes the socket, moves to `next` and answers what waits (a callback
  /// that sends again is refused at once); handlers of the old connection
  /// see another generation and do nothing.
  void close(phase next) {
    state = next;
    ++generation;
    up->store(false, std::memory_order_release);
    boost::system::error_code ignored;
    resolver.cancel();
    socket.close(ignored);
    timer.cancel();
    writing = false;
    out.clear();
    drop_reader();
    auto early = std::move(first_wait);
    first_wait.clear();
    session.fail_all("the Redis connection broke");
    for (auto& e : early)
      e.done(redis_unavailable("Redis could not be reached"));
  }

  void drop_reader() {
    if (reader) redisReaderFree(reader);
    reader = nullptr;
  }

  // -- writing ----------------------------------------------------------------

  /// Writes what was appended; what comes during a write goes with the next.
  void flush() {
    if (writing || out.empty()) return;
    writing = true;
    auto buffer = std::make_shared<std::string>();
    buffer->swap(out);
    auto gen = generation;
    asio::async_write(
        socket, asio::buffer(*buffer),
        [self = shared_from_this(), buffer, gen](auto ec, std::size_t) {
          if (self->generation != gen) return;
          if (ec) return self->broken(ec.message());
          self->writing = false;
          self->flush();
        });
  }

  /// A script call from the caller: sent when ready; kept until the first
  /// connection is ready (or fails) while that is being made; refused at
  /// once otherwise. `command` is numkeys, keys, args.
  void issue(std::size_t script, std::vector<std::string> command,
             redis_callback done) {
    if (state != phase::ready) {
      bool first = attempts == 1 &&
                   (state == phase::connecting || state == phase::handshake);
      if (first && first_wait.size() < limits::redis_queue_max) {
        first_wait.push_back({script, std::move(command), std::move(done)});
        return;
      }
      return done(redis_unavailable("Redis is unreachable"));
    }
    if (session.waiting() >= limits::redis_queue_max)
      return done(redis_unavailable("the Redis queue is full"));
    append_resp(out,
                session.script(script, std::move(command), std::move(done)));
    flush();
  }

  // -- reading ----------------------------------------------------------------

  void read() {
    auto gen = generation;
    socket.async_read_some(asio::buffer(input), [self = shared_from_this(),
                                                 gen](auto ec, std::size_t n) {
      if (self->generation != gen) return;
      if (ec)
        return self->broken(ec == asio::error::eof
                                ? std::string{"closed by Redis"}
                                : ec.message());
      self->received(n);
    });
  }

  void received(std::size_t n) {
    auto gen = generation;
    if (redisReaderFeed(reader, input.data(), n) != REDIS_OK)
      return broken("unreadable reply");
    while (generation == gen) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader, &raw) != REDIS_OK)
        return broken(std::string{"unreadable reply: "} + reader->errstr);
      if (raw == nullptr) break;
      auto reply = copy_reply(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      answer(std::move(reply));
    }
    if (generation == gen) read();
  }

  void answer(redis_reply reply) {
    auto result = session.on_reply(std::move(reply));
    using kind = redis_session::outcome::kind;
    switch (result.what) {
    case kind::nothing:
      return;
    case kind::ready:
      return ready();
    case kind::answer:
      return result.done(std::move(result.reply));
    case kind::resend:
      append_resp(out, *result.resend);
      return flush();
    case kind::broken:
      return broken(result.why);
    }
  }

  /// While connected: a reply overdue breaks the connection.
  void tick() {
    auto period = std::max(10, config.command_timeout_ms / 4);
    auto gen = generation;
    timer.expires_after(std::chrono::milliseconds(period));
    timer.async_wait([self = shared_from_this(), gen](auto ec) {
      if (ec || self->generation != gen) return;
      auto oldest = self->session.oldest_written();
      auto limit = std::chrono::milliseconds(self->config.command_timeout_ms);
      if (oldest && steady::now() - *oldest > limit)
        return self->broken("no reply within " +
                            std::to_string(self->config.command_timeout_ms) +
                            " ms");
      self->tick();
    });
  }

  redis_pipe_config config;
  tcp::resolver resolver;
  tcp::socket socket;
  asio::steady_timer timer; // connecting, backoff, reply deadlines
  phase state = phase::stopped;
  uint64_t generation = 0;
  redis_backoff backoff;
  bool warned = false;
  uint64_t attempts = 0; // connections tried
  /// Commands that came while the first connection was being made.
  struct early_command {
    std::size_t script;
    std::vector<std::string> command;
    redis_callback done;
  };
  std::vector<early_command> first_wait;
  /// What was written and waits for its reply, the scripts' hashes.
  redis_session session;
  std::string out; // appended, not written yet
  bool writing = false;
  std::array<char, 16 * 1024> input{};
  redisReader* reader = nullptr;
  std::shared_ptr<std::atomic<bool>> up =
      std::make_shared<std::atomic<bool>>(false);
};

redis_pipe::redis_pipe(asio::io_context& io, redis_pipe_config config)
    : impl_(std::make_shared<impl>(io, std::move(config))) {}

redis_pipe::~redis_pipe() {
  stop();
}

void redis_pipe::start() {
  if (impl_->state == impl::phase::stopped) impl_->connect();
}

void redis_pipe::stop() {
  if (impl_->state == impl::phase::stopped) return;
  impl_->close(impl::phase::stopped);
}

void redis_pipe::eval(std::size_t script, const std::vector<std::string>& keys,
                      const std::vector<std::string>& args,
                      redis_callback done) {
  impl_->issue(script, script_arguments(keys, args), std::move(done));
}

std::shared_ptr<const std::atomic<bool>> redis_pipe::up() const {
  return impl_->up;
}

} // namespace rsv::messaging
