// Graceful shutdown, end to end: SIGTERM to the real binary under load, on
// the PostgreSQL of scripts/test, relaying to the project's Kafka broker.
// What a client must see: /ready answers 503 at once, requests already
// accepted are answered (no reset, no 503), new connections are refused
// once the listener closes, and the process exits 0 within its deadline
// with every acknowledged change in PostgreSQL and every committed change
// in Kafka. Past the deadline it exits 1 and says what was left. Each test
// runs with both batch encodings (with the journal, its rows are the
// outbox).

#include "harness.hpp"
#include "kafka_support.hpp"
#include "load.hpp"

#include <csignal>
#include <iostream>

namespace rsv::e2e {
namespace {

using clock_type = std::chrono::steady_clock;

const std::string topic = "reservation-events";

json shutdown_event() {
  auto body = event_json(
      "shutdown",
      {section_json("floor", 5000, {{"A", 30}, {"B", 30}, {"C", 30}}),
       section_json("left", 3000, {{"A", 20}, {"B", 20}}),
       section_json("right", 3000, {{"A", 20}, {"B", 20}})});
  // No hold expires while the test runs: every status comes from a client.
  body["hold_ttl_seconds"] = 600;
  return body;
}

/// A new connection's answer to GET /ready; 0 when no connection was made
/// (refused) or nothing came back.
unsigned ready_status(unsigned short port) {
  try {
    http_connection probe{port, 2s};
    return probe.get("/ready").status;
  } catch (const std::exception&) {
    return 0;
  }
}

/// Whether a new connection is refused (not merely slow or reset).
bool connection_refused(unsigned short port) {
  try {
    http_connection probe{port, 2s};
    return false;
  } catch (const std::exception& e) {
    return std::string_view{e.what()}.find("refused") != std::string_view::npos;
  }
}

class shutdown_test : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override { broker_ = std::make_unique<kafka_broker>(); }

  void TearDown() override {
    if (node_) {
      EXPECT_EQ(node_->stop(), 0) << "no exit 0 on SIGTERM";
    }
    if (HasFailure()) {
      for (const auto& log : logs_)
        std::cerr << "---- server log ----\n" << log;
      if (node_) std::cerr << "---- server log ----\n" << node_->log();
      std::cerr << "---- broker log ----\n" << broker_->log() << "----\n";
    }
  }

  std::vector<std::string> server_args(std::vector<std::string> more) const {
    auto args = database_.server_args();
    args.insert(args.end(),
                {"--kafka-brokers", broker_->bootstrap(), "--node-id",
                 "shutdown-test", "--pg-batch-encoding", GetParam()});
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }

  /// Sends SIGTERM only once (server_process::stop sends another, which a
  /// draining node ignores) and waits for the exit; answers the exit code
  /// and how long the node took.
  std::pair<int, std::chrono::milliseconds> terminate_and_wait() {
    auto stopped = node_->stop(30s);
    logs_.push_back(node_->log());
    node_.reset();
    return {stopped, std::chrono::duration_cast<std::chrono::milliseconds>(
                         clock_type::now() - signalled_)};
  }

  void signal() {
    signalled_ = clock_type::now();
    ASSERT_EQ(::kill(node_->pid(), SIGTERM), 0);
  }

  scratch_database database_;
  std::unique_ptr<kafka_broker> broker_;
  std::unique_ptr<server_process> node_;
  std::vector<std::string> logs_;
  clock_type::time_point signalled_{};
};

TEST_P(shutdown_test, sigterm_under_load_answers_commits_relays_exits_0) {
  // A drain delay of 1 s: long enough to see /ready fail while the node
  // still serves.
  node_ = std::make_unique<server_process>(server_args(
      {"--shutdown-timeout-seconds", "10", "--shutdown-delay-ms", "1000"}));
  auto port = node_->port();
  load_config config;
  {
    http_connection http{port};
    create_event(http, node_->admin_token(), shutdown_event());
    config.event_id = "shutdown";
    for (const auto* section : {"floor", "left", "right"})
      config.sections[section] = get_seat_map(http, "shutdown", section).order;
    for (int i = 0; i < 8; ++i)
      config.customers.push_back(new_customer(http, "shutdown"));
  }
  config.what = load_config::plan::mixed;
  config.requests_max = 2000; // far more than fit before the signal
  config.duration_max = 25s;

  load_generator load(port, config);
  load.start();
  ASSERT_TRUE(load.wait_for(
      [](const load_progress& p) { return p.acknowledged >= 100; }, 20s))
      << "no load before the signal";
  signal();
  auto at_signal = load.progress();

  // While the node drains it still serves, but no longer says it is ready.
  unsigned ready = 0;
  EXPECT_TRUE(eventually(
      [&] {
        ready = ready_status(port);
        return ready == 503;
      },
      900ms, 10ms))
      << "/ready did not answer 503 during the drain delay (last: " << ready
      << ")";
  // After the delay the listener closes: new connections are refused.
  EXPECT_TRUE(eventually([&] { return connection_refused(port); }, 5s))
      << "new connections were still accepted after the drain delay";

  auto [code, took] = terminate_and_wait();
  EXPECT_EQ(code, 0) << "the drained node did not exit 0";
  EXPECT_LT(took, 10s) << "the node took longer than its shutdown deadline";
  load.join();
  auto ops = load.operations();
  std::cout << "[   info   ] " << at_signal.acknowledged
            << " acknowledged at the signal; " << summary(ops) << "; exit "
            << code << " after " << took.count() << " ms\n";

  // Accepted means answered: a request either got its answer (never a 5xx:
  // the store and the actors were working all along) or could not connect.
  int after_signal = 0;
  int refused = 0;
  for (const auto& op : ops) {
    if (op.status == 0) {
      EXPECT_NE(op.error.find("refused"), std::string::npos)
          << "a request failed other than by a refused connection: "
          << op.describe();
      ++refused;
      continue;
    }
    EXPECT_LT(op.status, 500u) << op.describe();
    after_signal += op.sent > signalled_ ? 1 : 0;
  }
  EXPECT_GT(after_signal, 0) << "nothing was served during the drain";
  EXPECT_GT(refused, 0) << "the load ended before the shutdown cut it";

  // The relay flushed before the exit: with no node running, Kafka already
  // has every committed change, and the outbox is empty; so is the
  // journal but for rows projected and relayed that wait for their
  // sections' next snapshots (recovery reads them).
  auto committed = committed_change_ids(database_.conninfo());
  auto records = consume_all(broker_->bootstrap(), topic);
  auto violations = check_records(records, committed);
  EXPECT_TRUE(violations.empty())
      << violations.size() << " violations in " << records.size()
      << " records:" << as_lines(violations);
  EXPECT_EQ(rows_waiting_for_readers(database_.conninfo()), 0)
      << "rows left for the relay or the projector";

  // Every acknowledged change is in PostgreSQL: a new node shows it.
  node_ = std::make_unique<server_process>(server_args({}));
  http_connection again{node_->port()};
  auto state_violations = check_consistent(ops, observe(again, config, ops));
  auto in_store = check_store(database_.conninfo(), config.event_id);
  state_violations.insert(state_violations.end(), in_store.begin(),
                          in_store.end());
  EXPECT_TRUE(state_violations.empty())
      << state_violations.size()
      << " violations after the restart:" << as_lines(state_violations);
}

TEST_P(shutdown_test, past_the_deadline_it_exits_1_and_says_what_was_left) {
  node_ = std::make_unique<server_process>(
      server_args({"--shutdown-timeout-seconds", "2"}));
  {
    http_connection http{node_->port()};
    broker_->down();
    create_event(http, node_->admin_token(), shutdown_event());
    auto who = new_customer(http, "late");
    for (int i = 0; i < 5; ++i) {
      auto held = hold_quantity(http, who, "shutdown", "floor", 2);
      ASSERT_EQ(held.status, 201u) << held;
    }
  }
  signal();
  auto [code, took] = terminate_and_wait();
  // Kafka cannot take the last changes: the node gives up at its deadline
  // (plus librdkafka's last flush of at most a second) and says so.
  EXPECT_EQ(code, 1) << "a shutdown that left rows behind exited " << code;
  EXPECT_LT(took, 5s);
  EXPECT_NE(logs_.back().find("outbox rows were not relayed to Kafka"),
            std::string::npos)
      << "the log did not say what was left";

  // Nothing is lost: the next start relays what the outbox kept.
  broker_->up();
  node_ = std::make_unique<server_process>(server_args({}));
  auto records = consume_until_complete(broker_->bootstrap(), topic,
                                        database_.conninfo(), 30s);
  auto committed = committed_change_ids(database_.conninfo());
  EXPECT_EQ(committed.size(), 6u) << "an event and five holds";
  auto violations = check_records(records, committed);
  EXPECT_TRUE(violations.empty()) << as_lines(violations);
}

INSTANTIATE_TEST_SUITE_P(encodings, shutdown_test,
                         ::testing::ValuesIn(batch_encodings),
                         batch_encoding_name);

} // namespace
} // namespace rsv::e2e
