// A Redis connection (messaging/redis_connection.hpp) and its two drivers,
// redis_client (threads of its own, blocking) and redis_pipe (an Asio
// io_context), against a real redis-server of the test: a connection is made
// again after redis-server was killed and restarted empty (its scripts
// loaded again), and a script that Redis lost (SCRIPT FLUSH) is sent again
// as EVAL, so that the caller still gets its answer.

#include "messaging/redis_client.hpp"
#include "messaging/redis_connection.hpp"
#include "messaging/redis_pipe.hpp"
#include "redis_support.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <gtest/gtest.h>
#include <thread>

namespace rsv::messaging {
namespace {

using namespace std::chrono_literals;

// Moves a counter, so that a run that happened shows in Redis.
constexpr const char* count_script =
    "return redis.call('INCRBY', KEYS[1], ARGV[1])";

/// How often Redis ran EVAL (not EVALSHA), from INFO commandstats.
int64_t eval_calls(const e2e::redis_server& redis) {
  auto stats = redis.cli({"INFO", "commandstats"});
  auto at = stats.find("cmdstat_eval:calls=");
  if (at == std::string::npos) return 0;
  return std::stoll(
      stats.substr(at + std::string{"cmdstat_eval:calls="}.size()));
}

/// Waits at most 10 s for a command's answer.
class answer_wait {
public:
  redis_callback callback() {
    return [promise = promise_](caf::expected<redis_reply> reply) {
      promise->set_value(std::move(reply));
    };
  }
  caf::expected<redis_reply> get() {
    auto future = promise_->get_future();
    if (future.wait_for(10s) != std::future_status::ready)
      throw std::runtime_error("a Redis command was not answered within 10 s");
    return future.get();
  }

private:
  std::shared_ptr<std::promise<caf::expected<redis_reply>>> promise_ =
      std::make_shared<std::promise<caf::expected<redis_reply>>>();
};

/// The counter's value after a script run, or -1 when it failed.
long long counted(caf::expected<redis_reply> reply) {
  if (!reply || reply->kind != redis_reply::type::integer) return -1;
  return reply->integer;
}

/// An io_context on a thread of its own, as an HTTP I/O thread runs one.
class io_thread {
public:
  io_thread() : thread_([this] { io_.run(); }) {}
  ~io_thread() {
    guard_.reset();
    io_.stop();
    thread_.join();
  }

  boost::asio::io_context& io() { return io_; }

  /// Runs `work` on the thread and waits for it, at most 10 s.
  void run(std::function<void()> work) {
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    boost::asio::post(io_, [&work, done] {
      work();
      done->set_value();
    });
    if (future.wait_for(10s) != std::future_status::ready)
      throw std::runtime_error("the io_context did not run the work in 10 s");
  }

private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type>
      guard_{io_.get_executor()};
  std::thread thread_;
};

class redis_connection_test : public ::testing::Test {
protected:
  redis_endpoint endpoint() const { return *parse_redis_url(redis_.url()); }

  redis_config client_config() const {
    redis_config config;
    config.endpoint = endpoint();
    config.connect_timeout_ms = 200;
    config.command_timeout_ms = 500;
    config.connections = 2;
    config.registry = registry_;
    return config;
  }

  /// The script's run on the client, answered.
  static long long run(redis_client& client, std::size_t script,
                       const std::string& key, long long by) {
    answer_wait answer;
    client.eval(script, {key}, {std::to_string(by)}, answer.callback());
    return counted(answer.get());
  }

  /// rsv_redis_commands_total{outcome}.
  double commands(const std::string& outcome) const {
    double total = 0;
    for (const auto& family : registry_->Collect())
      if (family.name == "rsv_redis_commands_total")
        for (const auto& metric : family.metric)
          for (const auto& label : metric.label)
            if (label.name == "outcome" && label.value == outcome)
              total += metric.counter.value;
    return total;
  }

  e2e::redis_server redis_;
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
};

TEST_F(redis_connection_test, a_link_runs_a_script_redis_flushed_as_eval) {
  redis_session session{endpoint(), {count_script}};
  redis_link link;
  ASSERT_TRUE(link.connect(endpoint(), 500, 1000, session)) << link.error();
  ASSERT_TRUE(session.ready());
  auto count_by = [&](long long by) {
    answer_wait answer;
    link.append(session.script(
        0, script_arguments({"rsv:test:n"}, {std::to_string(by)}),
        answer.callback()));
    while (session.waiting() > 0) {
      auto reply = link.read();
      if (!reply) return -2LL;
      auto out = session.on_reply(std::move(*reply));
      if (out.what == redis_session::outcome::kind::resend)
        link.append(*out.resend);
      else if (out.what == redis_session::outcome::kind::answer)
        out.done(std::move(out.reply));
    }
    return counted(answer.get());
  };
  EXPECT_EQ(count_by(2), 2);
  EXPECT_EQ(eval_calls(redis_), 0) << "the loaded script ran by EVALSHA";
  redis_.cli({"SCRIPT", "FLUSH"});
  EXPECT_EQ(count_by(3), 5);
  EXPECT_EQ(eval_calls(redis_), 1) << "the lost script was sent as EVAL";
  EXPECT_EQ(redis_.cli({"GET", "rsv:test:n"}), "5");
}

TEST_F(redis_connection_test, a_link_connects_again_to_a_restarted_redis) {
  redis_session session{endpoint(), {count_script}};
  redis_link link;
  ASSERT_TRUE(link.connect(endpoint(), 500, 1000, session)) << link.error();
  redis_.kill();
  EXPECT_FALSE(link.call({"PING"}).has_value());
  EXPECT_FALSE(link.error().empty());
  session.fail_all("lost");
  EXPECT_FALSE(link.connect(endpoint(), 500, 1000, session));
  EXPECT_FALSE(link.connected());
  redis_.restart();
  ASSERT_TRUE(link.connect(endpoint(), 500, 1000, session)) << link.error();
  // The new, empty Redis has the script: it was loaded on connecting.
  answer_wait answer;
  link.append(session.script(0, script_arguments({"rsv:test:n"}, {"4"}),
                             answer.callback()));
  auto reply = link.read();
  ASSERT_TRUE(reply.has_value()) << link.error();
  auto out = session.on_reply(std::move(*reply));
  ASSERT_EQ(out.what, redis_session::outcome::kind::answer);
  EXPECT_EQ(out.reply.integer, 4);
}

TEST_F(redis_connection_test,
       the_client_connects_again_after_redis_is_killed_and_restarted) {
  redis_client client{client_config()};
  auto script = client.add_script(count_script);
  client.start();
  ASSERT_TRUE(e2e::eventually(
      [&] { return client.health() == service_state::ok; }, 10s))
      << "Redis never answered";
  EXPECT_EQ(run(client, script, "rsv:test:n", 1), 1);
  auto made = client.connections();

  redis_.kill();
  // Idle connections PING: the outage shows without traffic.
  ASSERT_TRUE(e2e::eventually(
      [&] { return client.health() == service_state::down; }, 10s));
  EXPECT_EQ(run(client, script, "rsv:test:n", 1), -1)
      << "a command while Redis is down is answered unavailable";
  EXPECT_GE(commands("unavailable"), 1);

  redis_.restart();
  ASSERT_TRUE(e2e::eventually(
      [&] { return client.health() == service_state::ok; }, 10s))
      << "the client did not connect to the restarted Redis";
  EXPECT_GE(client.connections(), made + 2) << "each connection made again";
  // The restarted Redis is empty: the script works because it was loaded
  // again, without an EVAL.
  for (int i = 1; i <= 4; ++i)
    EXPECT_EQ(run(client, script, "rsv:test:n", 1), i);
  EXPECT_EQ(eval_calls(redis_), 0);
  client.stop();
}

TEST_F(redis_connection_test, the_client_sends_a_script_redis_lost_as_eval) {
  auto config = client_config();
  config.connections = 1;
  redis_client client{config};
  auto script = client.add_script(count_script);
  client.start();
  ASSERT_TRUE(e2e::eventually(
      [&] { return client.health() == service_state::ok; }, 10s));
  EXPECT_EQ(run(client, script, "rsv:test:n", 2), 2);
  redis_.cli({"SCRIPT", "FLUSH"});
  // Two runs in one pipeline both find the script gone and are sent again
  // in order; in two pipelines the first's EVAL loads it for the second.
  // Either way they run in the order given.
  answer_wait first, second;
  client.eval(script, {"rsv:test:n"}, {"3"}, first.callback());
  client.eval(script, {"rsv:test:n"}, {"5"}, second.callback());
  EXPECT_EQ(counted(first.get()), 5);
  EXPECT_EQ(counted(second.get()), 10);
  EXPECT_GE(eval_calls(redis_), 1);
  EXPECT_EQ(redis_.cli({"GET", "rsv:test:n"}), "10");
  EXPECT_EQ(commands("unavailable"), 0);
  client.stop();
}

class redis_pipe_test : public redis_connection_test {
protected:
  void SetUp() override {
    redis_pipe_config config;
    config.endpoint = endpoint();
    config.connect_timeout_ms = 200;
    config.command_timeout_ms = 500;
    config.scripts = {count_script};
    io_.run([&] {
      pipe_ = std::make_unique<redis_pipe>(io_.io(), config);
      pipe_->start();
    });
    up_ = pipe_->up();
  }

  void TearDown() override {
    io_.run([&] {
      pipe_->stop();
      pipe_.reset();
    });
  }

  /// The script's run on the pipe, from the io_context's thread, answered.
  long long run(long long by) {
    answer_wait answer;
    io_.run([&] {
      pipe_->eval(0, {"rsv:test:n"}, {std::to_string(by)}, answer.callback());
    });
    return counted(answer.get());
  }

  bool up() const { return up_->load(std::memory_order_acquire); }

  io_thread io_;
  std::unique_ptr<redis_pipe> pipe_;
  std::shared_ptr<const std::atomic<bool>> up_;
};

TEST_F(redis_pipe_test,
       the_pipe_connects_again_after_redis_is_killed_and_restarted) {
  // A command given while the first connection is being made waits for it.
  EXPECT_EQ(run(1), 1);
  EXPECT_TRUE(up());
  redis_.kill();
  // A read is always pending: the loss shows at once.
  ASSERT_TRUE(e2e::eventually([&] { return !up(); }, 10s));
  EXPECT_EQ(run(1), -1) << "refused at once while Redis is down";
  redis_.restart();
  ASSERT_TRUE(e2e::eventually([&] { return up(); }, 10s))
      << "the pipe did not connect to the restarted Redis";
  EXPECT_EQ(run(1), 1) << "the restarted Redis is empty";
  EXPECT_EQ(eval_calls(redis_), 0) << "the script was loaded again";
}

TEST_F(redis_pipe_test, the_pipe_sends_a_script_redis_lost_as_eval) {
  EXPECT_EQ(run(2), 2);
  redis_.cli({"SCRIPT", "FLUSH"});
  EXPECT_EQ(run(3), 5);
  EXPECT_EQ(eval_calls(redis_), 1);
  EXPECT_EQ(run(1), 6) << "EVAL loaded it again: EVALSHA works";
  EXPECT_EQ(eval_calls(redis_), 1);
}

} // namespace
} // namespace rsv::messaging
