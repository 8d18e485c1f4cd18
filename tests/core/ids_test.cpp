#include "core/ids.hpp"

#include <cstdio>
#include <ctime>
#include <gtest/gtest.h>
#include <random>
#include <vector>

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

// Against a reference (glibc's timegm over the same fields, minus the
// offset): every offset from -23:59 to +23:59, on dates around leap days,
// year ends and the epoch, and on random dates from 1970 to 2399.
TEST(ids, rfc3339_agrees_with_timegm_for_every_offset) {
  struct civil {
    int year, month, day, hour, minute, second;
  };
  std::vector<civil> dates = {
      {2026, 12, 31, 20, 0, 0}, {2024, 2, 29, 23, 59, 59},
      {2000, 2, 29, 0, 0, 0},   {2100, 3, 1, 12, 30, 15},
      {1970, 1, 1, 0, 0, 0},    {2399, 12, 31, 23, 59, 59}};
  std::mt19937 rng(20261206);
  for (int i = 0; i < 40; ++i) {
    int year = 1970 + static_cast<int>(rng() % 430);
    int month = 1 + static_cast<int>(rng() % 12);
    int day = 1 + static_cast<int>(rng() % 28);
    dates.push_back({year, month, day, static_cast<int>(rng() % 24),
                     static_cast<int>(rng() % 60),
                     static_cast<int>(rng() % 60)});
  }
  int checked = 0;
  for (const auto& d : dates) {
    std::tm fields{};
    fields.tm_year = d.year - 1900;
    fields.tm_mon = d.month - 1;
    fields.tm_mday = d.day;
    fields.tm_hour = d.hour;
    fields.tm_min = d.minute;
    fields.tm_sec = d.second;
    const int64_t as_utc = static_cast<int64_t>(timegm(&fields));
    for (int offset = -(23 * 60 + 59); offset <= 23 * 60 + 59; ++offset) {
      int magnitude = offset < 0 ? -offset : offset;
      char text[40];
      std::snprintf(text, sizeof text,
                    "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", d.year, d.month,
                    d.day, d.hour, d.minute, d.second, offset < 0 ? '-' : '+',
                    magnitude / 60, magnitude % 60);
      auto parsed = parse_rfc3339(text);
      ASSERT_TRUE(parsed) << text;
      ASSERT_EQ(*parsed, (as_utc - int64_t{offset} * 60) * 1000) << text;
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(dates.size()) * (2 * (23 * 60 + 59) + 1));
  // The case found by probing: five hours west of UTC is the next day in
  // UTC, not year -6140.
  EXPECT_EQ(format_rfc3339(*parse_rfc3339("2026-12-31T20:00:00-05:00")),
            "2027-01-01T01:00:00Z");
}

} // namespace
} // namespace rsv
