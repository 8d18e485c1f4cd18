// Change events through the transactional outbox, end to end: the real
// binary on the PostgreSQL of scripts/test, the project's Kafka-protocol
// broker (rsv-kafka-broker), and kcat, an independent client, reading what
// arrived. Every committed change must arrive (checked against the tables in
// PostgreSQL), once after dropping duplicates by id, in order per section;
// across kill -9 of the server and an outage of the broker. Each test runs
// with both batch encodings: with the journal, the journal rows are the
// outbox.

#include "harness.hpp"
#include "kafka_support.hpp"
#include "load.hpp"

#include <csignal>
#include <iostream>
#include <sstream>

namespace rsv::e2e {
namespace {

const std::string topic = "reservation-events";

json kafka_event() {
  auto body = event_json(
      "kafka", {section_json("floor", 5000, {{"A", 30}, {"B", 30}, {"C", 30}}),
                section_json("left", 3000, {{"A", 20}, {"B", 20}}),
                section_json("right", 3000, {{"A", 20}, {"B", 20}})});
  body["hold_ttl_seconds"] = 600;
  return body;
}

class kafka_test : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    broker_ = std::make_unique<kafka_broker>();
    start_server();
    create_event(*http_, node_->admin_token(), kafka_event());
    config_.event_id = "kafka";
    for (const auto* section : {"floor", "left", "right"})
      config_.sections[section] = get_seat_map(*http_, "kafka", section).order;
    for (int i = 0; i < 6; ++i)
      config_.customers.push_back(new_customer(*http_, "kafka"));
    config_.what = load_config::plan::mixed;
    config_.requests_max = 120;
    config_.duration_max = 20s;
  }

  void TearDown() override {
    http_.reset();
    if (node_) {
      EXPECT_EQ(node_->stop(), 0) << "no exit 0 on SIGTERM";
    }
    if (HasFailure()) {
      if (node_) std::cerr << "---- server log ----\n" << node_->log();
      std::cerr << "---- broker log ----\n" << broker_->log() << "----\n";
    }
  }

  /// Further `serve` flags of a fixture.
  virtual std::vector<std::string> extra_args() const { return {}; }

  void start_server() {
    auto args = database_.server_args();
    args.insert(args.end(),
                {"--kafka-brokers", broker_->bootstrap(), "--node-id",
                 "kafka-test", "--pg-batch-encoding", GetParam(),
                 // Journal rows go once snapshots cover them: soon here.
                 "--snapshot-seconds", "1"});
    auto extra = extra_args();
    args.insert(args.end(), extra.begin(), extra.end());
    node_ = std::make_unique<server_process>(args);
    http_ = std::make_unique<http_connection>(node_->port());
  }

  /// Runs the load to its end and answers every operation.
  std::vector<operation> run_load(unsigned seed) {
    auto config = config_;
    config.seed = seed;
    load_generator load(node_->port(), config);
    load.start();
    load.join();
    return load.operations();
  }

  /// With the journal, the tables that committed_change_ids reads trail
  /// the commits by the projector's lag: wait until they have them all.
  void wait_for_projection() {
    EXPECT_TRUE(eventually(
        [&] { return unprojected_journal_rows(database_.conninfo()) == 0; },
        30s))
        << "the projector did not catch up";
  }

  /// Every committed change reaches the topic, and the relay empties the
  /// outbox (or the journal) behind it.
  void expect_everything_arrived() {
    wait_for_projection();
    auto records = consume_until_complete(broker_->bootstrap(), topic,
                                          database_.conninfo(), 30s);
    auto committed = committed_change_ids(database_.conninfo());
    auto violations = check_records(records, committed);
    EXPECT_TRUE(violations.empty())
        << violations.size() << " violations in " << records.size()
        << " records:" << as_lines(violations);
    EXPECT_GT(committed.size(), 50u) << "the load committed little";
    std::cout << "[   info   ] " << committed.size() << " committed changes, "
              << records.size() << " records consumed\n";
    EXPECT_TRUE(eventually(
        [&] { return outbox_and_journal_rows(database_.conninfo()) == 0; },
        10s))
        << "relayed rows were not trimmed from the outbox or the journal";
  }

  scratch_database database_;
  std::unique_ptr<kafka_broker> broker_;
  std::unique_ptr<server_process> node_;
  std::unique_ptr<http_connection> http_;
  load_config config_;
};

TEST_P(kafka_test, every_committed_change_arrives_once_and_in_order) {
  auto ops = run_load(11);
  std::cout << "[   info   ] " << summary(ops) << "\n";
  // Each kind of change, so that every record type is checked.
  auto seen = [&](op_kind kind) {
    for (const auto& op : ops)
      if (op.kind == kind && op.result == outcome::acknowledged) return true;
    return false;
  };
  EXPECT_TRUE(seen(op_kind::book) && seen(op_kind::release) &&
              seen(op_kind::cancel))
      << "the load lacked bookings, releases or cancellations";
  expect_everything_arrived();
  if (HasFailure()) return;

  // What a consumer reads about a hold is what the API said about it.
  auto records = consume_all(broker_->bootstrap(), topic);
  for (const auto& op : ops) {
    if (op.kind != op_kind::hold_seats || op.status != 201) continue;
    auto id = op.body.value("hold_id", std::string{}) + ":hold.created";
    const consumed_record* found = nullptr;
    for (const auto& record : records)
      if (record.value.value("id", std::string{}) == id) found = &record;
    ASSERT_NE(found, nullptr) << id;
    EXPECT_EQ(found->value["seats"], op.body["seats"]) << id;
    EXPECT_EQ(found->value["total_cents"], op.body["total_cents"]) << id;
    EXPECT_EQ(found->value["expires_at"], op.body["expires_at"]) << id;
    EXPECT_EQ(found->value["customer_id"],
              config_.customers[static_cast<std::size_t>(op.client)].id)
        << id;
    EXPECT_EQ(found->key, "kafka/" + op.section_id) << id;
    break;
  }
  auto health = http_->get("/health");
  EXPECT_EQ(health.status, 200u) << health;
  EXPECT_EQ(health.body_json()["services"]["kafka"], "ok") << health;
}

// Expiry is the one change no client asks for: the section's timer makes
// it, and it must reach Kafka like the others.
TEST_P(kafka_test, a_hold_left_to_expire_becomes_a_hold_expired_record) {
  auto body = event_json("brief", {section_json("stalls", 2500, {{"A", 10}})});
  body["hold_ttl_seconds"] = 30; // the contract's minimum
  create_event(*http_, node_->admin_token(), body);
  auto held = hold_seats(*http_, config_.customers[0], "brief", "stalls",
                         {"A-4", "A-5"});
  ASSERT_EQ(held.status, 201u) << held;
  auto hold_id = held.body_json()["hold_id"].get<std::string>();
  const consumed_record* expired = nullptr;
  std::vector<consumed_record> records;
  EXPECT_TRUE(eventually(
      [&] {
        records = consume_all(broker_->bootstrap(), topic);
        for (const auto& record : records)
          if (record.id_header == hold_id + ":hold.expired") expired = &record;
        return expired != nullptr;
      },
      45s, 500ms))
      << "no hold.expired record for " << hold_id;
  if (expired == nullptr) return;
  wait_for_projection();
  EXPECT_EQ(expired->key, "brief/stalls");
  EXPECT_EQ(expired->value["seats"], json::array({"A-4", "A-5"}));
  EXPECT_EQ(expired->value["total_cents"], 5000);
  EXPECT_EQ(expired->value["customer_id"], config_.customers[0].id);
  auto violations =
      check_records(records, committed_change_ids(database_.conninfo()));
  EXPECT_TRUE(violations.empty()) << as_lines(violations);
}

TEST_P(kafka_test, kill_minus_nine_while_relaying_loses_nothing) {
  {
    auto config = config_;
    config.seed = 21;
    load_generator load(node_->port(), config);
    load.start();
    ASSERT_TRUE(load.wait_for(
        [](const load_progress& p) { return p.acknowledged >= 150; }, 20s));
    // Mid-load: the relay has rows in flight, the outbox has more.
    ASSERT_EQ(::kill(node_->pid(), SIGKILL), 0);
    node_->stop();
    load.join();
  }
  http_.reset();
  start_server();
  // The restarted node relays what the dead one left, and its own.
  auto ops = run_load(22);
  std::cout << "[   info   ] after the restart: " << summary(ops) << "\n";
  expect_everything_arrived();
}

TEST_P(kafka_test, bookings_go_on_while_the_broker_is_down) {
  broker_->down();
  // /health tells, /ready does not: bookings do not need Kafka.
  http_response health;
  EXPECT_TRUE(eventually(
      [&] {
        health = http_->get("/health");
        return health.status == 503;
      },
      15s))
      << "/health did not report Kafka down: " << health;
  EXPECT_EQ(health.body_json()["services"]["kafka"], "down") << health;
  EXPECT_EQ(health.body_json()["services"]["store"], "ok") << health;
  EXPECT_EQ(http_->get("/ready").status, 200u);

  auto ops = run_load(31);
  std::cout << "[   info   ] while the broker was down: " << summary(ops)
            << "\n";
  int acknowledged = 0;
  for (const auto& op : ops) {
    EXPECT_TRUE(op.status != 0 && op.status < 500)
        << "a request failed while only Kafka was down: " << op.describe();
    acknowledged += op.result == outcome::acknowledged ? 1 : 0;
  }
  EXPECT_GT(acknowledged, 100);
  // The changes wait in the outbox, and /metrics shows how many.
  std::optional<double> lag;
  EXPECT_TRUE(eventually(
      [&] {
        lag = metric(*http_, "rsv_relay_lag{unit=\"rows\"}");
        return lag && *lag > 0;
      },
      5s))
      << "rsv_relay_lag{unit=\"rows\"} did not show the backlog";
  auto records_lag = metric(*http_, "rsv_relay_lag{unit=\"records\"}");
  EXPECT_TRUE(records_lag && *records_lag >= *lag);
  if (GetParam() == "journal") {
    // The projector does not wait for Kafka: the tables have every change,
    // and the journal keeps the rows for the relay, nothing in the outbox.
    wait_for_projection();
    EXPECT_GT(outbox_and_journal_rows(database_.conninfo()), 0);
    EXPECT_EQ(
        run_psql(database_.conninfo(), "SELECT count(*) FROM outbox").output,
        "0\n");
  }

  broker_->up();
  expect_everything_arrived();
  EXPECT_TRUE(
      eventually([&] { return http_->get("/health").status == 200; }, 15s))
      << "/health did not recover";
  EXPECT_TRUE(eventually(
      [&] {
        auto rows = metric(*http_, "rsv_relay_lag{unit=\"rows\"}");
        return rows && *rows == 0;
      },
      5s))
      << "the relay lag did not return to 0";
}

/// The same, with the chaos facility on.
class kafka_chaos_test : public kafka_test {
protected:
  std::vector<std::string> extra_args() const override { return {"--chaos"}; }
};

// The relay thread crashed six times (the chaos facility) while it relays a
// load: its supervisor restarts it each time, and every committed change is
// in the topic, once after dropping duplicates by id, in order per section.
TEST_P(kafka_chaos_test, a_relay_crashed_under_load_loses_no_change) {
  const auto& admin = node_->admin_token();
  for (const json& bad : {json{{"crashes", -1}}, json{{"crashes", 101}},
                          json{{"crashes", 1.5}}, json{{"crash", 1}}}) {
    auto refused = http_->post("/v1/admin/chaos/relay", bad, admin);
    EXPECT_TRUE(is_problem(refused, 422, "validation_failed")) << refused;
  }
  // No Redis on this node: nothing of it to crash.
  EXPECT_TRUE(is_problem(
      http_->post("/v1/admin/chaos/redis", {{"connection_crashes", 1}}, admin),
      409, "chaos_unsupported"));
  EXPECT_EQ(http_->get("/v1/admin/chaos", admin).body_json()["relay"],
            (json{{"crashes", 0}}));

  // A load that runs until told to stop; each client keeps a few holds and
  // bookings so that the seats do not run out.
  auto config = config_;
  config.seed = 21;
  config.requests_max = 20'000;
  config.duration_max = 60s;
  config.live_max = 8;
  load_generator load(node_->port(), config);
  load.start();
  constexpr int rounds = 3, crashes_per_round = 2;
  for (int round = 0; round < rounds; ++round) {
    // Each round further into the load, with records waiting to be relayed.
    ASSERT_TRUE(load.wait_for(
        [&](const load_progress& p) {
          return p.acknowledged >= 150 * (round + 1);
        },
        20s))
        << "the load made no progress";
    auto set = http_->post("/v1/admin/chaos/relay",
                           {{"crashes", crashes_per_round}}, admin);
    ASSERT_EQ(set.status, 200u) << set;
    // The answer shows the crashes still to come when it was written: the
    // relay may have taken one already. The metrics below count them all.
    auto to_come = set.body_json()["relay"]["crashes"];
    ASSERT_TRUE(to_come.is_number_integer()) << set;
    EXPECT_TRUE(to_come.get<int>() >= 0 &&
                to_come.get<int>() <= crashes_per_round)
        << set;
    ASSERT_TRUE(eventually(
        [&] {
          return http_->get("/v1/admin/chaos", admin)
                     .body_json()["relay"]["crashes"] == 0;
        },
        10s))
        << "the relay did not take its crashes";
  }
  // A little more load after the last restart.
  auto at_last = load.progress().acknowledged;
  EXPECT_TRUE(load.wait_for(
      [&](const load_progress& p) { return p.acknowledged >= at_last + 100; },
      20s));
  load.request_stop();
  load.join();
  std::cout << "[   info   ] " << summary(load.operations()) << "\n";

  expect_everything_arrived();
  auto metrics = http_->get("/metrics").body;
  EXPECT_EQ(
      metric_value(metrics, "rsv_chaos_faults_total", R"(kind="relay_crash")"),
      rounds * crashes_per_round);
  EXPECT_EQ(
      metric_value(metrics, "rsv_actor_restarts_total", R"(kind="relay")"),
      rounds * crashes_per_round);
  EXPECT_TRUE(eventually(
      [&] {
        return http_->get("/health").body_json()["services"]["kafka"] == "ok";
      },
      10s));
}

INSTANTIATE_TEST_SUITE_P(encodings, kafka_test,
                         ::testing::ValuesIn(batch_encodings),
                         batch_encoding_name);
INSTANTIATE_TEST_SUITE_P(encodings, kafka_chaos_test,
                         ::testing::ValuesIn(batch_encodings),
                         batch_encoding_name);

} // namespace
} // namespace rsv::e2e
