#include "http/peer_client.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "http/boost_names.hpp"
#include "http/peer_message.hpp"

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <unordered_map>

namespace rsv::http {

using steady = std::chrono::steady_clock;
using done_fn = std::function<void(caf::expected<api_response>)>;

namespace {

/// The pool of the calling I/O thread (set by attach_peer_pool).
thread_local peer_pool* current_pool = nullptr;

/// One TCP connection to a peer: owned by the exchange that uses it, or by
/// its peer's idle list between exchanges; the pool's thread only.
struct connection {
  explicit connection(asio::io_context& io) : stream(io) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  steady::time_point idle_since;
};
using connection_ptr = std::shared_ptr<connection>;

class exchange;

/// What a pool knows about one address: where it is and its idle
/// connections. Owned by the pool's state, never removed while it lives.
struct peer {
  std::string host;
  std::string port;
  bool literal = false; // an IP literal: `endpoints` never goes stale
  std::vector<tcp::endpoint> endpoints;
  steady::time_point resolved_at;
  bool resolving = false;
  uint64_t resolve_generation = 0;
  /// Exchanges that wait for the name resolution under way.
  std::vector<std::shared_ptr<exchange>> waiting;
  /// Least recently used first.
  std::vector<connection_ptr> idle;
};

/// Errors on a reused connection that mean the peer had closed it while it
/// was idle (normal for keep-alive), before it could have read the request.
bool closed_while_idle(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

} // namespace

/// A pool's state; shared with its exchanges, so that their handlers may
/// run (and find `closed`) after the pool is gone.
struct peer_pool::state : std::enable_shared_from_this<peer_pool::state> {
  state(asio::io_context& context, peer_config c,
        std::shared_ptr<const peer_metrics> m)
      : io(context), config(c), metrics(std::move(m)), resolver(context),
        sweep_timer(context) {}

  asio::io_context& io;
  peer_config config;
  std::shared_ptr<const peer_metrics> metrics;
  tcp::resolver resolver;
  asio::steady_timer sweep_timer;
  bool sweep_armed = false;
  bool closed = false;
  std::unordered_map<std::string, std::unique_ptr<peer>> peers;
  /// Exchanges not yet finished, for the pool's destructor.
  std::unordered_map<const exchange*, std::weak_ptr<exchange>> in_flight;

  std::chrono::milliseconds keepalive() const {
    return std::chrono::milliseconds(config.idle_keepalive_ms);
  }

  caf::expected<peer*> peer_for(const std::string& address) {
    if (auto found = peers.find(address); found != peers.end())
      return found->second.get();
    auto p = std::make_unique<peer>();
    peer_address where;
    if (auto bad = parse_address(address, where))
      return forward_error(address, "bad address (" + *bad + ")");
    p->host = std::move(where.host);
    p->port = std::move(where.port);
    if (where.literal) {
      p->literal = true;
      p->endpoints = {*where.literal};
    }
    return peers.emplace(address, std::move(p)).first->second.get();
  }

  bool endpoints_fresh(const peer& p) const {
    return p.literal ||
           (!p.endpoints.empty() &&
            steady::now() - p.resolved_at <
                std::chrono::milliseconds(config.resolve_cache_ms));
  }

  /// The most recently used idle connection that is still young enough.
  connection_ptr take_idle(peer& p) {
    while (!p.idle.empty()) {
      auto c = std::move(p.idle.back());
      p.idle.pop_back();
      if (c->stream.socket().is_open() &&
          steady::now() - c->idle_since < keepalive())
        return c;
      c->stream.close();
    }
    return nullptr;
  }

  void put_idle(peer& p, connection_ptr c) {
    if (closed || p.idle.size() >= config.idle_connections_per_peer_max) {
      c->stream.close();
      return;
    }
    c->stream.expires_never();
    c->idle_since = steady::now();
    p.idle.push_back(std::move(c));
    arm_sweep();
  }

  /// Closes idle connections as they pass idle_keepalive_ms, so that a
  /// quiet pool does not hold sockets the peer is about to close anyway.
  void arm_sweep() {
    if (sweep_armed || closed) return;
    std::optional<steady::time_point> oldest;
    for (auto& [address, p] : peers)
      if (!p->idle.empty())
        oldest = std::min(oldest.value_or(p->idle.front()->idle_since),
                          p->idle.front()->idle_since);
    if (!oldest) return;
    sweep_armed = true;
    sweep_timer.expires_at(*oldest + keepalive());
    sweep_timer.async_wait([weak = weak_from_this()](const beast::error_code&) {
      auto self = weak.lock();
      if (!self) return;
      self->sweep_armed = false;
      if (self->closed) return;
      auto now = steady::now();
      for (auto& [address, p] : self->peers) {
        auto young = std::find_if(
            p->idle.begin(), p->idle.end(), [&](const connection_ptr& c) {
              return now - c->idle_since < self->keepalive();
            });
        for (auto it = p->idle.begin(); it != young; ++it)
          (*it)->stream.close();
        p->idle.erase(p->idle.begin(), young);
      }
      self->arm_sweep();
    });
  }

  void resolve(peer& p);
};

namespace {

/// One forwarded request, from forward() until `done` has run: takes or
/// opens a connection, writes, reads the answer, and gives the connection
/// back or closes it. Lives as long as a handler of its own is pending; the
/// pool's thread only.
class exchange : public std::enable_shared_from_this<exchange> {
public:
  exchange(std::shared_ptr<peer_pool::state> pool, std::string address,
           bhttp::request<bhttp::string_body> request, done_fn done)
      : pool_(std::move(pool)), address_(std::move(address)),
        request_(std::move(request)), done_(std::move(done)),
        started_(steady::now()),
        deadline_(started_ +
                  std::chrono::milliseconds(pool_->config.request_timeout_ms)) {
  }

  void start() {
    pool_->in_flight.emplace(this, weak_from_this());
    auto p = pool_->peer_for(address_);
    if (!p) {
      // Never inside forward(): the caller may hold locks or be mid-update.
      asio::post(pool_->io, [self = shared_from_this(), e = p.error()] {
        self->finish(e);
      });
      return;
    }
    peer_ = *p;
    acquire();
  }

  /// After the peer's name resolution: an error, or endpoints to connect to.
  void resolved(const std::optional<std::string>& failure) {
    if (finished_) return;
    if (failure) {
      fail(*failure);
      return;
    }
    if (auto c = pool_->take_idle(*peer_)) {
      use(std::move(c), true);
      return;
    }
    connect();
  }

  /// Ends the exchange because the pool is going away.
  void abort() {
    if (conn_) conn_->stream.close();
    fail("the node is shutting down");
  }

private:
  void acquire() {
    if (auto c = pool_->take_idle(*peer_)) {
      use(std::move(c), true);
      return;
    }
    if (pool_->endpoints_fresh(*peer_)) {
      connect();
      return;
    }
    peer_->waiting.push_back(shared_from_this());
    pool_->resolve(*peer_);
  }

  void use(connection_ptr c, bool reused) {
    conn_ = std::move(c);
    reused_ = reused;
    send();
  }

  void connect() {
    auto remaining = deadline_ - steady::now();
    if (remaining <= steady::duration::zero()) {
      fail(timed_out());
      return;
    }
    conn_ = std::make_shared<connection>(pool_->io);
    reused_ = false;
    auto limit = std::min<steady::duration>(
        remaining, std::chrono::milliseconds(pool_->config.connect_timeout_ms));
    conn_->stream.expires_after(limit);
    endpoints_ = peer_->endpoints;
    conn_->stream.async_connect(
        endpoints_, [self = shared_from_this()](const beast::error_code& ec,
                                                const tcp::endpoint&) {
          self->connected(ec);
        });
  }

  void connected(const beast::error_code& ec) {
    if (finished_) return;
    if (ec) {
      conn_->stream.close();
      // The name may point elsewhere now: ask again next time, but keep
      // the old answer in case the resolver fails.
      if (!peer_->literal) peer_->resolved_at = {};
      if (ec == beast::error::timeout)
        fail("connect timed out");
      else
        fail("connect failed: " + ec.message());
      return;
    }
    if (pool_->metrics && pool_->metrics->connections_opened)
      pool_->metrics->connections_opened->Increment();
    beast::error_code ignored;
    conn_->stream.socket().set_option(tcp::no_delay(true), ignored);
    send();
  }

  void send() {
    if (steady::now() >= deadline_) {
      // A taken idle connection stays good for the next exchange.
      if (reused_) pool_->put_idle(*peer_, std::move(conn_));
      fail(timed_out());
      return;
    }
    conn_->stream.expires_at(deadline_);
    bhttp::async_write(
        conn_->stream, request_,
        [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
          self->written(ec);
        });
  }

  void written(const beast::error_code& ec) {
    if (finished_) return;
    if (ec) {
      failed(ec, "write", true);
      return;
    }
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(limits::peer_response_header_bytes_max));
    parser_->body_limit(limits::peer_response_body_bytes_max);
    if (request_.method() == bhttp::verb::head) parser_->skip(true);
    bhttp::async_read(
        conn_->stream, conn_->buffer, *parser_,
        [self = shared_from_this()](const beast::error_code& read_ec,
                                    std::size_t) { self->read(read_ec); });
  }

  void read(const beast::error_code& ec) {
    if (finished_) return;
    if (ec) {
      failed(ec, "read", !parser_->got_some() && conn_->buffer.size() == 0);
      return;
    }
    bool reusable = parser_->keep_alive() && !parser_->need_eof() &&
                    conn_->buffer.size() == 0;
    auto answer = to_api_response(parser_->release());
    parser_.reset();
    if (reusable)
      pool_->put_idle(*peer_, std::move(conn_));
    else
      conn_->stream.close();
    conn_.reset();
    finish(std::move(answer));
  }

  /// A failed write or read: the connection is closed, never reused. A
  /// reused connection the peer had closed while it was idle is no failure
  /// of the request: it goes once more on a fresh connection.
  void failed(const beast::error_code& ec, const char* stage,
              bool nothing_received) {
    conn_->stream.close();
    conn_.reset();
    if (reused_ && !retried_ && nothing_received && closed_while_idle(ec)) {
      retried_ = true;
      connect();
      return;
    }
    if (ec == beast::error::timeout)
      fail(timed_out());
    else if (ec == bhttp::error::end_of_stream || ec == asio::error::eof)
      fail(nothing_received ? "the peer closed the connection early, before "
                              "answering"
                            : "the peer closed the connection early, in the "
                              "middle of its answer");
    else if (ec == bhttp::error::body_limit)
      fail("the answer's body is over " +
           std::to_string(limits::peer_response_body_bytes_max) + " bytes");
    else if (ec == bhttp::error::header_limit)
      fail("the answer's header is over " +
           std::to_string(limits::peer_response_header_bytes_max) + " bytes");
    else
      fail(std::string{stage} + " failed: " + ec.message());
  }

  std::string timed_out() const {
    return "timed out (no answer within " +
           std::to_string(pool_->config.request_timeout_ms) + " ms)";
  }

  void fail(const std::string& why) { finish(forward_error(address_, why)); }

  void finish(caf::expected<api_response> result) {
    if (finished_) return;
    finished_ = true;
    pool_->in_flight.erase(this);
    if (auto& m = pool_->metrics) {
      auto* outcome = result ? m->ok : m->error;
      if (outcome) outcome->Increment();
      if (m->seconds)
        m->seconds->Observe(
            std::chrono::duration<double>(steady::now() - started_).count());
    }
    auto done = std::move(done_);
    done(std::move(result));
  }

  std::shared_ptr<peer_pool::state> pool_;
  std::string address_;
  bhttp::request<bhttp::string_body> request_;
  done_fn done_;
  steady::time_point started_;
  steady::time_point deadline_;
  peer* peer_ = nullptr; // owned by pool_->peers
  std::vector<tcp::endpoint> endpoints_;
  connection_ptr conn_;
  bool reused_ = false;
  bool retried_ = false;
  bool finished_ = false;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
};

} // namespace

void peer_pool::state::resolve(peer& p) {
  if (p.resolving) return;
  p.resolving = true;
  auto generation = ++p.resolve_generation;
  // The resolver has no deadline of its own (getaddrinfo runs on Asio's
  // resolver thread): waiting exchanges are answered when this fires.
  auto timer = std::make_shared<asio::steady_timer>(io);
  auto finish = [&p, generation](std::optional<std::string> failure) {
    if (!p.resolving || p.resolve_generation != generation) return;
    p.resolving = false;
    auto waiting = std::move(p.waiting);
    p.waiting.clear();
    for (auto& x : waiting)
      x->resolved(failure);
  };
  timer->expires_after(std::chrono::milliseconds(config.connect_timeout_ms));
  timer->async_wait(
      [self = shared_from_this(), finish](const beast::error_code& ec) {
        if (ec || self->closed) return;
        finish("name resolution timed out");
      });
  resolver.async_resolve(
      p.host, p.port,
      [self = shared_from_this(), &p, timer,
       finish](const beast::error_code& ec, tcp::resolver::results_type found) {
        timer->cancel();
        if (self->closed) return;
        if (!ec && !found.empty()) {
          p.endpoints.clear();
          for (auto& entry : found)
            p.endpoints.push_back(entry.endpoint());
          p.resolved_at = steady::now();
          finish(std::nullopt);
        } else if (!p.endpoints.empty()) {
          // Better the last known address than none.
          finish(std::nullopt);
        } else {
          finish("cannot resolve " + p.host + ": " +
                 (ec ? ec.message() : std::string{"no address"}));
        }
      });
}

peer_pool::peer_pool(asio::io_context& io, peer_config config,
                     std::shared_ptr<const peer_metrics> metrics)
    : state_(std::make_shared<state>(io, config, std::move(metrics))) {}

peer_pool::~peer_pool() {
  auto& s = *state_;
  s.closed = true;
  s.sweep_timer.cancel();
  s.resolver.cancel();
  std::vector<std::shared_ptr<exchange>> live;
  for (auto& [address, p] : s.peers) {
    for (auto& c : p->idle)
      c->stream.close();
    p->idle.clear();
    // Breaks the cycle state -> peer -> exchange -> state.
    p->waiting.clear();
  }
  for (auto& [raw, weak] : s.in_flight)
    if (auto x = weak.lock()) live.push_back(std::move(x));
  for (auto& x : live)
    x->abort();
  if (current_pool == this) current_pool = nullptr;
}

void peer_pool::forward(
    const std::string& address, const api_request& req,
    std::vector<std::pair<std::string, std::string>> extra_headers,
    std::function<void(caf::expected<api_response>)> done) {
  if (state_->closed) {
    done(forward_error(address, "the node is shutting down"));
    return;
  }
  auto message = to_peer_request(address, req, extra_headers);
  if (!message) {
    asio::post(state_->io,
               [done = std::move(done), e = message.error()] { done(e); });
    return;
  }
  std::make_shared<exchange>(state_, address, std::move(*message),
                             std::move(done))
      ->start();
}

std::size_t peer_pool::idle_connections() const {
  std::size_t n = 0;
  for (auto& [address, p] : state_->peers)
    n += p->idle.size();
  return n;
}

peer_pool* peer_pool::current() {
  return current_pool;
}

void forward(const std::string& address, const api_request& req,
             std::vector<std::pair<std::string, std::string>> extra_headers,
             std::function<void(caf::expected<api_response>)> done) {
  if (auto* pool = current_pool) {
    pool->forward(address, req, std::move(extra_headers), std::move(done));
    return;
  }
  done(forward_error(address, "no peer pool on this thread (forward() "
                              "runs on an I/O thread only)"));
}

std::shared_ptr<void> attach_peer_pool(asio::io_context& io, peer_config config,
                                       std::shared_ptr<const peer_metrics> m) {
  auto pool = std::make_shared<peer_pool>(io, config, std::move(m));
  current_pool = pool.get();
  // What the caller holds: dropping it detaches the thread and answers
  // what is still in flight.
  return std::shared_ptr<void>(pool.get(), [pool](void*) mutable {
    if (current_pool == pool.get()) current_pool = nullptr;
    pool.reset();
  });
}

std::shared_ptr<const peer_metrics>
make_peer_metrics(std::shared_ptr<prometheus::Registry> registry) {
  auto m = std::make_shared<peer_metrics>();
  if (!registry) return m;
  auto& requests =
      prometheus::BuildCounter()
          .Name("rsv_forwarded_requests_total")
          .Help("Requests forwarded to the owner node, by outcome: ok (the "
                "peer answered, whatever the status) or error (refused, "
                "timed out, closed early: answered 503 unavailable)")
          .Register(*registry);
  m->ok = &requests.Add({{"outcome", "ok"}});
  m->error = &requests.Add({{"outcome", "error"}});
  static const prometheus::Histogram::BucketBoundaries buckets{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,  0.5,    1,     2.5,  5};
  m->seconds = &prometheus::BuildHistogram()
                    .Name("rsv_forward_seconds")
                    .Help("Time from forward() to the peer's whole answer "
                          "(or the error)")
                    .Register(*registry)
                    .Add({}, buckets);
  m->connections_opened =
      &prometheus::BuildCounter()
           .Name("rsv_forward_connections_opened_total")
           .Help("Connections opened to peer nodes (a low rate means "
                 "keep-alive works)")
           .Register(*registry)
           .Add({});
  m->registry = std::move(registry);
  return m;
}

} // namespace rsv::http
