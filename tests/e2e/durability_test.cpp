// The real binary with --store postgres against the PostgreSQL that
// scripts/test starts (pg_virtualenv): what a client was answered 2xx for
// survives kill -9 of the whole process.
#include "harness.hpp"
#include "redis_support.hpp"

#include <csignal>
#include <cstdio>
#include <gtest/gtest.h>
#include <sys/wait.h>

namespace rsv::e2e {
namespace {

class durability_test : public ::testing::Test {
protected:
  std::vector<std::string> args() const { return database_.server_args(); }
  /// A node on this database and on `redis`.
  std::vector<std::string> args_with(const redis_server& redis) const {
    auto out = args();
    for (auto& flag : redis.server_args())
      out.push_back(flag);
    return out;
  }

  scratch_database database_;
};

TEST_F(durability_test, acknowledged_changes_survive_kill_minus_nine) {
  auto node = std::make_unique<server_process>(args());
  http_connection http{node->port()};
  auto admin = node->admin_token();
  auto body =
      event_json("gala", {section_json("floor", 1000, {{"A", 10}, {"B", 10}}),
                          section_json("balcony", 500, {{"A", 10}})});
  body["max_seats_per_customer"] = 6;
  create_event(http, admin, body);
  auto ann = new_customer(http, "ann");
  auto bob = new_customer(http, "bob");

  auto booked = hold_seats(http, ann, "gala", "floor", {"A-1", "A-2"});
  ASSERT_EQ(booked.status, 201u) << booked;
  auto booked_id = booked.body_json()["hold_id"].get<std::string>();
  auto booking = http.post("/v1/bookings", {{"hold_id", booked_id}}, ann.token);
  ASSERT_EQ(booking.status, 201u) << booking;
  auto active = hold_quantity(http, ann, "gala", "balcony", 3);
  ASSERT_EQ(active.status, 201u) << active;
  auto released = hold_seats(http, bob, "gala", "floor", {"B-5"});
  ASSERT_EQ(released.status, 201u) << released;
  auto released_id = released.body_json()["hold_id"].get<std::string>();
  ASSERT_EQ(http.del("/v1/holds/" + released_id, bob.token).status, 204u);
  auto cancelled = hold_seats(http, bob, "gala", "floor", {"B-9"});
  ASSERT_EQ(cancelled.status, 201u) << cancelled;
  auto cancelled_booking =
      http.post("/v1/bookings", {{"hold_id", cancelled.body_json()["hold_id"]}},
                bob.token);
  ASSERT_EQ(cancelled_booking.status, 201u) << cancelled_booking;
  auto cancelled_id =
      cancelled_booking.body_json()["booking_id"].get<std::string>();
  ASSERT_EQ(http.del("/v1/bookings/" + cancelled_id, bob.token).status, 200u);

  auto event_before = http.get("/v1/events/gala").body_json();
  auto floor_before = get_seat_map(http, "gala", "floor");
  auto balcony_before = get_seat_map(http, "gala", "balcony");
  auto ann_bookings = http.get("/v1/bookings", ann.token).body_json();
  auto bob_bookings = http.get("/v1/bookings", bob.token).body_json();
  auto active_before =
      http.get("/v1/holds/" + active.body_json()["hold_id"].get<std::string>(),
               ann.token)
          .body_json();

  // No goodbye: the process dies between two requests.
  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  node->stop();
  node = std::make_unique<server_process>(args());
  http_connection again{node->port()};

  EXPECT_EQ(again.get("/v1/events/gala").body_json(), event_before);
  EXPECT_EQ(get_seat_map(again, "gala", "floor").seats, floor_before.seats);
  EXPECT_EQ(get_seat_map(again, "gala", "balcony").seats, balcony_before.seats);
  EXPECT_EQ(again.get("/v1/bookings", ann.token).body_json(), ann_bookings);
  EXPECT_EQ(again.get("/v1/bookings", bob.token).body_json(), bob_bookings);
  EXPECT_EQ(again
                .get("/v1/holds/" + active_before["hold_id"].get<std::string>(),
                     ann.token)
                .body_json(),
            active_before);
  EXPECT_EQ(
      again.get("/v1/holds/" + released_id, bob.token).body_json()["status"],
      "released");
  auto stats =
      again.get("/v1/events/gala/stats", node->admin_token()).body_json();
  EXPECT_EQ(stats["booked"], 2);
  EXPECT_EQ(stats["held"], 3);
  EXPECT_EQ(stats["revenue_cents"], 2000);
  // Accounts survive: the same password logs in, the email stays taken.
  EXPECT_EQ(again
                .post("/v1/sessions",
                      {{"email", ann.email}, {"password", ann.password}})
                .status,
            201u);
  EXPECT_EQ(again
                .post("/v1/customers",
                      {{"email", ann.email}, {"password", "password123"}})
                .status,
            409u);
  // The seat limit counts what ann had: 2 booked + 3 held of 6.
  auto over = hold_seats(again, ann, "gala", "floor", {"A-5", "A-6"});
  EXPECT_EQ(over.status, 422u) << over;
  auto fits = hold_seats(again, ann, "gala", "floor", {"A-5"});
  ASSERT_EQ(fits.status, 201u) << fits;
  // New ids do not collide with recovered ones.
  EXPECT_NE(fits.body_json()["hold_id"], booked_id);
  EXPECT_NE(fits.body_json()["hold_id"], released_id);
  auto taken = hold_seats(again, bob, "gala", "floor", {"A-1"});
  EXPECT_EQ(taken.status, 409u) << taken;
  auto health = again.get("/health").body_json();
  EXPECT_EQ(health["services"]["store"], "ok");
  // Group commit shows in the metrics: at least the hold above committed.
  auto metrics = again.get("/metrics").body;
  EXPECT_NE(metrics.find("rsv_store_batch_rows_count"), std::string::npos);
  EXPECT_EQ(metrics.find("rsv_store_commit_seconds_count 0\n"),
            std::string::npos)
      << metrics.substr(metrics.find("rsv_store_commit_seconds_count"), 40);
}

// kill -9 leaves the process's PostgreSQL backends behind, one perhaps in
// a transaction that a slow disk holds in its COMMIT. Played here by a psql
// session under a node's name, in a transaction that holds seat A-1: the
// restarted node ends it before it reads, so it cannot commit afterwards
// and the seat is the new node's to sell, once.
TEST_F(durability_test, a_dead_node_leaves_no_transaction_to_land_later) {
  auto node = std::make_unique<server_process>(args());
  http_connection http{node->port()};
  create_event(http, node->admin_token(),
               event_json("late", {section_json("floor", 1000, {{"A", 4}})}));
  auto former_sql = "PGAPPNAME=reservations-node/former psql -X -q -v "
                    "ON_ERROR_STOP=1 '" +
                    database_.conninfo() + "' >/dev/null 2>&1";
  // Writing to a psql that already ended must fail, not kill the test.
  std::signal(SIGPIPE, SIG_IGN);
  FILE* former = ::popen(former_sql.c_str(), "w");
  ASSERT_NE(former, nullptr);
  std::fputs("BEGIN; INSERT INTO holds (section_no, slot, customer_id, seats, "
             "status, created_at, expires_at, updated_at) SELECT section_no, "
             "999, 'cus_former', ARRAY['A-1'], 'active', now(), now() + "
             "interval '1 hour', now() FROM sections WHERE event_id = "
             "'late';\n",
             former);
  std::fflush(former);
  ASSERT_TRUE(eventually([&] {
    return run_psql(database_.conninfo(),
                    "SELECT state FROM pg_stat_activity WHERE "
                    "application_name = 'reservations-node/former'")
               .output == "idle in transaction\n";
  })) << "the former session did not open its transaction";

  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  node->stop();
  node = std::make_unique<server_process>(args());
  http_connection again{node->port()};
  // psql quits on its own: the node inherited the pipe, so no EOF comes.
  std::fputs("COMMIT;\n\\q\n", former);
  int status = ::pclose(former);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0)
      << "the dead node's transaction committed after the restart read";
  auto who = new_customer(again, "late");
  auto held = hold_seats(again, who, "late", "floor", {"A-1"});
  EXPECT_EQ(held.status, 201u) << held;
  EXPECT_EQ(run_psql(database_.conninfo(),
                     "SELECT count(*) FROM holds WHERE status = 'active' AND "
                     "'A-1' = ANY (seats)")
                .output,
            "1\n")
      << "seat A-1 is held twice in the tables";
}

TEST_F(durability_test, idempotent_answers_are_replayed_after_kill_minus_nine) {
  auto node = std::make_unique<server_process>(args());
  http_connection http{node->port()};
  create_event(http, node->admin_token(),
               event_json("gala", {section_json("floor", 1000, {{"A", 10}})}));
  auto ann = new_customer(http, "ann");
  auto bob = new_customer(http, "bob");
  json hold_body = {
      {"event_id", "gala"}, {"section_id", "floor"}, {"seats", {"A-1"}}};
  headers_t hold_key{{"Idempotency-Key", "hold-1"}};
  auto held = http.post("/v1/holds", hold_body, ann.token, hold_key);
  ASSERT_EQ(held.status, 201u) << held;
  json book_body = {{"hold_id", held.body_json()["hold_id"]}};
  headers_t book_key{{"Idempotency-Key", "book-1"}};
  auto booked = http.post("/v1/bookings", book_body, ann.token, book_key);
  ASSERT_EQ(booked.status, 201u) << booked;
  // A refusal is kept too; it is written after the answer, so wait for it.
  headers_t taken_key{{"Idempotency-Key", "taken-1"}};
  auto taken = http.post("/v1/holds", hold_body, bob.token, taken_key);
  ASSERT_EQ(taken.status, 409u) << taken;
  ASSERT_TRUE(eventually(
      [&] {
        auto count = run_psql(database_.conninfo(),
                              "SELECT count(*) FROM idempotency_records");
        return count.exit_code == 0 && count.output == "3\n";
      },
      10s));

  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  node->stop();
  node = std::make_unique<server_process>(args());
  http_connection again{node->port()};

  // The same requests are answered, not run again: byte for byte.
  auto replayed = again.post("/v1/holds", hold_body, ann.token, hold_key);
  EXPECT_EQ(replayed.status, 201u) << replayed;
  EXPECT_EQ(replayed.body, held.body);
  EXPECT_EQ(replayed.header("Location"), held.header("Location"));
  EXPECT_EQ(replayed.header("Idempotent-Replayed"), "true");
  auto rebooked = again.post("/v1/bookings", book_body, ann.token, book_key);
  EXPECT_EQ(rebooked.status, 201u) << rebooked;
  EXPECT_EQ(rebooked.body, booked.body);
  auto refused = again.post("/v1/holds", hold_body, bob.token, taken_key);
  EXPECT_EQ(refused.status, 409u) << refused;
  EXPECT_EQ(refused.body, taken.body);
  // Nothing ran twice: one seat booked, nothing held.
  auto counts = section_counts(again, "gala", "floor");
  EXPECT_EQ(counts.booked, 1);
  EXPECT_EQ(counts.held, 0);
  // The key is still bound to its request, and to its customer only.
  json other = {
      {"event_id", "gala"}, {"section_id", "floor"}, {"seats", {"A-2"}}};
  EXPECT_EQ(again.post("/v1/holds", other, ann.token, hold_key).status, 422u);
  EXPECT_EQ(again.post("/v1/holds", other, bob.token, hold_key).status, 201u);
}

// Every field of an event survives a restart as it was given: the event,
// each section and its rows (a field written without being read back, or
// read without being written, shows here).
TEST_F(durability_test, a_fully_specified_event_survives_kill_minus_nine) {
  redis_server redis; // a waiting room needs Redis to be created
  auto node = std::make_unique<server_process>(args_with(redis));
  http_connection http{node->port()};
  auto body =
      event_json("full-gala",
                 {section_json("stalls", 12345,
                               {{"A", 3}, {"BB", 7}, {"C12", 1}}, "The Stalls"),
                  section_json("circle", 0, {{"Z", 4}}, "Dress Circle")},
                 "2027-03-04T05:06:07.890Z");
  body["name"] = "A \"quoted\" gala, with 'apostrophes'";
  body["hold_ttl_seconds"] = 123;
  body["max_seats_per_customer"] = 5;
  body["waiting_room"] = {{"enabled", true}, {"admit_per_second", 17}};
  create_event(http, node->admin_token(), body);
  auto before = http.get("/v1/events/full-gala").body_json();
  EXPECT_EQ(before["hold_ttl_seconds"], 123) << before;
  EXPECT_EQ(before["max_seats_per_customer"], 5) << before;
  EXPECT_EQ(before["waiting_room"]["admit_per_second"], 17) << before;
  auto stalls = get_seat_map(http, "full-gala", "stalls").seats;
  auto circle = get_seat_map(http, "full-gala", "circle").seats;

  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  node->stop();
  node = std::make_unique<server_process>(args_with(redis));
  http_connection again{node->port()};
  EXPECT_EQ(again.get("/v1/events/full-gala").body_json(), before);
  EXPECT_EQ(get_seat_map(again, "full-gala", "stalls").seats, stalls);
  EXPECT_EQ(get_seat_map(again, "full-gala", "circle").seats, circle);
}

// An on-sale's queue cannot be bypassed by restarting a node: a hold
// without an admission token is refused before and after kill -9.
TEST_F(durability_test,
       the_waiting_room_still_guards_holds_after_kill_minus_nine) {
  redis_server redis;
  auto node = std::make_unique<server_process>(args_with(redis));
  http_connection http{node->port()};
  auto body =
      event_json("queued-gala", {section_json("floor", 1000, {{"A", 10}})});
  body["waiting_room"] = {{"enabled", true}, {"admit_per_second", 1}};
  create_event(http, node->admin_token(), body);
  auto who = new_customer(http, "queued");
  auto first = hold_quantity(http, who, "queued-gala", "floor", 1);
  ASSERT_TRUE(is_problem(first, 403, "admission_required")) << first;

  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  node->stop();
  node = std::make_unique<server_process>(args_with(redis));
  http_connection again{node->port()};
  auto after = hold_quantity(again, who, "queued-gala", "floor", 1);
  EXPECT_TRUE(is_problem(after, 403, "admission_required")) << after;
  EXPECT_EQ(section_counts(again, "queued-gala", "floor"), (counts{10, 0, 0}));
}

// A journal node projects the tables after the commit; /health and /metrics
// say how far they trail, also while the projector waits for its interval
// (measured only after its steps, the backlog read as empty).
TEST_F(durability_test, a_journal_node_reports_how_far_its_tables_trail) {
  auto flags = args();
  for (const char* flag : {"--pg-batch-encoding", "journal",
                           "--pg-journal-step-interval-ms", "10000"})
    flags.push_back(flag);
  server_process node{flags};
  http_connection http{node.port()};
  create_event(
      http, node.admin_token(),
      event_json("lagging", {section_json("floor", 1000, {{"A", 10}})}));
  auto ann = new_customer(http, "ann");
  auto rows_of = [&](const std::string& table) {
    auto rows = run_psql(database_.conninfo(), "SELECT count(*) FROM " + table);
    return rows.exit_code == 0 ? std::stoi(rows.output) : -1;
  };
  // The projector's first step comes an interval after the start.
  auto held = hold_seats(http, ann, "lagging", "floor", {"A-1"});
  ASSERT_EQ(held.status, 201u) << held;

  auto projection = [&] {
    return http.get("/health").body_json()["projection"];
  };
  auto gauge = [&](const std::string& name) {
    auto text = http.get("/metrics").body;
    auto at = text.find("\n" + name + " ");
    return at == std::string::npos
               ? -1.0
               : std::stod(text.substr(at + name.size() + 2));
  };
  auto held_rows = [&] { return rows_of("holds"); };
  // The hold waits in the journal for up to the interval.
  EXPECT_TRUE(eventually(
      [&] {
        auto now = projection();
        return now.is_object() && now["backlog_rows"].get<int64_t>() >= 1 &&
               now["lag_seconds"].get<double>() > 0 &&
               gauge("rsv_journal_backlog_rows") >= 1 &&
               gauge("rsv_journal_lag_seconds") > 0;
      },
      5s))
      << http.get("/health").body;
  EXPECT_EQ(held_rows(), 0) << "the hold reached the tables before its step";
  // Then the step projects it, and the backlog reads empty again.
  EXPECT_TRUE(eventually(
      [&] {
        auto now = projection();
        return held_rows() == 1 && now["backlog_rows"].get<int64_t>() == 0 &&
               now["lag_seconds"].get<double>() == 0;
      },
      20s, 200ms))
      << http.get("/health").body;
}

TEST_F(durability_test, a_node_writing_its_tables_in_the_commit_has_no_lag) {
  server_process node{args()};
  http_connection http{node.port()};
  auto health = http.get("/health");
  ASSERT_EQ(health.status, 200u) << health;
  EXPECT_FALSE(health.body_json().contains("projection")) << health;
}

} // namespace
} // namespace rsv::e2e
