#include "messaging/redis_client.hpp"

#include "core/assert.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>
#include <thread>

namespace rsv::messaging {

namespace {

/// One command on its way: `script` names a script to run by EVALSHA
/// (args then start with numkeys), otherwise `args` is the whole command.
struct queued_command {
  std::size_t script = no_script;
  std::vector<std::string> args;
  redis_callback done;
  static constexpr std::size_t no_script = static_cast<std::size_t>(-1);
};

} // namespace

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

/// One connection with its thread and queue (see redis_client): a
/// redis_link driven by a redis_session, made again with a redis_backoff.
struct client_connection {
  client_connection(redis_config cfg, const redis_metrics& m,
                    std::vector<std::string> script_sources,
                    std::shared_ptr<std::atomic<uint64_t>> outage_count)
      : config(std::move(cfg)), metrics(m), outages(std::move(outage_count)),
        session(config.endpoint, std::move(script_sources)) {}

  void fail(queued_command& command, const char* why) {
    if (!command.done) return; // answered already
    if (metrics.commands_failed) metrics.commands_failed->Increment();
    command.done(redis_unavailable(why));
  }

  /// The session answered `count` commands unavailable.
  void count_failed(std::size_t count) {
    if (metrics.commands_failed && count > 0)
      metrics.commands_failed->Increment(static_cast<double>(count));
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

  void set_connected(bool value) {
    bool was = connected.exchange(value, std::memory_order_acq_rel);
    if (metrics.up && was != value) {
      if (value)
        metrics.up->Increment();
      else
        metrics.up->Decrement();
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

  /// Waits `delay`, or less when the client stops.
  void wait(std::chrono::milliseconds delay) {
    std::unique_lock lock{mutex};
    wake.wait_for(lock, delay, [this] { return stopping; });
  }

  /// Writes a batch as one pipeline and answers it as the replies come (a
  /// script Redis lost is sent again as EVAL meanwhile); false when the
  /// connection broke (what has no reply then is answered unavailable).
  bool send_batch(std::vector<queued_command>& batch) {
    for (auto& command : batch)
      link.append(command.script == queued_command::no_script
                      ? session.command(std::move(command.args),
                                        std::move(command.done))
                      : session.script(command.script, std::move(command.args),
                                       std::move(command.done)));
    batch.clear();
    if (metrics.batches) metrics.batches->Increment();
    while (session.waiting() > 0) {
      auto reply = link.read();
      if (!reply) {
        count_failed(session.fail_all("the Redis connection broke"));
        return false;
      }
      auto out = session.on_reply(std::move(*reply));
      if (out.what == redis_session::outcome::kind::resend) {
        link.append(*out.resend);
        continue;
      }
      // Connected, the session waits only for callers' commands.
      RSV_ASSERT(out.what == redis_session::outcome::kind::answer,
                 "a Redis reply for no command of the batch");
      if (metrics.commands_ok) metrics.commands_ok->Increment();
      out.done(std::move(out.reply));
    }
    return true;
  }

  /// The thread: its loop, restarted should it throw (core/supervised.hpp).
  /// The connection's state is unknown then, so it is dropped, and every
  /// command not answered yet is answered unavailable.
  void run() {
    run_supervised(
        [this] { loop(); },
        [this](const char* what) {
          spdlog::error("redis: the connection thread died: {}; it restarts",
                        what);
          outages->fetch_add(1, std::memory_order_acq_rel);
          set_connected(false);
          link.close();
          for (auto& command : in_flight)
            fail(command, "the Redis connection restarted");
          in_flight.clear();
          count_failed(session.fail_all("the Redis connection restarted"));
          fail_queued("the Redis connection restarted");
        },
        [this](std::chrono::milliseconds delay) { wait(delay); },
        metrics.restarts);
  }

  void loop() {
    // A restarted loop starts as the first did.
    backoff.reset();
    was_up = false;
    warned_down = false;
    while (true) {
      {
        std::lock_guard lock{mutex};
        if (stopping) break;
      }
      crash_if_due(config.crashes.get(), metrics.crashes_injected,
                   "Redis connection");
      if (!link.connected() && !reconnect()) continue;
      if (!take_batch(in_flight)) break;
      if (!serve(in_flight)) lost();
    }
    set_connected(false);
    link.close();
    fail_queued("the node is stopping");
  }

  /// Connects; when that fails, fails what waits and waits out the backoff.
  bool reconnect() {
    if (link.connect(config.endpoint, config.connect_timeout_ms,
                     config.command_timeout_ms, session)) {
      backoff.reset();
      if (metrics.connects) metrics.connects->Increment();
      connection_count.fetch_add(1, std::memory_order_relaxed);
      verified.store(outages->load(std::memory_order_acquire),
                     std::memory_order_release);
      set_connected(true);
      warned_down = false;
      spdlog::info("redis: connected to {}:{}", config.endpoint.host,
                   config.endpoint.port);
      was_up = true;
      return true;
    }
    // Once per outage, not once per attempt.
    if (was_up || !warned_down)
      spdlog::warn("redis: cannot connect to {}:{}: {} (retrying)",
                   config.endpoint.host, config.endpoint.port, link.error());
    was_up = false;
    warned_down = true;
    fail_queued("Redis is unreachable");
    wait(backoff.next());
    return false;
  }

  /// Waits for commands, at most limits::redis_idle_ping_ms, and takes up to
  /// a batch of them into `batch` (none when idle); false when stopping.
  bool take_batch(std::vector<queued_command>& batch) {
    batch.clear();
    std::unique_lock lock{mutex};
    bool woke = wake.wait_for(
        lock, std::chrono::milliseconds(limits::redis_idle_ping_ms),
        [this] { return stopping || !queue.empty(); });
    if (stopping) return false;
    if (!woke) return true;
    auto n = std::min(queue.size(), limits::redis_batch_max);
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    return true;
  }

  /// Sends `batch`, after a PING when idle or possibly stale; false when the
  /// connection broke.
  bool serve(std::vector<queued_command>& batch) {
    auto outages_now = outages->load(std::memory_order_acquire);
    bool unverified = verified.load(std::memory_order_acquire) < outages_now;
    if (batch.empty() || unverified) {
      // Idle, or another connection lost Redis since this one last heard
      // from it (Redis may have restarted while this one slept, leaving
      // it a dead socket): a PING shows whether Redis is still there
      // before anything is sent.
      if (!link.call({"PING"})) {
        // Nothing of the batch was sent: it goes out on the next
        // connection, or fails if there is none.
        std::lock_guard lock{mutex};
        for (auto it = batch.rbegin(); it != batch.rend(); ++it)
          queue.push_front(std::move(*it));
        batch.clear();
        return false;
      }
      verified.store(outages_now, std::memory_order_release);
    }
    return batch.empty() || send_batch(batch);
  }

  /// The connection broke: every connection checks Redis again before it
  /// sends (`verified`), and this one connects again.
  void lost() {
    outages->fetch_add(1, std::memory_order_acq_rel);
    spdlog::warn("redis: connection to {}:{} lost: {}", config.endpoint.host,
                 config.endpoint.port, link.error());
    set_connected(false);
    link.close();
    // What waits is tried once more on the next connection (reconnect()
    // fails it when there is none).
  }

  redis_config config;
  redis_metrics metrics; // pointers into the client's registry

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
  redis_session session;
  redis_link link;
  redis_backoff backoff;
  std::vector<queued_command> in_flight; // taken, not yet sent
  bool was_up = false;                   // for the outage's one warning
  bool warned_down = false;
};

struct redis_client::impl {
  explicit impl(redis_config cfg)
      : config(std::move(cfg)), metrics(config.registry) {
    if (config.queue_max == 0) config.queue_max = limits::redis_queue_max;
    if (config.connections == 0) config.connections = limits::redis_connections;
  }

  /// To the shard's connection, or the next in turn.
  void enqueue(queued_command command, uint64_t shard) {
    auto n = connections.size();
    if (n == 0) {
      command.done(redis_unavailable("Redis is not started"));
      return;
    }
    auto i = shard == redis_client::any_connection
                 ? next.fetch_add(1, std::memory_order_relaxed) % n
                 : shard % n;
    connections[i]->enqueue(std::move(command));
  }

  redis_config config;
  redis_metrics metrics;
  std::vector<std::string> scripts;                            // before start
  std::vector<std::shared_ptr<client_connection>> connections; // from start
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
    auto c = std::make_shared<client_connection>(
        per_connection, impl_->metrics, impl_->scripts, impl_->outages);
    c->thread = std::thread([c] { c->run(); });
    impl_->connections.push_back(std::move(c));
  }
}

void redis_client::stop() {
  for (auto& c : impl_->connections)
    stop_worker(c->mutex, c->wake, c->stopping, c->thread);
}

void redis_client::submit(std::vector<std::string> command, redis_callback done,
                          uint64_t shard) {
  impl_->enqueue(
      {queued_command::no_script, std::move(command), std::move(done)}, shard);
}

void redis_client::eval(std::size_t script, std::vector<std::string> keys,
                        std::vector<std::string> args, redis_callback done,
                        uint64_t shard) {
  impl_->enqueue({script, script_arguments(std::move(keys), std::move(args)),
                  std::move(done)},
                 shard);
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

} // namespace rsv::messaging
