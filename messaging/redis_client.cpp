#include "messaging/redis_client.hpp"

#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "messaging/hiredis_support.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>
#include <thread>

namespace rsv {

namespace {

caf::error bad_url(const std::string& why) {
  return make_error(errc::validation_failed, "--redis-url: " + why);
}

/// Undoes %XX escapes (a password may contain '@' or ':').
std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int value = 0;
      auto [end, ec] =
          std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
      if (ec == std::errc{} && end == text.data() + i + 3) {
        out += static_cast<char>(value);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

timeval to_timeval(int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

/// One command on its way: `script` names a script to run by EVALSHA
/// (args then start with numkeys), otherwise `args` is the whole command.
struct queued_command {
  std::size_t script = no_script;
  std::vector<std::string> args;
  redis_callback done;
  static constexpr std::size_t no_script = static_cast<std::size_t>(-1);
};

} // namespace

redis_reply copy_reply(const redisReply* reply) {
  redis_reply out;
  switch (reply->type) {
  case REDIS_REPLY_INTEGER:
    out.kind = redis_reply::type::integer;
    out.integer = reply->integer;
    break;
  case REDIS_REPLY_STRING:
    out.kind = redis_reply::type::string;
    out.text.assign(reply->str, reply->len);
    break;
  case REDIS_REPLY_STATUS:
    out.kind = redis_reply::type::status;
    out.text.assign(reply->str, reply->len);
    break;
  case REDIS_REPLY_ERROR:
    out.kind = redis_reply::type::error;
    out.text.assign(reply->str, reply->len);
    break;
  case REDIS_REPLY_ARRAY:
    out.kind = redis_reply::type::array;
    out.elements.reserve(reply->elements);
    for (std::size_t i = 0; i < reply->elements; ++i)
      out.elements.push_back(copy_reply(reply->element[i]));
    break;
  default:
    out.kind = redis_reply::type::nil;
  }
  return out;
}

std::vector<std::vector<std::string>>
session_commands(const redis_endpoint& endpoint) {
  std::vector<std::vector<std::string>> out;
  if (!endpoint.password.empty()) {
    if (endpoint.user.empty())
      out.push_back({"AUTH", endpoint.password});
    else
      out.push_back({"AUTH", endpoint.user, endpoint.password});
  }
  if (endpoint.db != 0) out.push_back({"SELECT", std::to_string(endpoint.db)});
  return out;
}

caf::expected<redis_endpoint> parse_redis_url(const std::string& url) {
  constexpr std::string_view scheme = "redis://";
  if (url.rfind("rediss://", 0) == 0)
    return bad_url("rediss:// (TLS) is not supported by this build's hiredis "
                   "0.14; see docs/operations.md, \"Redis\"");
  if (url.rfind(scheme, 0) != 0)
    return bad_url("expected redis://[[user]:password@]host[:port][/db]");
  std::string_view rest{url};
  rest.remove_prefix(scheme.size());
  redis_endpoint out;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    auto credentials = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    auto colon = credentials.find(':');
    if (colon == std::string_view::npos) {
      out.password = percent_decode(credentials);
    } else {
      out.user = percent_decode(credentials.substr(0, colon));
      out.password = percent_decode(credentials.substr(colon + 1));
    }
  }
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    auto db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto [end, ec] =
          std::from_chars(db.data(), db.data() + db.size(), out.db);
      if (ec != std::errc{} || end != db.data() + db.size() || out.db < 0)
        return bad_url("the database after '/' must be a number");
    }
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad_url("unclosed '['");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad_url("expected ':' after ']'");
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':');
             colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad_url("no host");
  out.host = std::string{host};
  if (!port.empty()) {
    auto [end, ec] =
        std::from_chars(port.data(), port.data() + port.size(), out.port);
    if (ec != std::errc{} || end != port.data() + port.size() || out.port < 1 ||
        out.port > 65535)
      return bad_url("the port must be 1..65535");
  }
  return out;
}

/// The client's metrics, shared by its connections.
struct redis_metrics {
  explicit redis_metrics(const std::shared_ptr<prometheus::Registry>& r) {
    if (!r) return;
    auto& registry = *r;
    up = &prometheus::BuildGauge()
              .Name("rsv_redis_up")
              .Help("The node's connections to Redis that are up")
              .Register(registry)
              .Add({});
    connects = &prometheus::BuildCounter()
                    .Name("rsv_redis_connections_total")
                    .Help("Connections made to Redis (reconnections included)")
                    .Register(registry)
                    .Add({});
    auto& commands = prometheus::BuildCounter()
                         .Name("rsv_redis_commands_total")
                         .Help("Commands sent to Redis, by outcome: ok "
                               "(a reply, even an error reply) or "
                               "unavailable (not sent or no reply)")
                         .Register(registry);
    commands_ok = &commands.Add({{"outcome", "ok"}});
    commands_failed = &commands.Add({{"outcome", "unavailable"}});
    batches = &prometheus::BuildCounter()
                   .Name("rsv_redis_pipelines_total")
                   .Help("Pipelines written to Redis: commands per pipeline "
                         "is rsv_redis_commands_total over this")
                   .Register(registry)
                   .Add({});
    restarts = &actor_restarts(registry, "redis_connection");
    crashes_injected = &chaos_faults(registry, "redis_connection_crash");
  }
  prometheus::Counter* restarts = nullptr;
  prometheus::Counter* crashes_injected = nullptr;
  prometheus::Gauge* up = nullptr;
  prometheus::Counter* connects = nullptr;
  prometheus::Counter* commands_ok = nullptr;
  prometheus::Counter* commands_failed = nullptr;
  prometheus::Counter* batches = nullptr;
};

/// One connection with its thread and queue (see redis_client).
struct redis_connection {
  redis_connection(redis_config cfg, const redis_metrics& m,
                   std::vector<std::string> script_sources,
                   std::shared_ptr<std::atomic<uint64_t>> outage_count)
      : config(std::move(cfg)), scripts(std::move(script_sources)),
        shas(scripts.size()), up(m.up), connects(m.connects),
        commands_ok(m.commands_ok), commands_failed(m.commands_failed),
        batches(m.batches), restarts(m.restarts),
        crashes_injected(m.crashes_injected), outages(std::move(outage_count)) {
  }

  void fail(queued_command& command, const char* why) {
    if (!command.done) return; // answered already
    if (commands_failed) commands_failed->Increment();
    command.done(make_error(errc::unavailable, std::string{why}));
  }

  void enqueue(queued_command command) {
    if (!connected.load(std::memory_order_acquire)) {
      fail(command, "Redis is unreachable");
      return;
    }
    {
      std::lock_guard lock{mutex};
      if (!stopping && queue.size() < config.queue_max) {
        queue.push_back(std::move(command));
        wake.notify_one();
        return;
      }
    }
    fail(command, "the Redis queue is full");
  }

  /// Runs on the client thread: connects, authenticates, loads the scripts.
  bool connect() {
    const auto& ep = config.endpoint;
    auto tv = to_timeval(config.connect_timeout_ms);
    redisContext* c = redisConnectWithTimeout(ep.host.c_str(), ep.port, tv);
    if (!c || c->err) {
      if (c) {
        last_error = c->errstr;
        redisFree(c);
      } else {
        last_error = "out of memory";
      }
      return false;
    }
    auto command_tv = to_timeval(config.command_timeout_ms);
    redisSetTimeout(c, command_tv);
    redisEnableKeepAlive(c);
    context = c;
    auto simple = [this](std::vector<std::string> args) -> bool {
      auto reply = run_now(args);
      if (!reply) return false;
      if (reply->kind == redis_reply::type::error) {
        last_error = reply->text;
        return false;
      }
      return true;
    };
    bool ok = true;
    for (auto& command : session_commands(ep))
      if (ok) ok = simple(std::move(command));
    for (std::size_t i = 0; ok && i < scripts.size(); ++i) {
      auto reply = run_now({"SCRIPT", "LOAD", scripts[i]});
      ok = reply && reply->kind == redis_reply::type::string;
      if (ok)
        shas[i] = reply->text;
      else if (reply)
        last_error = reply->text;
    }
    if (!ok) {
      disconnect();
      return false;
    }
    return true;
  }

  void disconnect() {
    if (context) redisFree(context);
    context = nullptr;
  }

  /// One command, written and answered at once (client thread only).
  std::optional<redis_reply> run_now(const std::vector<std::string>& args) {
    append(args);
    return read_one();
  }

  void append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(args.size());
    lengths.reserve(args.size());
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    redisAppendCommandArgv(context, static_cast<int>(argv.size()), argv.data(),
                           lengths.data());
  }

  std::optional<redis_reply> read_one() {
    void* raw = nullptr;
    if (redisGetReply(context, &raw) != REDIS_OK || raw == nullptr) {
      last_error = context->errstr[0] ? context->errstr : "no reply";
      return std::nullopt;
    }
    auto reply = copy_reply(static_cast<redisReply*>(raw));
    freeReplyObject(raw);
    return reply;
  }

  std::vector<std::string> command_of(const queued_command& command) const {
    if (command.script == queued_command::no_script) return command.args;
    std::vector<std::string> args;
    args.reserve(command.args.size() + 2);
    args.emplace_back("EVALSHA");
    args.push_back(shas[command.script]);
    args.insert(args.end(), command.args.begin(), command.args.end());
    return args;
  }

  void set_connected(bool value) {
    bool was = connected.exchange(value, std::memory_order_acq_rel);
    if (up && was != value) {
      if (value)
        up->Increment();
      else
        up->Decrement();
    }
  }

  void fail_queued(const char* why) {
    std::deque<queued_command> failed;
    {
      std::lock_guard lock{mutex};
      failed.swap(queue);
    }
    for (auto& command : failed)
      fail(command, why);
  }

  /// Sends a batch as one pipeline; false when the connection broke (the
  /// commands without a reply are answered unavailable).
  bool send_batch(std::vector<queued_command>& batch) {
    for (const auto& command : batch)
      append(command_of(command));
    if (batches) batches->Increment();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto reply = read_one();
      if (!reply) {
        for (std::size_t j = i; j < batch.size(); ++j)
          fail(batch[j], "the Redis connection broke");
        return false;
      }
      auto& command = batch[i];
      if (reply->kind == redis_reply::type::error &&
          command.script != queued_command::no_script &&
          reply->text.rfind("NOSCRIPT", 0) == 0) {
        // Redis lost its scripts (SCRIPT FLUSH): the rest of the pipeline
        // is still unread, so send the source once the batch is read.
        retry.push_back(std::move(command));
        command.done = nullptr;
        continue;
      }
      if (commands_ok) commands_ok->Increment();
      answer(command, std::move(*reply));
    }
    return true;
  }

  /// Answers `command` once: a supervisor's restart fails only the commands
  /// not answered yet.
  static void answer(queued_command& command, redis_reply reply) {
    auto done = std::move(command.done);
    command.done = nullptr;
    done(std::move(reply));
  }

  bool resend_with_source() {
    auto again = std::move(retry);
    retry.clear();
    for (std::size_t i = 0; i < again.size(); ++i) {
      auto& command = again[i];
      std::vector<std::string> args{"EVAL", scripts[command.script]};
      args.insert(args.end(), command.args.begin(), command.args.end());
      auto reply = run_now(args);
      if (!reply) {
        for (std::size_t j = i; j < again.size(); ++j)
          fail(again[j], "the Redis connection broke");
        return false;
      }
      if (commands_ok) commands_ok->Increment();
      answer(command, std::move(*reply));
    }
    return true;
  }

  /// The thread: its loop, restarted should it throw (core/supervised.hpp).
  /// The connection's state is unknown then, so it is dropped, and every
  /// command not answered yet is answered unavailable.
  void run() {
    run_supervised([this] { loop(); },
                   [this](const char* what) {
                     spdlog::error(
                         "redis: the connection thread died: {}; it restarts",
                         what);
                     outages->fetch_add(1, std::memory_order_acq_rel);
                     set_connected(false);
                     disconnect();
                     for (auto& command : in_flight)
                       fail(command, "the Redis connection restarted");
                     in_flight.clear();
                     for (auto& command : retry)
                       fail(command, "the Redis connection restarted");
                     retry.clear();
                     fail_queued("the Redis connection restarted");
                   },
                   [this](std::chrono::milliseconds delay) {
                     std::unique_lock lock{mutex};
                     wake.wait_for(lock, delay, [this] { return stopping; });
                   },
                   restarts);
  }

  void loop() {
    auto backoff = std::chrono::milliseconds{50};
    bool was_up = false;
    bool warned_down = false;
    while (true) {
      {
        std::lock_guard lock{mutex};
        if (stopping) break;
      }
      crash_if_due(config.crashes.get(), crashes_injected, "Redis connection");
      if (!context) {
        if (connect()) {
          backoff = std::chrono::milliseconds{50};
          if (connects) connects->Increment();
          connection_count.fetch_add(1, std::memory_order_relaxed);
          verified.store(outages->load(std::memory_order_acquire),
                         std::memory_order_release);
          set_connected(true);
          warned_down = false;
          spdlog::info("redis: connected to {}:{}", config.endpoint.host,
                       config.endpoint.port);
          was_up = true;
        } else {
          // Once per outage, not once per attempt.
          if (was_up || !warned_down)
            spdlog::warn("redis: cannot connect to {}:{}: {} (retrying)",
                         config.endpoint.host, config.endpoint.port,
                         last_error);
          was_up = false;
          warned_down = true;
          fail_queued("Redis is unreachable");
          std::unique_lock lock{mutex};
          wake.wait_for(lock, backoff, [this] { return stopping; });
          backoff = std::min(backoff * 2, std::chrono::milliseconds{1000});
          continue;
        }
      }
      auto& batch = in_flight;
      batch.clear();
      {
        std::unique_lock lock{mutex};
        bool woke = wake.wait_for(lock, std::chrono::seconds(1), [this] {
          return stopping || !queue.empty();
        });
        if (stopping) break;
        if (woke) {
          auto n = std::min(queue.size(), limits::redis_batch_max);
          batch.reserve(n);
          for (std::size_t i = 0; i < n; ++i) {
            batch.push_back(std::move(queue.front()));
            queue.pop_front();
          }
        }
      }
      bool ok = true;
      auto outages_now = outages->load(std::memory_order_acquire);
      bool unverified = verified.load(std::memory_order_acquire) < outages_now;
      if (batch.empty() || unverified) {
        // Idle, or another connection lost Redis since this one last heard
        // from it (Redis may have restarted while this one slept, leaving
        // it a dead socket): a PING shows whether Redis is still there
        // before anything is sent.
        auto reply = run_now({"PING"});
        ok = reply.has_value();
        if (ok) verified.store(outages_now, std::memory_order_release);
      }
      if (!ok && !batch.empty()) {
        // Nothing of the batch was sent: it goes out on the next
        // connection, or fails if there is none.
        std::lock_guard lock{mutex};
        for (auto it = batch.rbegin(); it != batch.rend(); ++it)
          queue.push_front(std::move(*it));
        batch.clear();
      }
      if (ok && !batch.empty()) ok = send_batch(batch) && resend_with_source();
      if (!ok) {
        outages->fetch_add(1, std::memory_order_acq_rel);
        spdlog::warn("redis: connection to {}:{} lost: {}",
                     config.endpoint.host, config.endpoint.port, last_error);
        set_connected(false);
        disconnect();
        for (auto& command : retry)
          fail(command, "the Redis connection broke");
        retry.clear();
        // What waits is tried once more on the next connection (connect()
        // fails it when there is none).
      }
    }
    set_connected(false);
    disconnect();
    fail_queued("the node is stopping");
  }

  redis_config config;
  std::vector<std::string> scripts;
  std::vector<std::string> shas; // client thread only, after start

  prometheus::Gauge* up = nullptr;
  prometheus::Counter* connects = nullptr;
  prometheus::Counter* commands_ok = nullptr;
  prometheus::Counter* commands_failed = nullptr;
  prometheus::Counter* batches = nullptr;
  prometheus::Counter* restarts = nullptr;
  prometheus::Counter* crashes_injected = nullptr;

  // Connection losses over all of the client's connections, and the count
  // this connection last proved itself alive at.
  std::shared_ptr<std::atomic<uint64_t>> outages;
  std::atomic<uint64_t> verified{0};
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> connection_count{0};
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<queued_command> queue; // guarded by mutex
  bool stopping = false;            // guarded by mutex
  std::thread thread;

  // Client thread only.
  redisContext* context = nullptr;
  std::vector<queued_command> in_flight; // the batch being sent
  std::vector<queued_command> retry;
  std::string last_error;
};

struct redis_client::impl {
  explicit impl(redis_config cfg)
      : config(std::move(cfg)), metrics(config.registry) {
    if (config.queue_max == 0) config.queue_max = limits::redis_queue_max;
    if (config.connections == 0) config.connections = limits::redis_connections;
  }

  redis_connection& pick(uint64_t shard) {
    auto n = connections.size();
    auto i = shard == redis_client::any_connection
                 ? next.fetch_add(1, std::memory_order_relaxed) % n
                 : shard % n;
    return *connections[i];
  }

  redis_config config;
  redis_metrics metrics;
  std::vector<std::string> scripts;                           // before start
  std::vector<std::shared_ptr<redis_connection>> connections; // from start
  std::atomic<uint64_t> next{0};
  std::shared_ptr<std::atomic<uint64_t>> outages =
      std::make_shared<std::atomic<uint64_t>>(0);
};

redis_client::redis_client(redis_config config)
    : impl_(std::make_shared<impl>(std::move(config))) {}

redis_client::~redis_client() {
  stop();
}

std::size_t redis_client::add_script(std::string source) {
  RSV_ASSERT(impl_->connections.empty(), "scripts are added before start");
  impl_->scripts.push_back(std::move(source));
  return impl_->scripts.size() - 1;
}

void redis_client::start() {
  if (!impl_->connections.empty()) return;
  auto per_connection = impl_->config;
  per_connection.queue_max = std::max<std::size_t>(
      1, impl_->config.queue_max / impl_->config.connections);
  for (std::size_t i = 0; i < impl_->config.connections; ++i) {
    auto c = std::make_shared<redis_connection>(per_connection, impl_->metrics,
                                                impl_->scripts, impl_->outages);
    c->thread = std::thread([c] { c->run(); });
    impl_->connections.push_back(std::move(c));
  }
}

void redis_client::stop() {
  for (auto& c : impl_->connections) {
    {
      std::lock_guard lock{c->mutex};
      c->stopping = true;
      c->wake.notify_all();
    }
    if (c->thread.joinable()) c->thread.join();
  }
}

void redis_client::submit(std::vector<std::string> command, redis_callback done,
                          uint64_t shard) {
  queued_command queued{queued_command::no_script, std::move(command),
                        std::move(done)};
  if (impl_->connections.empty()) {
    queued.done(
        make_error(errc::unavailable, std::string{"Redis is not started"}));
    return;
  }
  impl_->pick(shard).enqueue(std::move(queued));
}

void redis_client::eval(std::size_t script, std::vector<std::string> keys,
                        std::vector<std::string> args, redis_callback done,
                        uint64_t shard) {
  std::vector<std::string> all;
  all.reserve(keys.size() + args.size() + 1);
  all.push_back(std::to_string(keys.size()));
  for (auto& k : keys)
    all.push_back(std::move(k));
  for (auto& a : args)
    all.push_back(std::move(a));
  queued_command queued{script, std::move(all), std::move(done)};
  if (impl_->connections.empty()) {
    queued.done(
        make_error(errc::unavailable, std::string{"Redis is not started"}));
    return;
  }
  impl_->pick(shard).enqueue(std::move(queued));
}

service_state redis_client::health() const {
  if (impl_->connections.empty()) return service_state::down;
  auto outages = impl_->outages->load(std::memory_order_acquire);
  for (const auto& c : impl_->connections)
    if (!c->connected.load(std::memory_order_acquire) ||
        c->verified.load(std::memory_order_acquire) < outages)
      return service_state::down;
  return service_state::ok;
}

const redis_config& redis_client::config() const {
  return impl_->config;
}

uint64_t redis_client::connections() const {
  uint64_t total = 0;
  for (const auto& c : impl_->connections)
    total += c->connection_count.load(std::memory_order_relaxed);
  return total;
}

} // namespace rsv
