#include "core/errc.hpp"
#include "http/peer_client.hpp"
#include "support/eventually.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <gtest/gtest.h>
#include <mutex>
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <thread>

namespace rsv::http {
namespace {

using test_support::eventually;

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using result = caf::expected<api_response>;

/// What the test server does with a request it has read.
enum class behaviour {
  answer,            // answer and keep the connection open
  answer_then_close, // answer with keep-alive, then close as if idle too long
  never_answer,      // read the request, then stay silent
};

/// A small Beast HTTP server on 127.0.0.1:0 with its own thread, counting
/// the connections it accepts and the requests it reads.
class test_server {
public:
  using handler_fn = std::function<bhttp::response<bhttp::string_body>(
      const bhttp::request<bhttp::string_body>&)>;

  explicit test_server(handler_fn handler, behaviour mode = behaviour::answer)
      : handler_(std::move(handler)), mode_(mode),
        acceptor_(io_, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~test_server() {
    io_.stop();
    thread_.join();
  }

  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

  std::atomic<int> accepted{0};
  std::atomic<int> requests{0};
  std::atomic<int> closed{0};

  /// The requests read so far (any thread).
  std::vector<bhttp::request<bhttp::string_body>> received() {
    std::lock_guard lock{mutex_};
    return received_;
  }

private:
  struct session : std::enable_shared_from_this<session> {
    session(tcp::socket s, test_server& owner)
        : stream(std::move(s)), server(owner) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser;
    bhttp::response<bhttp::string_body> response;
    test_server& server;

    void read() {
      parser.emplace();
      parser->body_limit(64 * 1024 * 1024);
      bhttp::async_read(
          stream, buffer, *parser,
          [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            self->on_request();
          });
    }

    void on_request() {
      auto request = parser->release();
      {
        std::lock_guard lock{server.mutex_};
        server.received_.push_back(request);
      }
      server.requests.fetch_add(1);
      if (server.mode_ == behaviour::never_answer) {
        // Keep reading, so that a close by the client is noticed.
        read();
        return;
      }
      response = server.handler_(request);
      response.version(11);
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      bhttp::async_write(
          stream, response,
          [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec || self->server.mode_ == behaviour::answer_then_close)
              return self->close();
            self->read();
          });
    }

    void close() {
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream.close();
      server.closed.fetch_add(1);
    }
  };

  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      accepted.fetch_add(1);
      std::make_shared<session>(std::move(socket), *this)->read();
      accept();
    });
  }

  handler_fn handler_;
  behaviour mode_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<bhttp::request<bhttp::string_body>> received_;
};

bhttp::response<bhttp::string_body> ok(std::string body) {
  bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
  res.set(bhttp::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

/// An I/O thread with a peer pool attached, as the server's I/O threads
/// will have, and a way to forward from it and wait for the answers.
class client_thread {
public:
  explicit client_thread(
      peer_config config,
      std::shared_ptr<const peer_metrics> metrics = nullptr) {
    std::promise<void> ready;
    thread_ = std::thread([&] {
      auto guard = asio::make_work_guard(io_);
      auto pool = attach_peer_pool(io_, config, metrics);
      ready.set_value();
      io_.run();
      pool.reset();
    });
    ready.get_future().wait();
  }

  ~client_thread() { stop(); }

  void stop() {
    if (!thread_.joinable()) return;
    io_.stop();
    thread_.join();
  }

  /// Starts `n` forwards at once on the I/O thread; their answers arrive in
  /// `answers` (index by request), each done call counted in `calls`.
  struct batch {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::optional<result>> answers;
    std::vector<int> calls;
    std::size_t answered = 0;

    bool wait_all(std::chrono::milliseconds deadline) {
      std::unique_lock lock{mutex};
      return changed.wait_for(lock, deadline,
                              [&] { return answered == answers.size(); });
    }
  };

  std::shared_ptr<batch>
  start(const std::string& address, const api_request& req, std::size_t n,
        std::vector<std::pair<std::string, std::string>> extra = {}) {
    auto b = std::make_shared<batch>();
    b->answers.resize(n);
    b->calls.resize(n);
    asio::post(io_, [=] {
      for (std::size_t i = 0; i < n; ++i)
        forward(address, req, extra, [b, i](result r) {
          std::lock_guard lock{b->mutex};
          if (++b->calls[i] == 1) {
            b->answers[i] = std::move(r);
            ++b->answered;
          }
          b->changed.notify_all();
        });
    });
    return b;
  }

  /// One forward, waited for.
  result
  forward_one(const std::string& address, const api_request& req,
              std::vector<std::pair<std::string, std::string>> extra = {},
              std::chrono::milliseconds deadline = 10s) {
    auto b = start(address, req, 1, std::move(extra));
    if (!b->wait_all(deadline))
      return make_error(errc::none, std::string{"test: no answer in time"});
    std::lock_guard lock{b->mutex};
    EXPECT_EQ(b->calls[0], 1);
    return std::move(*b->answers[0]);
  }

  /// Runs `f` on the I/O thread and answers its result.
  template <class F>
  auto on_thread(F f) {
    std::promise<decltype(f())> promise;
    asio::post(io_, [&] { promise.set_value(f()); });
    return promise.get_future().get();
  }

private:
  asio::io_context io_;
  std::thread thread_;
};

api_request get(std::string target) {
  api_request req;
  req.verb = method::get;
  req.method_text = "GET";
  req.target = std::move(target);
  return req;
}

std::string detail(const caf::error& err) {
  if (err.context().empty()) return {};
  return err.context().get_as<std::string>(0);
}

bool is_unavailable(const result& r) {
  return !r && r.error().category() == errc_category &&
         r.error().code() == static_cast<uint8_t>(errc::unavailable);
}

std::string header(const api_response& res, std::string_view name) {
  for (auto& [key, value] : res.headers)
    if (beast::iequals(key, name)) return value;
  return "<absent>";
}

TEST(peer_client, relays_status_body_and_end_to_end_headers_only) {
  test_server server{[](const bhttp::request<bhttp::string_body>& req) {
    bhttp::response<bhttp::string_body> res{bhttp::status::created, 11};
    res.set(bhttp::field::content_type, "application/problem+json");
    res.set(bhttp::field::location, "/v1/holds/hld_1_2");
    res.set(bhttp::field::retry_after, "3");
    res.set("RateLimit", "limit=10, remaining=9, reset=60");
    res.set("RateLimit-Policy", "10;w=60");
    res.set("Idempotent-Replayed", "true");
    res.set(bhttp::field::etag, "\"v7\"");
    res.set(bhttp::field::allow, "GET, POST");
    res.set(bhttp::field::www_authenticate, "Bearer");
    res.set(bhttp::field::cache_control, "no-store");
    res.set(bhttp::field::date, "Sat, 05 Dec 2026 10:00:00 GMT");
    res.set(bhttp::field::server, "peer");
    res.set(bhttp::field::keep_alive, "timeout=60");
    res.set(bhttp::field::connection, "X-Hop");
    res.set("X-Hop", "connection-only");
    res.body() = "{\"echo\":\"" + std::string{req.body()} + "\"}";
    return res;
  }};
  client_thread client{peer_config{}};

  api_request req;
  req.verb = method::post;
  req.method_text = "POST";
  req.target = "/v1/holds?x=1";
  req.content_type = "application/json";
  req.authorization = "Bearer abc";
  req.has_idempotency_key = true;
  req.idempotency_key = "key-1";
  req.admission_token = "adm";
  req.if_none_match = "\"v6\"";
  req.remote_address = "203.0.113.9";
  req.body = "hi";
  auto r = client.forward_one(server.address(), req,
                              {{"X-Rsv-Forwarded", "node-a"}});
  ASSERT_TRUE(r) << detail(r.error());
  EXPECT_EQ(r->status, 201u);
  EXPECT_EQ(r->content_type, "application/problem+json");
  EXPECT_EQ(r->body, "{\"echo\":\"hi\"}");
  EXPECT_EQ(header(*r, "Location"), "/v1/holds/hld_1_2");
  EXPECT_EQ(header(*r, "Retry-After"), "3");
  EXPECT_EQ(header(*r, "RateLimit"), "limit=10, remaining=9, reset=60");
  EXPECT_EQ(header(*r, "RateLimit-Policy"), "10;w=60");
  EXPECT_EQ(header(*r, "Idempotent-Replayed"), "true");
  EXPECT_EQ(header(*r, "ETag"), "\"v7\"");
  EXPECT_EQ(header(*r, "Allow"), "GET, POST");
  EXPECT_EQ(header(*r, "WWW-Authenticate"), "Bearer");
  EXPECT_EQ(header(*r, "Cache-Control"), "no-store");
  for (auto hop : {"Connection", "Keep-Alive", "Transfer-Encoding",
                   "Content-Length", "Date", "Server", "X-Hop", "Content-Type"})
    EXPECT_EQ(header(*r, hop), "<absent>") << hop;

  auto got = server.received();
  ASSERT_EQ(got.size(), 1u);
  auto& sent = got[0];
  EXPECT_EQ(sent.method_string(), "POST");
  EXPECT_EQ(sent.target(), "/v1/holds?x=1");
  EXPECT_EQ(sent.body(), "hi");
  EXPECT_EQ(sent[bhttp::field::host], server.address());
  EXPECT_EQ(sent[bhttp::field::content_type], "application/json");
  EXPECT_EQ(sent[bhttp::field::authorization], "Bearer abc");
  EXPECT_EQ(sent["Idempotency-Key"], "key-1");
  EXPECT_EQ(sent["X-Admission-Token"], "adm");
  EXPECT_EQ(sent[bhttp::field::if_none_match], "\"v6\"");
  EXPECT_EQ(sent["X-Forwarded-For"], "203.0.113.9");
  EXPECT_EQ(sent["X-Rsv-Forwarded"], "node-a");
}

TEST(peer_client, leaves_out_headers_the_request_did_not_have) {
  test_server server{[](const auto&) { return ok("{}"); }};
  client_thread client{peer_config{}};
  auto r = client.forward_one(server.address(), get("/v1/events"));
  ASSERT_TRUE(r) << detail(r.error());
  auto got = server.received();
  ASSERT_EQ(got.size(), 1u);
  for (auto name : {"Idempotency-Key", "Authorization", "X-Admission-Token",
                    "If-None-Match", "X-Forwarded-For", "Content-Type"})
    EXPECT_EQ(got[0].count(name), 0u) << name;
}

TEST(peer_client, sequential_forwards_share_one_connection) {
  test_server server{
      [](const auto& req) { return ok(std::string{req.target()}); }};
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = make_peer_metrics(registry);
  client_thread client{peer_config{}, metrics};
  for (int i = 0; i < 100; ++i) {
    auto target = "/n/" + std::to_string(i);
    auto r = client.forward_one(server.address(), get(target));
    ASSERT_TRUE(r) << detail(r.error());
    ASSERT_EQ(r->body, target);
  }
  EXPECT_EQ(server.accepted.load(), 1);
  EXPECT_EQ(server.requests.load(), 100);
  EXPECT_EQ(metrics->connections_opened->Value(), 1);
  EXPECT_EQ(metrics->ok->Value(), 100);
  EXPECT_EQ(metrics->error->Value(), 0);
  EXPECT_EQ(
      client.on_thread([] { return peer_pool::current()->idle_connections(); }),
      1u);
}

TEST(peer_client, retries_once_when_the_peer_closed_an_idle_connection) {
  test_server server{[](const auto&) { return ok("fine"); },
                     behaviour::answer_then_close};
  client_thread client{peer_config{}};
  auto first = client.forward_one(server.address(), get("/a"));
  ASSERT_TRUE(first) << detail(first.error());
  // The pooled connection is closed by the peer before it is used again.
  ASSERT_TRUE(eventually([&] { return server.closed.load() == 1; }));
  auto second = client.forward_one(server.address(), get("/b"));
  ASSERT_TRUE(second) << detail(second.error());
  EXPECT_EQ(second->body, "fine");
  EXPECT_EQ(server.accepted.load(), 2);
  EXPECT_EQ(server.requests.load(), 2);
}

TEST(peer_client, refused_port_answers_unavailable_within_connect_timeout) {
  unsigned short port = 0;
  {
    // A port that was just free: nothing listens there now.
    asio::io_context io;
    tcp::acceptor probe{io, {asio::ip::make_address("127.0.0.1"), 0}};
    port = probe.local_endpoint().port();
  }
  peer_config config;
  config.connect_timeout_ms = 500;
  client_thread client{config};
  auto began = std::chrono::steady_clock::now();
  auto r = client.forward_one("127.0.0.1:" + std::to_string(port), get("/"));
  auto took = std::chrono::steady_clock::now() - began;
  ASSERT_TRUE(is_unavailable(r));
  EXPECT_NE(detail(r.error()).find("refused"), std::string::npos)
      << detail(r.error());
  EXPECT_LT(took, 1500ms);
}

TEST(peer_client, silent_peer_answers_unavailable_after_request_timeout) {
  test_server server{[](const auto&) { return ok(""); },
                     behaviour::never_answer};
  peer_config config;
  config.request_timeout_ms = 300;
  client_thread client{config};
  auto began = std::chrono::steady_clock::now();
  auto r = client.forward_one(server.address(), get("/slow"));
  auto took = std::chrono::steady_clock::now() - began;
  ASSERT_TRUE(is_unavailable(r));
  EXPECT_NE(detail(r.error()).find("timed out"), std::string::npos)
      << detail(r.error());
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 3s);
  // The timed out connection is closed, not pooled.
  EXPECT_EQ(
      client.on_thread([] { return peer_pool::current()->idle_connections(); }),
      0u);
}

TEST(peer_client, two_megabyte_bodies_go_both_ways) {
  test_server server{[](const auto& req) {
    std::string body = std::string{req.body()};
    std::reverse(body.begin(), body.end());
    return ok(std::move(body));
  }};
  client_thread client{peer_config{}};
  api_request req;
  req.verb = method::post;
  req.method_text = "POST";
  req.target = "/big";
  req.content_type = "application/octet-stream";
  req.body.resize(2 * 1024 * 1024);
  for (std::size_t i = 0; i < req.body.size(); ++i)
    req.body[i] = static_cast<char>('a' + i % 26);
  auto r = client.forward_one(server.address(), req);
  ASSERT_TRUE(r) << detail(r.error());
  std::string expected = req.body;
  std::reverse(expected.begin(), expected.end());
  ASSERT_EQ(r->body.size(), expected.size());
  EXPECT_TRUE(r->body == expected);
}

TEST(peer_client, concurrent_forwards_are_each_answered_once) {
  test_server server{
      [](const auto& req) { return ok(std::string{req.target()}); }};
  client_thread client{peer_config{}};
  constexpr std::size_t n = 50;
  auto b = client.start(server.address(), get("/same"), n);
  ASSERT_TRUE(b->wait_all(10s));
  // One more round trip through the I/O thread: no late second call.
  client.on_thread([] { return 0; });
  std::lock_guard lock{b->mutex};
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(b->calls[i], 1) << i;
    ASSERT_TRUE(*b->answers[i]) << detail(b->answers[i]->error());
    EXPECT_EQ((*b->answers[i])->body, "/same");
  }
  EXPECT_EQ(server.requests.load(), static_cast<int>(n));
  // Idle connections are kept up to the cap; later forwards reuse them.
  auto idle =
      client.on_thread([] { return peer_pool::current()->idle_connections(); });
  EXPECT_GE(idle, 1u);
  EXPECT_LE(idle, n);
  auto accepted = server.accepted.load();
  auto again = client.forward_one(server.address(), get("/again"));
  ASSERT_TRUE(again) << detail(again.error());
  EXPECT_EQ(server.accepted.load(), accepted);
}

TEST(peer_client, idle_connections_above_the_cap_are_closed) {
  test_server server{[](const auto&) { return ok("x"); }};
  peer_config config;
  config.idle_connections_per_peer_max = 2;
  client_thread client{config};
  auto b = client.start(server.address(), get("/"), 10);
  ASSERT_TRUE(b->wait_all(10s));
  EXPECT_LE(
      client.on_thread([] { return peer_pool::current()->idle_connections(); }),
      2u);
}

TEST(peer_client, names_are_resolved) {
  test_server server{[](const auto&) { return ok("by name"); }};
  client_thread client{peer_config{}};
  auto port = server.address().substr(server.address().rfind(':'));
  auto r = client.forward_one("localhost" + port, get("/"));
  ASSERT_TRUE(r) << detail(r.error());
  EXPECT_EQ(r->body, "by name");
}

TEST(peer_client, bad_addresses_answer_unavailable) {
  client_thread client{peer_config{}};
  for (auto address :
       {"nohost", "h:0", "h:70000", "::1:80", "[::1]80", ":80"}) {
    auto r = client.forward_one(address, get("/"));
    ASSERT_TRUE(is_unavailable(r)) << address;
    EXPECT_NE(detail(r.error()).find("bad address"), std::string::npos)
        << detail(r.error());
  }
}

TEST(peer_client, a_thread_without_a_pool_is_answered_at_once) {
  std::optional<result> answer;
  forward("127.0.0.1:1", get("/"), {},
          [&](result r) { answer = std::move(r); });
  ASSERT_TRUE(answer);
  EXPECT_TRUE(is_unavailable(*answer));
}

TEST(peer_client, stopping_the_thread_answers_what_is_in_flight) {
  test_server server{[](const auto&) { return ok(""); },
                     behaviour::never_answer};
  peer_config config;
  config.request_timeout_ms = 60'000;
  auto client = std::make_unique<client_thread>(config);
  auto b = client->start(server.address(), get("/"), 3);
  ASSERT_TRUE(eventually([&] { return server.requests.load() == 3; }));
  client->stop();
  ASSERT_TRUE(b->wait_all(1s));
  std::lock_guard lock{b->mutex};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(b->calls[i], 1);
    EXPECT_TRUE(is_unavailable(*b->answers[i]));
    EXPECT_NE(detail(b->answers[i]->error()).find("shutting down"),
              std::string::npos);
  }
}

} // namespace
} // namespace rsv::http
