// PostgreSQL stops under load and comes back, the server keeps running.
//
// Contract (../shared/contract/http-api.md, "Acknowledgement and
// durability"): when the store cannot be reached the server answers 503
// `unavailable` with Retry-After, never hangs past its request deadline, and
// keeps serving the reads it can serve; /health reports the store down; a
// 2xx means durable; a request that got a 5xx may or may not have taken
// effect, and a retry with the same Idempotency-Key tells which.
//
// The PostgreSQL here is a private cluster of this test process
// (pg_cluster.hpp), not the one of scripts/test: other pg tests run in
// parallel against that one and must not see it stop.

#include "harness.hpp"
#include "load.hpp"
#include "pg_cluster.hpp"

#include <algorithm>
#include <iostream>

namespace rsv::e2e {
namespace {

using clock_type = std::chrono::steady_clock;

/// The server's request deadline, set explicitly; every answer must come
/// within it plus a second of slack for a loaded machine.
constexpr auto request_deadline = 2000ms;
constexpr auto answer_limit = request_deadline + 1s;
constexpr int clients = 6;
/// How long after PostgreSQL's start every section must serve again. A
/// section whose write failed reloads at the first request after that (or
/// within a second, its longest backoff, if nobody asks); the rest is slack
/// for a loaded machine.
constexpr auto serving_limit = 5s;

std::chrono::milliseconds since(steady_time then) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      clock_type::now() - then);
}

/// What happened around one outage.
struct outage_record {
  std::vector<operation> ops;           // the load's requests
  steady_time began{};                  // PostgreSQL had exited
  steady_time ended{};                  // PostgreSQL was being started again
  std::chrono::milliseconds recovery{}; // from then to the first 2xx write
  std::chrono::milliseconds serving{};  // from then to every seat map 200
};

class outage_test : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    try {
      cluster_ = std::make_unique<pg_cluster>();
    } catch (const std::exception& e) {
      cluster_error_ = e.what();
    }
  }
  static void TearDownTestSuite() { cluster_.reset(); }

  void SetUp() override {
    ASSERT_TRUE(cluster_) << "no private PostgreSQL: " << cluster_error_;
    static int counter = 0;
    database_ = "rsv_outage_" + std::to_string(counter++);
    cluster_->create_database(database_);
    node_ = std::make_unique<server_process>(server_args());
    http_ = std::make_unique<http_connection>(node_->port());
    auto body = event_json(
        "outage",
        {section_json("floor", 5000, {{"A", 30}, {"B", 30}, {"C", 30}}),
         section_json("side", 3000, {{"A", 20}, {"B", 20}})});
    body["hold_ttl_seconds"] = 600; // nothing expires during the test
    create_event(*http_, node_->admin_token(), body);
    // Requests of the test itself, apart from the load's event: "p" for
    // probing writes, "q" for the release and cancel of one customer, "r"
    // for reads of a section no write touches.
    std::vector<std::pair<std::string, int>> rows;
    for (char row = 'A'; row <= 'J'; ++row)
      rows.emplace_back(std::string(1, row), 100);
    auto probe = event_json("probe", {section_json("p", 100, rows),
                                      section_json("q", 100, {{"A", 10}}),
                                      section_json("r", 100, {{"A", 10}})});
    probe["hold_ttl_seconds"] = 600;
    create_event(*http_, node_->admin_token(), probe);
    prober_ = new_customer(*http_, "prober");
    config_.event_id = "outage";
    for (const auto* section : {"floor", "side"})
      config_.sections[section] = get_seat_map(*http_, "outage", section).order;
    for (int i = 0; i < clients; ++i)
      config_.customers.push_back(new_customer(*http_, "outage"));
    config_.requests_max = 1500;
    config_.duration_max = 45s;
    config_.seed = 42;
  }

  void TearDown() override {
    http_.reset();
    if (node_) {
      EXPECT_EQ(node_->stop(), 0) << "the server did not exit 0 on SIGTERM";
      if (HasFailure())
        std::cerr << "---- server log ----\n"
                  << node_->log() << "---- end of server log ----\n";
    }
    if (HasFailure() && cluster_) {
      auto log = cluster_->log();
      std::cerr << "---- PostgreSQL log (end) ----\n"
                << (log.size() > 3000 ? log.substr(log.size() - 3000) : log)
                << "---- end of PostgreSQL log ----\n";
    }
  }

  std::vector<std::string> server_args() const {
    return {"--store",
            "postgres",
            "--pg-dsn",
            cluster_->conninfo(database_),
            "--request-timeout-ms",
            std::to_string(request_deadline.count())};
  }

  /// SIGTERM (which must exit 0), and a new process on the same database.
  void restart_server() {
    http_.reset();
    EXPECT_EQ(node_->stop(), 0) << "the server did not exit 0 on SIGTERM";
    node_ = std::make_unique<server_process>(server_args());
    http_ = std::make_unique<http_connection>(node_->port());
  }

  /// A request of the test itself; its answer must come within the limit.
  http_response timed(const std::function<http_response()>& request,
                      std::string_view what) {
    auto started = clock_type::now();
    auto response = request();
    EXPECT_LE(since(started), answer_limit)
        << what << " took " << since(started).count() << " ms";
    return response;
  }

  http_response probe_write() {
    return timed(
        [&] { return hold_quantity(*http_, prober_, "probe", "p", 1); },
        "a probing write");
  }

  /// Runs the load, stops PostgreSQL under it, checks the answers of
  /// /health, /ready, writes and reads while it is down, starts it again,
  /// and waits until writes succeed and the load is acknowledged again,
  /// without restarting the server. `while_down` and `once_back` run the
  /// test's own requests at those two moments.
  void run_through_outage(outage_record& record,
                          const std::function<void()>& while_down = {},
                          const std::function<void()>& once_back = {}) {
    load_generator load(node_->port(), config_);
    load.start();
    ASSERT_TRUE(load.wait_for(
        [](const load_progress& p) { return p.acknowledged >= 40; }, 20s))
        << "no load before the outage: " << load.progress().acknowledged
        << " acknowledged";
    {
      pg_restart_guard restart{*cluster_};
      cluster_->stop();
      record.began = clock_type::now();
      auto answered_at_stop = load.progress().answered;

      http_response health;
      EXPECT_TRUE(eventually(
          [&] {
            health = timed([&] { return http_->get("/health"); }, "/health");
            return health.status == 503;
          },
          5s))
          << "/health did not report the outage within 5 s: " << health;
      auto health_body = json::parse(health.body, nullptr, false);
      EXPECT_EQ(health_body.value("status", json()), "unhealthy") << health;
      EXPECT_EQ(
          health_body.value("services", json::object()).value("store", json()),
          "down")
          << health;
      auto ready = timed([&] { return http_->get("/ready"); }, "/ready");
      EXPECT_EQ(ready.status, 503u) << "bookings cannot be taken: " << ready;

      auto write = probe_write();
      EXPECT_TRUE(is_problem(write, 503, "unavailable"));
      EXPECT_TRUE(write.header("Retry-After").has_value()) << write;
      auto signup = timed(
          [&] {
            return http_->post("/v1/customers",
                               {{"email", unique_email("down")},
                                {"password", "correct horse battery"}});
          },
          "a registration");
      EXPECT_TRUE(is_problem(signup, 503, "unavailable"));
      EXPECT_TRUE(signup.header("Retry-After").has_value()) << signup;
      // Reads it can serve: the event, and the seats of a section no write
      // touched. A section whose writes failed may not know its state until
      // it reads PostgreSQL again: 200 or 503 unavailable both keep the
      // contract ("keeps serving reads it can serve").
      auto event =
          timed([&] { return http_->get("/v1/events/outage"); }, "an event");
      EXPECT_EQ(event.status, 200u) << event;
      auto untouched =
          timed([&] { return http_->get("/v1/events/probe/sections/r/seats"); },
                "an untouched seat map");
      EXPECT_EQ(untouched.status, 200u) << untouched;
      auto in_doubt = timed(
          [&] { return http_->get("/v1/events/outage/sections/floor/seats"); },
          "a seat map with failed writes");
      EXPECT_TRUE(in_doubt.status == 200 ||
                  is_problem(in_doubt, 503, "unavailable"))
          << in_doubt;
      if (while_down) while_down();

      // The load meets the outage: ten answers per client at least, not
      // counting the requests in flight at the stop.
      EXPECT_TRUE(load.wait_for(
          [&](const load_progress& p) {
            return p.answered >= answered_at_stop + 11 * clients;
          },
          15s))
          << "the load got few answers while PostgreSQL was down";
      health = timed([&] { return http_->get("/health"); }, "/health");
      EXPECT_EQ(health.status, 503u) << "still down: " << health;
      record.ended = clock_type::now();
      cluster_->start();
    }
    auto back = clock_type::now();
    http_response write;
    bool writes = eventually(
        [&] {
          write = probe_write();
          return write.status == 201;
        },
        15s, 50ms);
    record.recovery = since(back);
    EXPECT_TRUE(writes) << "no write succeeded within 15 s of PostgreSQL's "
                           "start, without a restart of the server; last: "
                        << write;
    http_response health;
    EXPECT_TRUE(eventually(
        [&] {
          health = timed([&] { return http_->get("/health"); }, "/health");
          return health.status == 200;
        },
        5s))
        << "/health did not recover: " << health;
    EXPECT_EQ(http_->get("/ready").status, 200u);
    auto acknowledged = load.progress().acknowledged;
    EXPECT_TRUE(load.wait_for(
        [&](const load_progress& p) {
          return p.acknowledged >= acknowledged + 20;
        },
        15s))
        << "the load was not acknowledged again after PostgreSQL came back";
    load.request_stop();
    load.join();
    // Service resumes by itself: every section of both events serves its
    // seat map again, also those whose writes failed (floor, side, p, q),
    // which answer 503 until they have reloaded from PostgreSQL. Only then
    // do the state checks read them.
    std::vector<std::string> not_serving;
    auto serving = eventually(
        [&] {
          not_serving = sections_not_serving();
          return not_serving.empty();
        },
        std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                     back + serving_limit - clock_type::now()),
                 0ms),
        50ms);
    record.serving = since(back);
    ASSERT_TRUE(serving) << "sections not serving " << record.serving.count()
                         << " ms after PostgreSQL's start, without a restart "
                            "of the server:"
                         << as_lines(not_serving);
    if (once_back) once_back();
    record.ops = load.operations();
    std::chrono::milliseconds slowest{0};
    for (const auto& op : record.ops)
      slowest = std::max(slowest, op.latency());
    std::cout << "[   info   ] slowest answer to the load " << slowest.count()
              << " ms; PostgreSQL down for "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     record.ended - record.began)
                     .count()
              << " ms; first write acknowledged " << record.recovery.count()
              << " ms after its start, every section serving after "
              << record.serving.count() << " ms; " << summary(record.ops)
              << "\n";
  }

  /// The sections of the load's event and of the probe event whose seat map
  /// is not answered 200, each with its answer.
  std::vector<std::string> sections_not_serving() {
    std::vector<std::string> out;
    for (const auto& event_id : {config_.event_id, std::string{"probe"}}) {
      auto event = http_->get("/v1/events/" + event_id);
      if (event.status != 200) {
        out.push_back("event " + event_id + ": " +
                      std::to_string(event.status) + " " + event.body);
        continue;
      }
      // Kept in a variable: a range-for over a member of a temporary would
      // iterate over a destroyed object.
      auto event_body = event.body_json();
      for (const auto& section : event_body.at("sections")) {
        auto id = section.at("id").get<std::string>();
        auto seats =
            http_->get("/v1/events/" + event_id + "/sections/" + id + "/seats");
        if (seats.status != 200)
          out.push_back(event_id + "/" + id + ": " +
                        std::to_string(seats.status) + " " + seats.body);
      }
    }
    return out;
  }

  /// The load's answers: every request answered within the limit, every
  /// 5xx a 503 `unavailable` with Retry-After, nothing acknowledged while
  /// PostgreSQL was down. One line per violation.
  static std::vector<std::string> check_answers(const outage_record& record) {
    std::vector<std::string> out;
    int during = 0;
    for (const auto& op : record.ops) {
      if (op.status == 0)
        out.push_back("no answer: " + op.describe());
      else if (op.latency() > answer_limit)
        out.push_back("answered after the deadline: " + op.describe());
      if (op.status >= 500 && (op.status != 503 || op.code != "unavailable" ||
                               !op.problem_shape || !op.retry_after))
        out.push_back("a failure other than 503 unavailable with "
                      "Retry-After: " +
                      op.describe() + " " + op.body.dump());
      if (op.sent < record.began || op.answered > record.ended) continue;
      ++during;
      if (op.result == outcome::acknowledged)
        out.push_back("acknowledged while PostgreSQL was down: " +
                      op.describe());
    }
    if (during < 10 * clients)
      out.push_back("only " + std::to_string(during) +
                    " requests were sent and answered during the outage");
    return out;
  }

  /// The load's event as the server shows it, checked against the answers,
  /// and the database checked for seats taken twice.
  std::vector<std::string> check_state(const std::vector<operation>& ops) {
    auto out = check_consistent(ops, observe(*http_, config_, ops));
    for (const auto& event : {config_.event_id, std::string{"probe"}}) {
      auto in_store = check_store(cluster_->conninfo(database_), event);
      out.insert(out.end(), in_store.begin(), in_store.end());
    }
    return out;
  }

  static inline std::unique_ptr<pg_cluster> cluster_;
  static inline std::string cluster_error_;
  std::string database_;
  std::unique_ptr<server_process> node_;
  std::unique_ptr<http_connection> http_;
  load_config config_;
  customer prober_;
};

TEST_F(outage_test, every_request_is_answered_in_time_and_writes_resume) {
  outage_record record;
  run_through_outage(record);
  if (HasFatalFailure()) return;
  auto violations = check_answers(record);
  EXPECT_TRUE(violations.empty())
      << violations.size() << " violations:" << as_lines(violations);
}

// Guards the reload after a failed commit: were a write answered 503 kept
// in memory, a release or cancellation would free the seats in memory only,
// another customer would be answered 201 for them, PostgreSQL would hold
// both, and the restarted server would refuse to recover ("two records claim
// one seat").
TEST_F(outage_test, acknowledged_changes_survive_the_outage_and_a_restart) {
  // One customer's hold and booking in section q, released and cancelled
  // while PostgreSQL is down (both 503: may or may not have happened); once
  // it is back another customer asks for the same seats. Whatever the
  // answer, it must stay true across a restart.
  auto other = new_customer(*http_, "other");
  auto held = hold_seats(*http_, prober_, "probe", "q", {"A-1", "A-2"});
  ASSERT_EQ(held.status, 201u) << held;
  auto held_id = held.body_json()["hold_id"].get<std::string>();
  auto to_book = hold_seats(*http_, prober_, "probe", "q", {"A-3"});
  ASSERT_EQ(to_book.status, 201u) << to_book;
  auto booked =
      http_->post("/v1/bookings", {{"hold_id", to_book.body_json()["hold_id"]}},
                  prober_.token);
  ASSERT_EQ(booked.status, 201u) << booked;
  auto booking_id = booked.body_json()["booking_id"].get<std::string>();
  http_response release, cancel, take_held, take_booked;

  outage_record record;
  run_through_outage(
      record,
      [&] {
        release = timed(
            [&] { return http_->del("/v1/holds/" + held_id, prober_.token); },
            "a release");
        cancel = timed(
            [&] {
              return http_->del("/v1/bookings/" + booking_id, prober_.token);
            },
            "a cancellation");
      },
      [&] {
        take_held = hold_seats(*http_, other, "probe", "q", {"A-1", "A-2"});
        take_booked = hold_seats(*http_, other, "probe", "q", {"A-3"});
      });
  if (HasFatalFailure()) return;
  EXPECT_TRUE(is_problem(release, 503, "unavailable"));
  EXPECT_TRUE(is_problem(cancel, 503, "unavailable"));
  EXPECT_TRUE(take_held.status == 201 ||
              is_problem(take_held, 409, "seats_unavailable"))
      << take_held;
  EXPECT_TRUE(take_booked.status == 201 ||
              is_problem(take_booked, 409, "seats_unavailable"))
      << take_booked;

  auto check = [&](std::string_view when) {
    auto violations = check_state(record.ops);
    EXPECT_TRUE(violations.empty()) << violations.size() << " violations "
                                    << when << ":" << as_lines(violations);
    // Seats another customer was given are no longer the first one's.
    auto hold = http_->get("/v1/holds/" + held_id, prober_.token);
    ASSERT_EQ(hold.status, 200u) << hold;
    EXPECT_EQ(hold.body_json()["status"],
              take_held.status == 201 ? "released" : "active")
        << when << ": A-1, A-2 were answered " << take_held.status
        << " to another customer";
    auto booking = http_->get("/v1/bookings/" + booking_id, prober_.token);
    ASSERT_EQ(booking.status, 200u) << booking;
    EXPECT_EQ(booking.body_json()["status"],
              take_booked.status == 201 ? "cancelled" : "confirmed")
        << when << ": A-3 was answered " << take_booked.status
        << " to another customer";
    auto q = get_seat_map(*http_, "probe", "q");
    EXPECT_EQ(q.status("A-1"), "held") << when;
    EXPECT_EQ(q.status("A-3"), take_booked.status == 201 ? "held" : "booked")
        << when;
  };
  check("before the server restarts");
  restart_server();
  check("after the server restarted");
}

// Retries with the same Idempotency-Key after the outage must tell what
// PostgreSQL has, not what memory once had: a cancellation answered 503 and
// never committed must not be answered 200 on retry.
TEST_F(outage_test, retries_after_the_outage_tell_what_happened) {
  outage_record record;
  run_through_outage(record);
  if (HasFatalFailure()) return;
  // Every request that got no 2xx or 4xx, again, with its Idempotency-Key:
  // the answer now says what happened, and must stay true.
  auto ops = record.ops;
  int retried = 0;
  for (const auto& op : record.ops) {
    if (op.result != outcome::indeterminate) continue;
    auto again = op;
    again.retry = true;
    ops.push_back(perform(*http_, config_, std::move(again)));
    ++retried;
  }
  std::cout << "[   info   ] retried " << retried << " requests\n";
  auto before = observe(*http_, config_, ops);
  auto violations = check_consistent(ops, before);
  EXPECT_TRUE(violations.empty())
      << violations.size()
      << " violations before the restart:" << as_lines(violations);
  restart_server();
  auto after = observe(*http_, config_, ops);
  violations = check_consistent(ops, after);
  auto in_store = check_store(cluster_->conninfo(database_), "outage");
  violations.insert(violations.end(), in_store.begin(), in_store.end());
  EXPECT_TRUE(violations.empty())
      << violations.size()
      << " violations after the restart:" << as_lines(violations);
  auto changed = differences(before, after);
  EXPECT_TRUE(changed.empty())
      << "the server showed before its restart what it does not show after "
         "(no request in between), "
      << changed.size() << " differences:" << as_lines(changed);
}

// SIGTERM while sections are stale (their writes failed, their reloads fail
// or are on their way, their retry timers armed) must still exit 0: the
// teardown of a node that went through an outage once aborted (SIGABRT, heap
// corruption). Alternates between a stop while PostgreSQL is down and one
// right after it was started again, a few rounds, bounded in time.
TEST_F(outage_test, sigterm_with_stale_sections_exits_0) {
  constexpr int rounds = 4;
  const auto until = clock_type::now() + 90s;
  for (int round = 0; round < rounds && clock_type::now() < until; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto load_cfg = config_;
    load_cfg.seed = 42 + static_cast<unsigned>(round);
    load_cfg.duration_max = 20s;
    load_generator load(node_->port(), load_cfg);
    load.start();
    ASSERT_TRUE(load.wait_for(
        [](const load_progress& p) { return p.acknowledged >= 20; }, 20s))
        << "no load before the outage";
    {
      pg_restart_guard restart{*cluster_};
      cluster_->stop();
      // Writes to every section that has seats to give: each goes stale and
      // retries its reload on a timer.
      for (const auto* section : {"p", "q"}) {
        auto write = timed(
            [&] { return hold_quantity(*http_, prober_, "probe", section, 1); },
            "a write while PostgreSQL is down");
        EXPECT_TRUE(is_problem(write, 503, "unavailable")) << write;
      }
      auto answered = load.progress().answered;
      EXPECT_TRUE(load.wait_for(
          [&](const load_progress& p) {
            return p.answered >= answered + 4 * clients;
          },
          10s))
          << "the load got few answers while PostgreSQL was down";
      // Requests to stale sections start reloads that fail and arm timers.
      for (const auto* section : {"p", "q"})
        http_->get(std::string{"/v1/events/probe/sections/"} + section +
                   "/seats");
      if (round % 2 == 1) cluster_->start(); // reloads on their way
      load.request_stop();
      http_.reset();
      EXPECT_EQ(node_->stop(), 0)
          << "the server did not exit 0 on SIGTERM with stale sections";
      load.join();
      if (HasFailure()) return; // TearDown shows the stopped server's log
    }
    node_ = std::make_unique<server_process>(server_args());
    http_ = std::make_unique<http_connection>(node_->port());
  }
}

} // namespace
} // namespace rsv::e2e
