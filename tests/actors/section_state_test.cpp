#include "actors/section_state.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/partition.hpp"

#include <algorithm>
#include <gtest/gtest.h>
#include <set>

namespace rsv::actors {
namespace {

constexpr millis start_ms = 1'800'000'000'000;
constexpr millis ttl_ms = 600'000;

/// Rows A (6 seats), B (4 seats), C (6 seats): 16 seats at 1,000 cents.
std::shared_ptr<const section_layout> small_layout() {
  section_def def{"floor", "Floor", 1000, {{"A", 6}, {"B", 4}, {"C", 6}}};
  return section_layout::make("concert", def, 3);
}

class section_state_test : public ::testing::Test {
protected:
  section_state seats{small_layout(), ttl_ms};
  millis now = start_ms;

  hold_view hold(const std::string& customer, std::vector<std::string> ids) {
    auto result = seats.hold_seats(customer, ids, now);
    EXPECT_TRUE(result) << to_string(result.error());
    return result ? result->view : hold_view{};
  }

  uint32_t slot_of(const std::string& hold_id) {
    return parse_hold_id(hold_id)->slot;
  }

  void expect_counts(uint32_t free, uint32_t held, uint32_t booked) {
    auto counts = seats.counts();
    EXPECT_EQ(counts.free, free);
    EXPECT_EQ(counts.held, held);
    EXPECT_EQ(counts.booked, booked);
    auto map = seats.seat_map();
    auto count = [&](seat_status s) {
      return static_cast<uint32_t>(
          std::count(map.statuses.begin(), map.statuses.end(), s));
    };
    EXPECT_EQ(count(seat_status::free), free);
    EXPECT_EQ(count(seat_status::held), held);
    EXPECT_EQ(count(seat_status::booked), booked);
  }
};

std::vector<std::string> seats_of(const caf::error& err) {
  return err.context().get_as<std::vector<std::string>>(0);
}

TEST_F(section_state_test, a_hold_takes_the_named_seats_in_row_order) {
  auto result = seats.hold_seats("alice", {"B-2", "A-1"}, now);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->view.seats, (std::vector<std::string>{"A-1", "B-2"}));
  EXPECT_EQ(result->view.status, hold_status::active);
  EXPECT_EQ(result->view.total_cents, 2000);
  EXPECT_EQ(result->view.expires_at_ms, now + ttl_ms);
  EXPECT_EQ(result->view.hold_id.rfind("hld_3_", 0), 0u);
  ASSERT_TRUE(result->change);
  EXPECT_EQ(result->change->kind, change_kind::hold_created);
  EXPECT_EQ(result->change->customer_id, "alice");
  expect_counts(14, 2, 0);
}

TEST_F(section_state_test, a_conflict_holds_nothing_and_names_the_taken_seats) {
  hold("alice", {"A-2"});
  auto result = seats.hold_seats("bob", {"A-1", "A-2", "A-3"}, now);
  ASSERT_FALSE(result);
  EXPECT_EQ(code_of(result.error()), errc::seats_unavailable);
  EXPECT_EQ(seats_of(result.error()), std::vector<std::string>{"A-2"});
  expect_counts(15, 1, 0);
}

TEST_F(section_state_test, unknown_seats_are_named_and_nothing_is_held) {
  auto result = seats.hold_seats("alice", {"A-1", "B-5", "Z-1", "junk"}, now);
  ASSERT_FALSE(result);
  EXPECT_EQ(code_of(result.error()), errc::unknown_seat);
  EXPECT_EQ(seats_of(result.error()),
            (std::vector<std::string>{"B-5", "Z-1", "junk"}));
  expect_counts(16, 0, 0);
}

TEST_F(section_state_test, release_frees_at_once_and_is_repeatable) {
  auto view = hold("alice", {"A-1", "A-2"});
  auto released = seats.release_hold("alice", slot_of(view.hold_id), now);
  ASSERT_TRUE(released);
  EXPECT_EQ(released->view.status, hold_status::released);
  EXPECT_TRUE(released->change);
  expect_counts(16, 0, 0);
  auto again = seats.release_hold("alice", slot_of(view.hold_id), now);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->change);
  hold("bob", {"A-1"});
}

TEST_F(section_state_test, another_customers_hold_looks_unknown) {
  auto view = hold("alice", {"A-1"});
  auto slot = slot_of(view.hold_id);
  EXPECT_EQ(code_of(seats.get_hold("bob", slot).error()), errc::not_found);
  EXPECT_EQ(code_of(seats.release_hold("bob", slot, now).error()),
            errc::not_found);
  EXPECT_EQ(code_of(seats.book("bob", slot, now).error()), errc::not_found);
  EXPECT_EQ(code_of(seats.get_hold("alice", 999).error()), errc::not_found);
  expect_counts(15, 1, 0);
}

TEST_F(section_state_test, holds_expire_at_their_time_and_not_before) {
  auto view = hold("alice", {"A-1", "A-2"});
  now += ttl_ms - 1;
  seats.expire_due(now);
  EXPECT_TRUE(seats.take_expired().empty());
  expect_counts(14, 2, 0);
  now += 1;
  seats.expire_due(now);
  auto expired = seats.take_expired();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].kind, change_kind::hold_expired);
  EXPECT_EQ(expired[0].seat_indexes.size(), 2u);
  expect_counts(16, 0, 0);
  EXPECT_EQ(seats.get_hold("alice", slot_of(view.hold_id))->status,
            hold_status::expired);
  EXPECT_FALSE(seats.next_expiry());
}

TEST_F(section_state_test,
       an_expired_hold_cannot_be_booked_even_before_the_timer) {
  auto view = hold("alice", {"A-1"});
  now += ttl_ms;
  auto booked = seats.book("alice", slot_of(view.hold_id), now);
  ASSERT_FALSE(booked);
  EXPECT_EQ(code_of(booked.error()), errc::hold_expired);
  EXPECT_EQ(seats.take_expired().size(), 1u);
  expect_counts(16, 0, 0);
}

TEST_F(section_state_test, next_expiry_skips_holds_that_ended_otherwise) {
  auto first = hold("alice", {"A-1"});
  now += 1000;
  hold("bob", {"A-2"});
  ASSERT_TRUE(seats.release_hold("alice", slot_of(first.hold_id), now));
  EXPECT_EQ(seats.next_expiry(), now + ttl_ms);
}

TEST_F(section_state_test, booking_keeps_the_seats_and_cancelling_frees_them) {
  auto view = hold("alice", {"C-5", "C-6"});
  auto slot = slot_of(view.hold_id);
  auto booked = seats.book("alice", slot, now);
  ASSERT_TRUE(booked);
  EXPECT_EQ(booked->view.status, booking_status::confirmed);
  EXPECT_EQ(booked->view.total_cents, 2000);
  EXPECT_EQ(booked->view.hold_id, view.hold_id);
  expect_counts(14, 0, 2);
  // A booked hold never expires and cannot be released or booked again.
  now += 2 * ttl_ms;
  seats.expire_due(now);
  EXPECT_TRUE(seats.take_expired().empty());
  auto again = seats.book("alice", slot, now);
  EXPECT_EQ(code_of(again.error()), errc::hold_booked);
  EXPECT_EQ(again.error().context().get_as<std::string>(0),
            booked->view.booking_id);
  EXPECT_EQ(code_of(seats.release_hold("alice", slot, now).error()),
            errc::hold_booked);
  EXPECT_EQ(seats.get_hold("alice", slot)->status, hold_status::booked);

  auto cancelled = seats.cancel_booking("alice", slot, now);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->view.status, booking_status::cancelled);
  EXPECT_TRUE(cancelled->change);
  expect_counts(16, 0, 0);
  auto twice = seats.cancel_booking("alice", slot, now);
  ASSERT_TRUE(twice);
  EXPECT_FALSE(twice->change);
  EXPECT_EQ(twice->view.status, booking_status::cancelled);
  EXPECT_EQ(code_of(seats.cancel_booking("bob", slot, now).error()),
            errc::not_found);
}

TEST_F(section_state_test, released_holds_cannot_be_booked) {
  auto view = hold("alice", {"A-1"});
  ASSERT_TRUE(seats.release_hold("alice", slot_of(view.hold_id), now));
  auto booked = seats.book("alice", slot_of(view.hold_id), now);
  EXPECT_EQ(code_of(booked.error()), errc::hold_expired);
}

TEST_F(section_state_test, best_available_takes_an_adjacent_block_front_first) {
  hold("x", {"A-3"}); // row A: 1 2 _ 4 5 6 -> no block of 4
  auto result = seats.hold_best("alice", 3, now);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->view.seats,
            (std::vector<std::string>{"A-4", "A-5", "A-6"}));
  auto block = seats.hold_best("bob", 4, now);
  ASSERT_TRUE(block);
  EXPECT_EQ(block->view.seats,
            (std::vector<std::string>{"B-1", "B-2", "B-3", "B-4"}));
  auto pair = seats.hold_best("carol", 2, now);
  ASSERT_TRUE(pair);
  EXPECT_EQ(pair->view.seats, (std::vector<std::string>{"A-1", "A-2"}));
}

TEST_F(section_state_test, best_available_falls_back_to_the_first_free_seats) {
  // Leave free: A-2, A-5, B-3, C-1..C-6 minus C-2,C-4,C-6 -> no block of 3.
  hold("x",
       {"A-1", "A-3", "A-4", "A-6", "B-1", "B-2", "B-4", "C-2", "C-4", "C-6"});
  auto result = seats.hold_best("alice", 3, now);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->view.seats,
            (std::vector<std::string>{"A-2", "A-5", "B-3"}));
}

TEST_F(section_state_test, best_available_refuses_more_than_is_free) {
  hold("x", {"A-1", "A-2", "A-3", "A-4", "A-5", "A-6", "B-1", "B-2", "B-3",
             "B-4", "C-1", "C-2", "C-3", "C-4"});
  auto result = seats.hold_best("alice", 3, now);
  ASSERT_FALSE(result);
  EXPECT_EQ(code_of(result.error()), errc::insufficient_seats);
  auto two = seats.hold_best("alice", 2, now);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->view.seats, (std::vector<std::string>{"C-5", "C-6"}));
  expect_counts(0, 16, 0);
}

TEST(section_state_recovery, restored_holds_and_bookings_own_their_seats) {
  using snapshot = section_state::hold_snapshot;
  section_state seats{small_layout(), ttl_ms};
  std::vector<snapshot> recorded;
  // Slot 1 is missing (a write the store refused); order does not matter.
  recorded.push_back(
      {3, "dan", {15}, hold_status::active, start_ms + 5, 0, false});
  recorded.push_back({0,
                      "ann",
                      {0, 1},
                      hold_status::booked,
                      start_ms - 10,
                      start_ms - 20,
                      false});
  recorded.push_back({2,
                      "bob",
                      {2},
                      hold_status::active,
                      start_ms - 1,
                      0,
                      false}); // expired while the node was down
  recorded.push_back({4, "eve", {6}, hold_status::booked, 0, start_ms, true});
  recorded.push_back(
      {5, "fay", {7}, hold_status::released, start_ms, 0, false});
  seats.restore(recorded);
  auto counts = seats.counts();
  EXPECT_EQ(counts.free, 12u);
  EXPECT_EQ(counts.held, 2u);
  EXPECT_EQ(counts.booked, 2u);

  seats.expire_due(start_ms);
  auto expired = seats.take_expired();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].slot, 2u);
  EXPECT_EQ(seats.counts().free, 13u);
  EXPECT_EQ(seats.next_expiry(), start_ms + 5);

  EXPECT_EQ(seats.get_hold("ann", 0)->status, hold_status::booked);
  EXPECT_EQ(seats.get_booking("eve", 4)->status, booking_status::cancelled);
  EXPECT_EQ(code_of(seats.get_hold("ann", 1).error()), errc::not_found);
  EXPECT_EQ(code_of(seats.get_hold("", 1).error()), errc::not_found);
  auto taken = seats.hold_seats("zed", {"A-1", "A-3"}, start_ms);
  ASSERT_FALSE(taken);
  EXPECT_EQ(seats_of(taken.error()), std::vector<std::string>{"A-1"});
  auto fresh = seats.hold_seats("zed", {"A-3", "B-1", "B-2"}, start_ms);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->view.hold_id, make_hold_id({3, 6, fnv1a_64("concert")}));
  auto map = seats.seat_map();
  EXPECT_EQ(map.statuses[0], seat_status::booked);
  EXPECT_EQ(map.statuses[15], seat_status::held);
  EXPECT_EQ(map.statuses[6], seat_status::held);
  EXPECT_EQ(map.statuses[7], seat_status::held);
}

// Hold records: ended holds are forgotten after the retention (issue 19:
// before, every hold ever made stayed in memory).
constexpr millis retention_ms = 1000;

class section_retention_test : public section_state_test {
protected:
  section_retention_test() : kept{small_layout(), ttl_ms, retention_ms} {}
  section_state kept;

  uint32_t hold_one(const std::string& customer, const std::string& seat) {
    auto result = kept.hold_seats(customer, {seat}, now);
    EXPECT_TRUE(result) << to_string(result.error());
    return result ? slot_of(result->view.hold_id) : 0;
  }
};

TEST_F(section_retention_test, an_ended_hold_is_forgotten_after_the_retention) {
  auto slot = hold_one("alice", "A-1");
  ASSERT_TRUE(kept.release_hold("alice", slot, now));
  now += retention_ms - 1;
  kept.expire_due(now);
  EXPECT_FALSE(kept.forgotten(slot));
  EXPECT_EQ(kept.get_hold("alice", slot)->status, hold_status::released);
  EXPECT_EQ(kept.records_in_memory(), 1u);
  now += 1;
  kept.expire_due(now);
  EXPECT_TRUE(kept.forgotten(slot));
  EXPECT_EQ(kept.records_in_memory(), 0u);
  // Forgotten is not unknown: every operation here answers 404, and the
  // owner asks the store instead (actors/hold_record.hpp).
  EXPECT_EQ(code_of(kept.get_hold("alice", slot).error()), errc::not_found);
  EXPECT_FALSE(kept.forgotten(slot + 1)); // not numbered yet
  // Numbering goes on: a hold id is never reused.
  EXPECT_EQ(hold_one("bob", "A-1"), slot + 1);
}

TEST_F(section_retention_test, expired_holds_are_forgotten_too_bookings_stay) {
  auto expiring = hold_one("alice", "A-1");
  auto booked = hold_one("bob", "B-1");
  ASSERT_TRUE(kept.book("bob", booked, now));
  auto cancelled = hold_one("carl", "C-1");
  ASSERT_TRUE(kept.book("carl", cancelled, now));
  ASSERT_TRUE(kept.cancel_booking("carl", cancelled, now));
  now += ttl_ms + retention_ms;
  kept.expire_due(now);
  EXPECT_EQ(kept.take_expired().size(), 1u);
  EXPECT_FALSE(kept.forgotten(expiring)); // expired only now
  now += retention_ms;
  kept.expire_due(now);
  EXPECT_TRUE(kept.forgotten(expiring));
  EXPECT_EQ(kept.get_booking("bob", booked)->status, booking_status::confirmed);
  EXPECT_EQ(kept.get_booking("carl", cancelled)->status,
            booking_status::cancelled);
  EXPECT_EQ(kept.records_in_memory(), 2u);
  EXPECT_EQ(kept.bookings().size(), 2u);
  EXPECT_EQ(kept.counts().booked, 1u);
}

TEST_F(section_retention_test, records_level_off_under_endless_churn) {
  // A booking early on, then one hold and one release every 10 ms for 100 s
  // of section time: memory must hold the booking and about a retention's
  // worth of ended holds, not 10,000 records.
  auto booked = hold_one("bob", "C-6");
  ASSERT_TRUE(kept.book("bob", booked, now));
  std::size_t most = 0;
  for (int i = 0; i < 10'000; ++i) {
    auto slot = hold_one("alice", "A-1");
    ASSERT_TRUE(kept.release_hold("alice", slot, now));
    now += 10;
    kept.expire_due(now);
    most = std::max(most, kept.records_in_memory());
  }
  EXPECT_LE(most, 1u + retention_ms / 10 + 1);
  EXPECT_GE(most, retention_ms / 10);
  EXPECT_EQ(kept.get_booking("bob", booked)->status, booking_status::confirmed);
  EXPECT_EQ(kept.next_slot(), 10'001u);
  auto counts = kept.counts();
  EXPECT_EQ(counts.free + counts.held + counts.booked, 16u);
}

TEST_F(section_retention_test, an_active_hold_does_not_keep_later_ones) {
  // The window of slots cannot move past an active hold, but the records
  // of the holds after it that ended are forgotten all the same.
  auto lasting = hold_one("alice", "A-1");
  for (int i = 0; i < 50; ++i) {
    auto slot = hold_one("bob", "B-1");
    ASSERT_TRUE(kept.release_hold("bob", slot, now));
  }
  now += retention_ms;
  kept.expire_due(now);
  EXPECT_EQ(kept.records_in_memory(), 1u);
  EXPECT_TRUE(kept.forgotten(lasting + 1));
  EXPECT_EQ(kept.get_hold("alice", lasting)->status, hold_status::active);
  now += ttl_ms;
  kept.expire_due(now); // it expires: the retention starts now
  EXPECT_EQ(kept.records_in_memory(), 1u);
  now += retention_ms;
  kept.expire_due(now);
  EXPECT_EQ(kept.records_in_memory(), 0u);
  EXPECT_TRUE(kept.forgotten(lasting));
}

TEST(section_state_limits, a_customer_has_at_most_so_many_active_holds) {
  section_def def{"wide", "Wide", 100, {{"A", 300}}};
  section_state seats{section_layout::make("concert", def, 1), ttl_ms};
  auto hold = [&](const std::string& customer, int seat) {
    return seats.hold_seats(customer, {"A-" + std::to_string(seat)}, start_ms);
  };
  std::vector<uint32_t> slots;
  for (std::size_t i = 0; i < limits::active_holds_per_customer_max; ++i) {
    auto held = hold("alice", static_cast<int>(i) + 1);
    ASSERT_TRUE(held) << i;
    slots.push_back(parse_hold_id(held->view.hold_id)->slot);
  }
  auto refused = hold("alice", 250);
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), errc::limit_exceeded);
  EXPECT_EQ(seats.counts().held, limits::active_holds_per_customer_max);
  EXPECT_TRUE(hold("bob", 250)); // per customer, not per section
  // A hold that ends, by release or booking, makes room again.
  ASSERT_TRUE(seats.release_hold("alice", slots[0], start_ms));
  EXPECT_TRUE(hold("alice", 251));
  EXPECT_FALSE(hold("alice", 252));
  ASSERT_TRUE(seats.book("alice", slots[1], start_ms));
  EXPECT_TRUE(hold("alice", 252));
  EXPECT_FALSE(hold("alice", 253));
  // And so does expiry.
  seats.expire_due(start_ms + ttl_ms);
  EXPECT_TRUE(hold("alice", 253));
}

TEST(section_state_recovery, restore_keeps_live_holds_and_numbers_on) {
  section_state seats{small_layout(), ttl_ms, retention_ms};
  // What recovery reads: the live holds and the last one (slot 7, ended).
  seats.restore({{2, "ann", {0}, hold_status::active, start_ms + 5, 0, false},
                 {4, "bob", {1}, hold_status::booked, 0, start_ms, false},
                 {7, "cat", {2}, hold_status::released, start_ms, 0, false}});
  EXPECT_EQ(seats.records_in_memory(), 2u);
  EXPECT_EQ(seats.next_slot(), 8u);
  for (uint32_t slot : {0u, 1u, 3u, 5u, 6u, 7u})
    EXPECT_TRUE(seats.forgotten(slot)) << slot;
  EXPECT_FALSE(seats.forgotten(2));
  EXPECT_FALSE(seats.forgotten(4));
  EXPECT_EQ(seats.counts().free, 14u);
  // The restored active hold ends and is forgotten like any other.
  ASSERT_TRUE(seats.release_hold("ann", 2, start_ms));
  seats.expire_due(start_ms + retention_ms);
  EXPECT_TRUE(seats.forgotten(2));
  EXPECT_EQ(seats.get_booking("bob", 4)->status, booking_status::confirmed);
  auto next = seats.hold_seats("dan", {"A-3"}, start_ms + retention_ms);
  ASSERT_TRUE(next);
  EXPECT_EQ(parse_hold_id(next->view.hold_id)->slot, 8u);
}

TEST(section_state_capacity, a_million_seats_take_about_four_bytes_each) {
  section_def def{"huge", "Huge", 100, {}};
  for (int r = 0; r < 1000; ++r) {
    // Appending, not operator+: GCC 12 warns falsely (-Wrestrict) on
    // "literal" + std::string at -O3.
    std::string label{"R"};
    label.append(std::to_string(r));
    def.rows.push_back({label, 1000});
  }
  section_state seats{section_layout::make("e", def, 0), ttl_ms};
  EXPECT_EQ(seats.counts().free, 1'000'000u);
  auto bytes_per_seat =
      static_cast<double>(seats.seat_state_bytes()) / 1'000'000.0;
  EXPECT_LT(bytes_per_seat, 4.1);
  auto result = seats.hold_best("alice", 50, start_ms);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->view.seats.front(), "R0-1");
  EXPECT_EQ(result->view.seats.back(), "R0-50");
}

} // namespace
} // namespace rsv::actors
