#include "core/ids.hpp"

#include <gtest/gtest.h>

namespace rsv {
namespace {

TEST(ids, slugs_follow_the_contract_pattern) {
  EXPECT_TRUE(is_valid_slug("arena-2026-12-31"));
  EXPECT_TRUE(is_valid_slug("a"));
  EXPECT_TRUE(is_valid_slug(std::string(64, 'a')));
  EXPECT_FALSE(is_valid_slug(std::string(65, 'a')));
  EXPECT_FALSE(is_valid_slug(""));
  EXPECT_FALSE(is_valid_slug("-floor"));
  EXPECT_FALSE(is_valid_slug("Floor"));
  EXPECT_FALSE(is_valid_slug("floor_1"));
}

TEST(ids, seat_ids_split_into_row_and_number) {
  auto ref = parse_seat_id("AB12-7");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->row_label, "AB12");
  EXPECT_EQ(ref->number, 7u);
  EXPECT_FALSE(parse_seat_id("A-0"));
  EXPECT_FALSE(parse_seat_id("A-01"));
  EXPECT_FALSE(parse_seat_id("a-1"));
  EXPECT_FALSE(parse_seat_id("ABCDE-1"));
  EXPECT_FALSE(parse_seat_id("A1"));
  EXPECT_FALSE(parse_seat_id("A-"));
  EXPECT_FALSE(parse_seat_id("A-1x"));
}

TEST(ids, hold_and_booking_ids_round_trip_and_reject_other_spellings) {
  auto id = make_hold_id({0x2a, 0x1f});
  EXPECT_EQ(id, "hld_2a_1f");
  auto ref = parse_hold_id(id);
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->section_no, 0x2au);
  EXPECT_EQ(ref->slot, 0x1fu);
  EXPECT_FALSE(parse_hold_id("hld_02a_1f"));
  EXPECT_FALSE(parse_hold_id("bkg_2a_1f"));
  EXPECT_FALSE(parse_hold_id("hld_2a"));
  EXPECT_FALSE(parse_hold_id("hld_2A_1f"));
  EXPECT_FALSE(parse_hold_id("hld_123456789_1"));
  EXPECT_TRUE(parse_booking_id(make_booking_id({1, 2})));
}

TEST(ids, idempotency_keys_are_visible_ascii) {
  EXPECT_TRUE(is_valid_idempotency_key("a"));
  EXPECT_TRUE(is_valid_idempotency_key(std::string(255, '~')));
  EXPECT_FALSE(is_valid_idempotency_key(std::string(256, 'a')));
  EXPECT_FALSE(is_valid_idempotency_key(""));
  EXPECT_FALSE(is_valid_idempotency_key("with space"));
  EXPECT_FALSE(is_valid_idempotency_key("caf\xc3\xa9"));
}

TEST(ids, rfc3339_round_trips_in_utc) {
  auto t = parse_rfc3339("2026-12-31T20:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_rfc3339(*t), "2026-12-31T20:00:00Z");
  EXPECT_EQ(*t, 1798747200000);
  auto offset = parse_rfc3339("2026-12-31T21:30:00.250+01:30");
  ASSERT_TRUE(offset);
  EXPECT_EQ(format_rfc3339(*offset), "2026-12-31T20:00:00.250Z");
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_TRUE(parse_rfc3339("2028-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-12-31 20:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-12-31T20:00:00"));
  EXPECT_FALSE(parse_rfc3339("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-12-31T24:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-12-31T20:00:00Zjunk"));
}

} // namespace
} // namespace rsv
