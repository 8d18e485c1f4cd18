// The outbox records as consumers read them (docs/events.md): valid JSON
// whatever the names contain, the id and key in front of each line.

#include "persistence/outbox.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace rsv {
namespace {

TEST(outbox_records, names_with_quotes_and_control_characters_stay_valid_json) {
  event_def def;
  def.id = "gala";
  def.name = "Say \"hi\"\\ \n\t\x01 — été";
  def.starts_at_ms = 1'800'000'000'000;
  def.sections.push_back({"stalls", "Stalls \"A\"", 4000, {{"A", 10}}});
  std::string payload;
  render_outbox_record(def, 1'800'000'000'123, payload);
  auto records = split_outbox_records(payload);
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
  auto records = split_outbox_records(payload);
  ASSERT_EQ(records.size(), 2u);
  auto value = nlohmann::json::parse(records[0].value);
  EXPECT_EQ(value["id"], "bkg_2a_10:booking.confirmed");
  EXPECT_EQ(records[0].id, "bkg_2a_10:booking.confirmed");
  EXPECT_EQ(records[0].key, "gala/stalls");
  EXPECT_EQ(value["booking_id"], "bkg_2a_10");
  EXPECT_EQ(value["hold_id"], "hld_2a_10");
  EXPECT_EQ(value["seats"], nlohmann::json::array({"A-1", "B-2"}));
  EXPECT_EQ(value["total_cents"], 8000);
  EXPECT_EQ(value["type"], "booking.confirmed");
  EXPECT_FALSE(value.contains("expires_at"));
  EXPECT_EQ(records[1].id, "bkg_2a_10:booking.cancelled");
}

} // namespace
} // namespace rsv
