// The journal's row format without a database (persistence/journal_codec):
// every write comes back as it went in, and a row that was damaged on the
// way is refused with a reason, never decoded into other writes.

#include "core/errc.hpp"
#include "persistence/journal_codec.hpp"

#include <gtest/gtest.h>

namespace rsv::persistence::journal {
namespace {

using namespace std::string_literals;

std::shared_ptr<const idempotency_record> answer(std::string key) {
  idempotency_record record;
  record.customer_id = "cus_7";
  record.key = std::move(key);
  record.fingerprint = "9f86d081884c7d65";
  record.response.status = 201;
  record.response.body = R"({"hold_id":"hld_3_17","seats":["A-1"]})";
  record.response.location = "/v1/holds/hld_3_17";
  record.created_at_ms = 1'800'000'000'123;
  return std::make_shared<const idempotency_record>(std::move(record));
}

seat_change change(change_kind kind, uint32_t slot) {
  seat_change c;
  c.kind = kind;
  c.section_no = 3;
  c.slot = slot;
  c.customer_id = "cus_7";
  // Out of order and far apart, as a best-available choice may give them.
  c.seat_indexes = {41, 40, 7, 999'999, 0};
  c.at_ms = 1'800'000'000'456;
  c.expires_at_ms = 1'800'000'600'456;
  c.amount_cents = kind == change_kind::booking_confirmed ? 125'000 : 0;
  c.fence = {17, 4'294'967'301};
  return c;
}

void expect_same(const idempotency_record& a, const idempotency_record& b) {
  EXPECT_EQ(a.customer_id, b.customer_id);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.response.status, b.response.status);
  EXPECT_EQ(a.response.body, b.response.body);
  EXPECT_EQ(a.response.location, b.response.location);
  EXPECT_EQ(a.created_at_ms, b.created_at_ms);
}

void expect_same(const seat_change& a, const seat_change& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.section_no, b.section_no);
  EXPECT_EQ(a.slot, b.slot);
  EXPECT_EQ(a.customer_id, b.customer_id);
  EXPECT_EQ(a.seat_indexes, b.seat_indexes);
  EXPECT_EQ(a.at_ms, b.at_ms);
  EXPECT_EQ(a.expires_at_ms, b.expires_at_ms);
  EXPECT_EQ(a.amount_cents, b.amount_cents);
  EXPECT_EQ(a.fence, b.fence);
  ASSERT_EQ(a.idempotency != nullptr, b.idempotency != nullptr);
  if (a.idempotency) expect_same(*a.idempotency, *b.idempotency);
}

event_created gala(bool with_options) {
  event_created event;
  event.def.id = "gala-2027";
  event.def.name = "Gala \"night\" — été";
  event.def.starts_at_ms = 1'830'000'000'000;
  event.def.hold_ttl_seconds = 600;
  if (with_options) {
    event.def.max_seats_per_customer = 6;
    event.def.waiting_room = waiting_room_def{true, 250};
  }
  event.def.sections.push_back(
      {"stalls", "Stalls", 12'500, {{"A", 30}, {"B", 31}}});
  event.def.sections.push_back({"balcony", "Balcony", 0, {{"AA", 1}}});
  event.section_nos = {3, 4};
  event.fence = {5, 2};
  event.at_ms = 1'800'000'000'000;
  return event;
}

void expect_same(const event_created& a, const event_created& b) {
  EXPECT_EQ(a.def.id, b.def.id);
  EXPECT_EQ(a.def.name, b.def.name);
  EXPECT_EQ(a.def.starts_at_ms, b.def.starts_at_ms);
  EXPECT_EQ(a.def.hold_ttl_seconds, b.def.hold_ttl_seconds);
  EXPECT_EQ(a.def.max_seats_per_customer, b.def.max_seats_per_customer);
  ASSERT_EQ(a.def.waiting_room.has_value(), b.def.waiting_room.has_value());
  if (a.def.waiting_room) {
    EXPECT_EQ(a.def.waiting_room->enabled, b.def.waiting_room->enabled);
    EXPECT_EQ(a.def.waiting_room->admit_per_second,
              b.def.waiting_room->admit_per_second);
  }
  ASSERT_EQ(a.def.sections.size(), b.def.sections.size());
  for (std::size_t i = 0; i < a.def.sections.size(); ++i) {
    const auto& x = a.def.sections[i];
    const auto& y = b.def.sections[i];
    EXPECT_EQ(x.id, y.id);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.price_cents, y.price_cents);
    ASSERT_EQ(x.rows.size(), y.rows.size());
    for (std::size_t r = 0; r < x.rows.size(); ++r) {
      EXPECT_EQ(x.rows[r].label, y.rows[r].label);
      EXPECT_EQ(x.rows[r].seats, y.rows[r].seats);
    }
  }
  EXPECT_EQ(a.section_nos, b.section_nos);
  EXPECT_EQ(a.fence, b.fence);
  EXPECT_EQ(a.at_ms, b.at_ms);
}

/// A batch with every kind of entry, and the row it encodes to.
struct sample {
  std::vector<entry> entries;
  std::string row;
};

sample every_kind() {
  sample s;
  s.entries.emplace_back(gala(true));
  s.entries.emplace_back(gala(false));
  for (auto kind : {change_kind::hold_created, change_kind::hold_released,
                    change_kind::hold_expired, change_kind::booking_confirmed,
                    change_kind::booking_cancelled}) {
    s.entries.emplace_back(change(kind, 17));
    auto with_answer = change(kind, 18);
    with_answer.idempotency = answer("retry-" + std::string{to_string(kind)});
    s.entries.emplace_back(std::move(with_answer));
  }
  s.entries.emplace_back(*answer("a 409 kept for its key"));
  encoder out;
  for (const auto& e : s.entries)
    std::visit([&](const auto& write) { out.add(write); }, e);
  EXPECT_EQ(out.size(), s.entries.size());
  s.row = out.finish();
  EXPECT_EQ(out.size(), 0u) << "finish leaves the encoder empty";
  return s;
}

std::string error_of(std::string_view row) {
  auto decoded = decode(row);
  if (decoded) return {};
  EXPECT_EQ(code_of(decoded.error()), errc::validation_failed);
  return describe(decoded.error());
}

/// A row with a valid checksum around `content` (header included): what a
/// writer with a bug would store, as opposed to bytes damaged later.
std::string sealed(std::string content) {
  auto crc = crc32c(content);
  for (int i = 0; i < 4; ++i)
    content += static_cast<char>((crc >> (8 * i)) & 0xff);
  return content;
}

TEST(journal_codec, every_kind_of_write_comes_back_in_order) {
  auto s = every_kind();
  auto decoded = decode(s.row);
  ASSERT_TRUE(decoded) << describe(decoded.error());
  ASSERT_EQ(decoded->size(), s.entries.size());
  for (std::size_t i = 0; i < s.entries.size(); ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    ASSERT_EQ((*decoded)[i].index(), s.entries[i].index());
    std::visit(
        [&](const auto& want) {
          using kind = std::decay_t<decltype(want)>;
          expect_same(want, std::get<kind>((*decoded)[i]));
        },
        s.entries[i]);
  }
}

TEST(journal_codec, an_empty_batch_is_a_row_of_nothing) {
  auto row = encoder{}.finish();
  auto decoded = decode(row);
  ASSERT_TRUE(decoded) << describe(decoded.error());
  EXPECT_TRUE(decoded->empty());
}

TEST(journal_codec, extreme_values_survive) {
  auto c = change(change_kind::hold_created, 4'294'967'295u);
  c.section_no = 4'294'967'295u;
  c.seat_indexes = {4'294'967'295u, 0, 4'294'967'295u};
  c.at_ms = -1;
  c.expires_at_ms = std::numeric_limits<int64_t>::max();
  c.amount_cents = std::numeric_limits<int64_t>::min();
  c.fence = {4'294'967'295u, std::numeric_limits<uint64_t>::max()};
  encoder out;
  out.add(c);
  auto decoded = decode(out.finish());
  ASSERT_TRUE(decoded) << describe(decoded.error());
  expect_same(c, std::get<seat_change>(decoded->at(0)));
}

TEST(journal_codec, a_hold_costs_a_few_dozen_bytes) {
  // What makes one journal row per batch cheap: a four-seat hold is about
  // the size of its customer id and four seat numbers, not of its SQL.
  auto c = change(change_kind::hold_created, 1234);
  c.customer_id = "cus_01J9ZQ3K5T";
  c.seat_indexes = {120, 121, 122, 123};
  c.fence = {};
  encoder out;
  out.add(c);
  auto row = out.finish();
  EXPECT_LE(row.size(), 60u) << row.size() << " bytes";
}

TEST(journal_codec, any_damaged_byte_is_detected) {
  auto s = every_kind();
  for (std::size_t i = 0; i < s.row.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      auto damaged = s.row;
      damaged[i] = static_cast<char>(damaged[i] ^ mask);
      auto error = error_of(damaged);
      ASSERT_FALSE(error.empty()) << "byte " << i << " ^ " << int{mask};
      EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
    }
  }
}

TEST(journal_codec, any_truncation_is_detected) {
  auto s = every_kind();
  for (std::size_t size = 0; size < s.row.size(); ++size) {
    auto error = error_of(std::string_view{s.row}.substr(0, size));
    ASSERT_FALSE(error.empty()) << "truncated to " << size << " bytes";
  }
}

TEST(journal_codec, bytes_that_pass_the_checksum_are_still_checked) {
  auto header = "RSVJ\x01"s;
  auto expect_refused = [](const std::string& row, const std::string& why) {
    auto error = error_of(sealed(row));
    EXPECT_NE(error.find(why), std::string::npos) << error;
  };
  expect_refused(header + "\x01\x09"s,
                 "entry 1, which starts at byte 6: unknown entry tag 9");
  // An entry count far beyond what the row holds is refused before anything
  // is reserved for it.
  expect_refused(header + "\xff\xff\xff\xff\x0f"s, "entry count out of range");
  // A string longer than the rest of the row.
  expect_refused(header + "\x01\x06\x7f"s, "string length out of range");
  // A status that is not an HTTP status.
  expect_refused(header + "\x01\x06\x00\x00\x00\xe8\x07"s,
                 "status out of range");
  // Unknown flags on a change.
  expect_refused(header + "\x01\x01\x02"s, "unknown change flags");
  // A varint that does not end within 64 bits.
  expect_refused(header + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"s,
                 "a varint longer than 64 bits");
  // Bytes after the last entry.
  expect_refused(header + "\x00\x00"s,
                 "trailing bytes after the last entry (1)");
  // Another format or version.
  expect_refused("RSVX\x01\x00"s, "bad magic");
  expect_refused("RSVJ\x02\x00"s, "unknown version 2");
}

recorded_hold hold(uint32_t slot, hold_status status, bool cancelled) {
  recorded_hold h;
  h.slot = slot;
  h.customer_id = "cus_" + std::to_string(slot);
  // Out of order and far apart, as a best-available choice may give them.
  h.seats = {41, 40, 7, 999'999, 0};
  h.status = status;
  h.expires_at_ms = 1'800'000'600'456;
  h.booked_at_ms = status == hold_status::booked ? 1'800'000'300'000 : 0;
  h.cancelled = cancelled;
  return h;
}

/// A section with a hold in every state a snapshot keeps, the last one
/// released or expired.
section_snapshot stalls() {
  section_snapshot snapshot;
  snapshot.section_no = 3;
  snapshot.holds = {
      hold(1, hold_status::active, false), hold(2, hold_status::booked, false),
      hold(3, hold_status::booked, true), hold(4, hold_status::released, false),
      hold(5, hold_status::expired, false)};
  snapshot.holds[0].seats = {};
  return snapshot;
}

void expect_same(const section_snapshot& a, const section_snapshot& b) {
  EXPECT_EQ(a.section_no, b.section_no);
  ASSERT_EQ(a.holds.size(), b.holds.size());
  for (std::size_t i = 0; i < a.holds.size(); ++i) {
    SCOPED_TRACE("hold " + std::to_string(i));
    const auto& x = a.holds[i];
    const auto& y = b.holds[i];
    EXPECT_EQ(x.slot, y.slot);
    EXPECT_EQ(x.customer_id, y.customer_id);
    EXPECT_EQ(x.seats, y.seats);
    EXPECT_EQ(x.status, y.status);
    EXPECT_EQ(x.expires_at_ms, y.expires_at_ms);
    EXPECT_EQ(x.booked_at_ms, y.booked_at_ms);
    EXPECT_EQ(x.cancelled, y.cancelled);
  }
}

std::string snapshot_error_of(std::string_view body) {
  auto decoded = decode_snapshot(body);
  if (decoded) return {};
  EXPECT_EQ(code_of(decoded.error()), errc::validation_failed);
  return describe(decoded.error());
}

TEST(journal_codec, crc32c_is_the_castagnoli_checksum) {
  // The check value of CRC-32C (RFC 3720, B.4): so that another tool can
  // verify a row.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(journal_codec, a_snapshot_keeps_every_hold_state_in_order) {
  auto snapshot = stalls();
  auto decoded = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_TRUE(decoded) << describe(decoded.error());
  expect_same(snapshot, *decoded);
}

TEST(journal_codec, a_section_without_holds_is_a_snapshot_of_nothing) {
  section_snapshot snapshot;
  snapshot.section_no = 12;
  auto body = encode_snapshot(snapshot);
  auto decoded = decode_snapshot(body);
  ASSERT_TRUE(decoded) << describe(decoded.error());
  EXPECT_EQ(decoded->section_no, 12u);
  EXPECT_TRUE(decoded->holds.empty());
  EXPECT_EQ(body.size(), 11u) << "header, two one-byte varints, checksum";
}

TEST(journal_codec, extreme_values_survive_a_snapshot) {
  section_snapshot snapshot;
  snapshot.section_no = 4'294'967'295u;
  auto a = hold(4'294'967'295u, hold_status::booked, true);
  a.seats = {4'294'967'295u, 0, 4'294'967'295u};
  a.expires_at_ms = std::numeric_limits<int64_t>::min();
  a.booked_at_ms = std::numeric_limits<int64_t>::max();
  auto b = hold(0, hold_status::expired, false);
  b.customer_id = "";
  b.expires_at_ms = -1;
  b.booked_at_ms = -1'800'000'000'000;
  snapshot.holds = {a, b};
  auto decoded = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_TRUE(decoded) << describe(decoded.error());
  expect_same(snapshot, *decoded);
}

TEST(journal_codec, any_damaged_byte_of_a_snapshot_is_detected) {
  auto body = encode_snapshot(stalls());
  for (std::size_t i = 0; i < body.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      auto damaged = body;
      damaged[i] = static_cast<char>(damaged[i] ^ mask);
      auto error = snapshot_error_of(damaged);
      ASSERT_FALSE(error.empty()) << "byte " << i << " ^ " << int{mask};
      EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
    }
  }
}

TEST(journal_codec, any_truncation_of_a_snapshot_is_detected) {
  auto body = encode_snapshot(stalls());
  for (std::size_t size = 0; size < body.size(); ++size) {
    auto error = snapshot_error_of(std::string_view{body}.substr(0, size));
    ASSERT_FALSE(error.empty()) << "truncated to " << size << " bytes";
  }
}

TEST(journal_codec, a_journal_row_is_not_a_snapshot_nor_a_snapshot_a_row) {
  auto error = snapshot_error_of(every_kind().row);
  EXPECT_NE(error.find("not a section snapshot (bad magic)"), std::string::npos)
      << error;
  error = error_of(encode_snapshot(stalls()));
  EXPECT_NE(error.find("not a journal row (bad magic)"), std::string::npos)
      << error;
}

TEST(journal_codec, snapshot_bytes_that_pass_the_checksum_are_still_checked) {
  auto header = "RSVS\x01"s;
  auto expect_refused = [](const std::string& body, const std::string& why) {
    auto error = snapshot_error_of(sealed(body));
    EXPECT_NE(error.find(why), std::string::npos) << error;
  };
  // One hold: slot 1, "c", no seats, then its status, times and flag.
  auto one_hold = header + "\x03\x01\x01\x01"
                           "c\x00"s;
  ASSERT_TRUE(decode_snapshot(sealed(one_hold + "\x03\x02\x02\x01"s)));
  // Bytes after the last hold.
  expect_refused(one_hold + "\x03\x02\x02\x01\x00"s,
                 "trailing bytes after the last hold (1)");
  expect_refused(header + "\x03\x00\x00"s,
                 "trailing bytes after the last hold (1)");
  // A hold status that hold_status does not have.
  expect_refused(one_hold + "\x04\x02\x02\x01"s,
                 "hold 1, which starts at byte 7: hold status out of range");
  // A cancelled flag that is neither 0 nor 1.
  expect_refused(one_hold + "\x03\x02\x02\x02"s,
                 "a flag that is neither 0 nor 1");
  // A hold whose last seat index runs past the end.
  expect_refused(header + "\x03\x01\x01\x00\x01\x80\x80\x80\x80"s,
                 "hold 1, which starts at byte 7: truncated entry");
  // A hold count far beyond what the body holds is refused before anything
  // is reserved for it; so is one just beyond (a hold takes 7 bytes).
  expect_refused(header + "\x03\xff\xff\xff\xff\x0f"s,
                 "hold count out of range");
  expect_refused(header + "\x03\x01\x00\x00\x00\x00\x00\x00"s,
                 "hold count out of range");
  // A seat count or a customer id longer than the rest of the body.
  expect_refused(header + "\x03\x01\x01\x00\x7f\x00\x00\x00\x00"s,
                 "seat count out of range");
  expect_refused(header + "\x03\x01\x01\x7f\x00\x00\x00\x00\x00"s,
                 "string length out of range");
  // A section number or seat index beyond 32 bits.
  expect_refused(header + "\x80\x80\x80\x80\x10\x00"s,
                 "section number out of range");
  expect_refused(header + "\x03\x01\x01\x00\x01\x80\x80\x80\x80\x10"
                          "\x00\x00\x00\x00"s,
                 "seat index out of range");
  // Another format or version.
  expect_refused("RSVX\x01\x00\x00"s, "bad magic");
  expect_refused("RSVS\x02\x00\x00"s, "unknown version 2");
}

} // namespace
} // namespace rsv::persistence::journal
