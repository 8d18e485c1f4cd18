// Upgrading a database to the journal (issue 16): the dump in
// fixtures/schema7.sql was written by the server at schema version 7,
// before migration 0008, through its HTTP API (fixtures/make_schema7_dump.sh).
// Today's binary, with --pg-batch-encoding journal, migrates it and serves
// every hold, booking and idempotent answer it held, and what it writes
// after the upgrade survives kill -9.
#include "harness.hpp"

#include <csignal>
#include <gtest/gtest.h>

namespace rsv::e2e {
namespace {

std::string psql_value(const scratch_database& db, const std::string& sql) {
  auto result = run_psql(db.conninfo(), sql);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  auto out = result.output;
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

customer log_in(http_connection& http, const std::string& email) {
  auto session = http.post(
      "/v1/sessions", {{"email", email}, {"password", "upgrade-password"}});
  EXPECT_EQ(session.status, 201u) << session;
  auto body = session.body_json();
  return {body.value("customer_id", ""), email, "upgrade-password",
          body.value("token", "")};
}

/// {free, held, booked} of one section of the gala.
std::vector<int> counts(http_connection& http, const std::string& section) {
  auto event = http.get("/v1/events/upgrade-gala");
  EXPECT_EQ(event.status, 200u) << event;
  auto body = event.body_json();
  for (const auto& s : body["sections"])
    if (s["id"] == section)
      return {s["free"].get<int>(), s["held"].get<int>(),
              s["booked"].get<int>()};
  ADD_FAILURE() << "no section " << section;
  return {};
}

class upgrade_test : public ::testing::Test {
protected:
  void SetUp() override {
    auto load = run_command({"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                             database_.name(), "-f", RSV_SCHEMA7_DUMP},
                            60s);
    ASSERT_EQ(load.exit_code, 0) << load.output;
    ASSERT_EQ(psql_value(database_, "SELECT max(version) FROM "
                                    "schema_migrations"),
              "7");
    // The dump was made long ago: move its times to now, as if it had been
    // taken a minute before the upgrade, so that the live hold is still
    // live and the idempotency records are still in their 24 hours.
    ASSERT_EQ(psql_value(database_,
                         "UPDATE holds SET expires_at = now() + interval "
                         "'1 hour' WHERE status = 'active' RETURNING slot"),
              "0");
    psql_value(database_, "UPDATE idempotency_records SET created_at = now()");
  }

  std::vector<std::string> args() const {
    auto out = database_.server_args();
    out.insert(out.end(), {"--pg-batch-encoding", "journal"});
    return out;
  }

  scratch_database database_;
};

TEST_F(upgrade_test, a_version_7_database_is_served_whole_with_the_journal) {
  auto node = std::make_unique<server_process>(args());
  EXPECT_EQ(psql_value(database_, "SELECT max(version) FROM schema_migrations"),
            "12");
  http_connection http{node->port()};
  // Floor: ada holds A-1 and A-2 and booked A-3; her hold of B-1 was
  // released. Balcony: ada's booking of A-1 and A-2 was cancelled; bob
  // booked A-3.
  EXPECT_EQ(counts(http, "floor"), (std::vector<int>{17, 2, 1}));
  EXPECT_EQ(counts(http, "balcony"), (std::vector<int>{4, 0, 1}));

  auto ada = log_in(http, "ada@upgrade.example");
  auto bob = log_in(http, "bob@upgrade.example");
  auto bookings = http.get("/v1/bookings", ada.token);
  ASSERT_EQ(bookings.status, 200u) << bookings;
  auto listed = bookings.body_json()["bookings"];
  ASSERT_EQ(listed.size(), 2u) << bookings;
  EXPECT_EQ(listed[0]["status"], "cancelled"); // newest first
  EXPECT_EQ(listed[0]["seats"], json({"A-1", "A-2"}));
  EXPECT_EQ(listed[1]["status"], "confirmed");
  EXPECT_EQ(listed[1]["seats"], json({"A-3"}));
  EXPECT_EQ(listed[1]["total_cents"], 9000);

  // The live hold's request, retried with its key and the very bytes the
  // script sent, is answered as before.
  auto replay = http.post_raw(
      "/v1/holds",
      R"({"event_id": "upgrade-gala", "section_id": "floor", "seats": ["A-1", "A-2"]})",
      ada.token, {{"Idempotency-Key", "upgrade-live-hold"}});
  ASSERT_EQ(replay.status, 201u) << replay;
  auto live_id = replay.body_json()["hold_id"].get<std::string>();
  auto live = http.get("/v1/holds/" + live_id, ada.token);
  ASSERT_EQ(live.status, 200u) << live;
  EXPECT_EQ(live.body_json()["status"], "active");
  // Its seats are still taken; the released and cancelled ones are free.
  auto taken = http.post("/v1/holds",
                         {{"event_id", "upgrade-gala"},
                          {"section_id", "floor"},
                          {"seats", {"A-2"}}},
                         bob.token);
  EXPECT_EQ(taken.status, 409u) << taken;
  auto freed = http.post("/v1/holds",
                         {{"event_id", "upgrade-gala"},
                          {"section_id", "balcony"},
                          {"seats", {"A-1", "A-2"}}},
                         bob.token);
  ASSERT_EQ(freed.status, 201u) << freed;

  // Written through the journal after the upgrade: a booking that must
  // survive kill -9, with ada's old booking booked from her old hold.
  auto booked = http.post("/v1/bookings", {{"hold_id", live_id}}, ada.token);
  ASSERT_EQ(booked.status, 201u) << booked;
  auto bob_booking = http.post(
      "/v1/bookings", {{"hold_id", freed.body_json()["hold_id"]}}, bob.token);
  ASSERT_EQ(bob_booking.status, 201u) << bob_booking;
  ::kill(node->pid(), SIGKILL);
  node->stop();
  node = std::make_unique<server_process>(args());
  http_connection again{node->port()};
  EXPECT_EQ(counts(again, "floor"), (std::vector<int>{17, 0, 3}));
  EXPECT_EQ(counts(again, "balcony"), (std::vector<int>{2, 0, 3}));
  auto after = again.get("/v1/bookings", ada.token);
  ASSERT_EQ(after.status, 200u) << after;
  EXPECT_EQ(after.body_json()["bookings"].size(), 3u) << after;
  // The projector caught up: the tables show what the journal held.
  EXPECT_EQ(psql_value(database_, "SELECT count(*) FROM bookings WHERE "
                                  "status = 'confirmed'"),
            "4");
}

} // namespace
} // namespace rsv::e2e
