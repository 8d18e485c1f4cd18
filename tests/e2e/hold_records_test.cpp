// Hold records that ended are forgotten by their section and read back from
// PostgreSQL (issue 19: before, every hold ever made stayed in memory and was
// read at every restart), and one customer's active holds are capped. The
// real binary, `--hold-retention-seconds 1`, on the PostgreSQL of
// scripts/test.
#include "harness.hpp"

#include <csignal>
#include <gtest/gtest.h>

namespace rsv::e2e {
namespace {

std::string id_of(const http_response& response, const char* member) {
  return response.body_json()[member].get<std::string>();
}

class hold_records_test : public ::testing::Test {
protected:
  std::vector<std::string> args() const {
    auto out = database_.server_args();
    out.insert(out.end(), {"--hold-retention-seconds", "1"});
    return out;
  }

  scratch_database database_;
};

TEST_F(hold_records_test, ended_holds_leave_memory_and_answer_from_the_store) {
  auto node = std::make_unique<server_process>(args());
  http_connection http{node->port()};
  create_event(http, node->admin_token(),
               event_json("gala", {section_json("floor", 1000,
                                                {{"A", 10}, {"B", 10}})}));
  auto ann = new_customer(http, "ann");
  auto bob = new_customer(http, "bob");

  auto released = hold_seats(http, ann, "gala", "floor", {"A-1"});
  ASSERT_EQ(released.status, 201u) << released;
  auto released_id = id_of(released, "hold_id");
  auto released_before = released.body_json();
  ASSERT_EQ(http.del("/v1/holds/" + released_id, ann.token).status, 204u);
  auto held = hold_seats(http, ann, "gala", "floor", {"A-2"});
  ASSERT_EQ(held.status, 201u) << held;
  auto held_id = id_of(held, "hold_id");
  auto booked = hold_seats(http, ann, "gala", "floor", {"A-3"});
  ASSERT_EQ(booked.status, 201u) << booked;
  auto booking = http.post("/v1/bookings",
                           {{"hold_id", id_of(booked, "hold_id")}}, ann.token);
  ASSERT_EQ(booking.status, 201u) << booking;
  auto booking_id = id_of(booking, "booking_id");
  // Churn: twenty more holds released at once.
  for (int i = 0; i < 20; ++i) {
    auto churn = hold_seats(http, bob, "gala", "floor", {"B-1"});
    ASSERT_EQ(churn.status, 201u) << churn;
    ASSERT_EQ(
        http.del("/v1/holds/" + id_of(churn, "hold_id"), bob.token).status,
        204u);
  }

  // The section lets go of the 21 ended holds on its own (its timer), the
  // active hold and the booking stay.
  ASSERT_TRUE(
      eventually([&] { return metric(http, "rsv_hold_records") == 2.0; }, 10s))
      << "rsv_hold_records = " << metric(http, "rsv_hold_records").value_or(-1);

  // Read back from PostgreSQL: the same answer as from memory.
  auto read = http.get("/v1/holds/" + released_id, ann.token);
  ASSERT_EQ(read.status, 200u) << read;
  auto expected = released_before;
  expected["status"] = "released";
  EXPECT_EQ(read.body_json(), expected);
  EXPECT_EQ(http.del("/v1/holds/" + released_id, ann.token).status, 204u);
  EXPECT_TRUE(is_problem(
      http.post("/v1/bookings", {{"hold_id", released_id}}, ann.token), 410,
      "hold_expired"));
  EXPECT_TRUE(is_problem(http.get("/v1/holds/" + released_id, bob.token), 404,
                         "not_found"));
  EXPECT_TRUE(is_problem(http.del("/v1/holds/" + released_id, bob.token), 404,
                         "not_found"));
  EXPECT_EQ(http.get("/v1/bookings/" + booking_id, ann.token).status, 200u);
  EXPECT_EQ(section_counts(http, "gala", "floor"), (counts{18, 1, 1}));

  // kill -9: recovery reads the live holds and the last one, not all 23; an
  // ended hold still answers from the store, and ids go on.
  auto held_before = http.get("/v1/holds/" + held_id, ann.token).body_json();
  auto bookings_before = http.get("/v1/bookings", ann.token).body_json();
  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  node->stop();
  node = std::make_unique<server_process>(args());
  http_connection again{node->port()};
  EXPECT_EQ(again.get("/v1/holds/" + held_id, ann.token).body_json(),
            held_before);
  EXPECT_EQ(again.get("/v1/bookings", ann.token).body_json(), bookings_before);
  EXPECT_EQ(again.get("/v1/holds/" + released_id, ann.token).body_json(),
            expected);
  EXPECT_EQ(section_counts(again, "gala", "floor"), (counts{18, 1, 1}));
  auto next = hold_seats(again, bob, "gala", "floor", {"A-1"});
  ASSERT_EQ(next.status, 201u) << next;
  // hld_<section>_<slot>_<event hash>, in hex: slots 0-22 were taken.
  auto slot_of = [](const std::string& id) {
    auto from = id.find('_', id.find('_') + 1) + 1;
    return std::stoul(id.substr(from, id.find('_', from) - from), nullptr, 16);
  };
  EXPECT_EQ(slot_of(id_of(next, "hold_id")), 23u) << id_of(next, "hold_id");
  EXPECT_TRUE(
      eventually([&] { return metric(again, "rsv_hold_records") == 3.0; }, 10s))
      << "rsv_hold_records = "
      << metric(again, "rsv_hold_records").value_or(-1);
}

TEST(hold_records, one_customer_has_at_most_200_active_holds_per_section) {
  server_process node;
  http_connection http{node.port()};
  create_event(http, node.admin_token(),
               event_json("fair", {section_json("hall", 100, {{"A", 300}})}));
  auto ann = new_customer(http, "ann");
  auto bob = new_customer(http, "bob");
  std::string first;
  for (int seat = 1; seat <= 200; ++seat) {
    auto held =
        hold_seats(http, ann, "fair", "hall", {"A-" + std::to_string(seat)});
    ASSERT_EQ(held.status, 201u) << seat << ": " << held;
    if (first.empty()) first = id_of(held, "hold_id");
  }
  auto refused = hold_seats(http, ann, "fair", "hall", {"A-201"});
  EXPECT_TRUE(is_problem(refused, 422, "limit_exceeded")) << refused;
  EXPECT_NE(refused.body_json()["detail"].get<std::string>().find("200"),
            std::string::npos)
      << refused;
  EXPECT_EQ(hold_seats(http, bob, "fair", "hall", {"A-201"}).status, 201u);
  ASSERT_EQ(http.del("/v1/holds/" + first, ann.token).status, 204u);
  EXPECT_EQ(hold_seats(http, ann, "fair", "hall", {"A-202"}).status, 201u);
}

} // namespace
} // namespace rsv::e2e
