// The outbox records as consumers read them (docs/events.md): valid JSON
// whatever the names contain, the id and key in front of each line.

#include "persistence/outbox.hpp"
#include "support/ids.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace rsv::persistence {
namespace {

/// Hold and booking ids end in their event's hash (core/ids.hpp).
const std::string gala_hash = test_support::id_hash_suffix("gala");

TEST(outbox_records, names_with_quotes_and_control_characters_stay_valid_json) {
  event_def def;
  def.id = "gala";
  def.name = "Say \"hi\"\\ \n\t\x01 — été";
  def.starts_at_ms = 1'800'000'000'000;
  def.sections.push_back({"stalls", "Stalls \"A\"", 4000, {{"A", 10}}});
  std::string payload;
  render_outbox_record(def, 1'800'000'000'123, payload);
  auto lines = expand_outbox_payload(payload);
  auto records = split_outbox_records(lines);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id, "evt_gala:event.created");
  EXPECT_EQ(records[0].key, "gala");
  auto value = nlohmann::json::parse(records[0].value);
  EXPECT_EQ(value["name"], def.name);
  EXPECT_EQ(value["occurred_at"], "2027-01-15T08:00:00.123Z");
  EXPECT_EQ(value["sections"][0]["name"], "Stalls \"A\"");
  EXPECT_EQ(value["sections"][0]["capacity"], 10);
}

TEST(outbox_records, a_booking_carries_its_hold_seats_and_amount) {
  section_def section{"stalls", "Stalls", 4000, {{"A", 10}, {"B", 10}}};
  auto layout = section_layout::make("gala", section, 0x2a);
  seat_change change;
  change.kind = change_kind::booking_confirmed;
  change.event_id = "gala";
  change.section_id = "stalls";
  change.section_no = 0x2a;
  change.slot = 0x10;
  change.customer_id = "cus_1";
  change.seat_indexes = {0, 11};
  change.at_ms = 1'800'000'000'000;
  change.amount_cents = 8000;
  std::string payload;
  render_outbox_record(change, *layout, payload);
  change.kind = change_kind::booking_cancelled;
  render_outbox_record(change, *layout, payload);
  auto lines = expand_outbox_payload(payload);
  auto records = split_outbox_records(lines);
  ASSERT_EQ(records.size(), 2u);
  auto value = nlohmann::json::parse(records[0].value);
  EXPECT_EQ(value["id"], "bkg_2a_10" + gala_hash + ":booking.confirmed");
  EXPECT_EQ(records[0].id, "bkg_2a_10" + gala_hash + ":booking.confirmed");
  EXPECT_EQ(records[0].key, "gala/stalls");
  EXPECT_EQ(value["booking_id"], "bkg_2a_10" + gala_hash);
  EXPECT_EQ(value["hold_id"], "hld_2a_10" + gala_hash);
  EXPECT_EQ(value["seats"], nlohmann::json::array({"A-1", "B-2"}));
  EXPECT_EQ(value["total_cents"], 8000);
  EXPECT_EQ(value["type"], "booking.confirmed");
  EXPECT_FALSE(value.contains("expires_at"));
  EXPECT_EQ(records[1].id, "bkg_2a_10" + gala_hash + ":booking.cancelled");
}

seat_change hold_of(std::string customer) {
  seat_change change;
  change.kind = change_kind::hold_created;
  change.event_id = "gala";
  change.section_id = "stalls";
  change.section_no = 3;
  change.slot = 7;
  change.customer_id = std::move(customer);
  change.seat_indexes = {0, 1};
  change.at_ms = 1'800'000'000'000;
  change.expires_at_ms = 1'800'000'600'000;
  change.amount_cents = 8000;
  return change;
}

// The writer stores a change as a short line (the outbox's bytes are WAL
// in the booking's commit); consumers still get the full record.
TEST(outbox_records, a_change_is_stored_short_and_expands_to_its_record) {
  section_def section{"stalls", "Stalls", 4000, {{"A", 10}}};
  auto layout = section_layout::make("gala", section, 3);
  std::string stored;
  render_outbox_record(hold_of("cus_1"), *layout, stored);
  auto lines = expand_outbox_payload(stored);
  auto records = split_outbox_records(lines);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_LT(stored.size() * 3, lines.size()) << stored;
  EXPECT_EQ(records[0].id, "hld_3_7" + gala_hash + ":hold.created");
  EXPECT_EQ(records[0].key, "gala/stalls");
  auto value = nlohmann::json::parse(records[0].value);
  EXPECT_EQ(value["customer_id"], "cus_1");
  EXPECT_EQ(value["seats"], nlohmann::json::array({"A-1", "A-2"}));
  EXPECT_EQ(value["expires_at"], "2027-01-15T08:10:00Z");
  EXPECT_EQ(value["occurred_at"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(value["total_cents"], 8000);
  // Expanding again changes nothing: record lines pass through.
  EXPECT_EQ(expand_outbox_payload(lines), lines);
}

// Names a stored line cannot carry (its separators) are stored as the
// record itself, and come out the same as any other record.
TEST(outbox_records, names_with_separators_are_stored_as_records) {
  section_def section{"stalls", "Stalls", 4000, {{"A,B", 10}}};
  auto layout = section_layout::make("gala", section, 3);
  std::string stored;
  render_outbox_record(hold_of("cus\t1"), *layout, stored);
  render_outbox_record(hold_of("cus_2"), *layout, stored);
  auto lines = expand_outbox_payload(stored);
  auto records = split_outbox_records(lines);
  ASSERT_EQ(records.size(), 2u);
  auto first = nlohmann::json::parse(records[0].value);
  EXPECT_EQ(first["customer_id"], "cus\t1");
  EXPECT_EQ(first["seats"], nlohmann::json::array({"A,B-1", "A,B-2"}));
  auto second = nlohmann::json::parse(records[1].value);
  EXPECT_EQ(second["seats"], nlohmann::json::array({"A,B-1", "A,B-2"}));
}

// A stored line that does not parse is dropped, not sent as garbage.
TEST(outbox_records, a_broken_stored_line_is_skipped) {
  auto lines = expand_outbox_payload("~1\t0\tgala\tstalls\tx\n");
  EXPECT_TRUE(split_outbox_records(lines).empty()) << lines;
}

} // namespace
} // namespace rsv::persistence
