#include "persistence/journal_codec.hpp"

#include "core/errc.hpp"

#include <array>
#include <limits>
#include <memory>
#include <optional>

namespace rsv::persistence::journal {

namespace {

constexpr uint8_t version = 1;
constexpr std::size_t header_bytes = 5; // magic and version
constexpr std::size_t checksum_bytes = 4;

/// A sealed format: a magic, the version, content, CRC-32C. Rows and
/// snapshots differ in their magic, so that neither decodes as the other.
struct sealed_format {
  std::string_view magic;
  std::string_view name;         // what the bytes are called in messages
  std::string_view noun;         // the same, short
  std::size_t content_bytes_min; // between the header and the checksum
};

// A row has at least its entry count; a snapshot its section number and
// hold count.
constexpr sealed_format row_format{"RSVJ", "journal row", "row", 1};
constexpr sealed_format snapshot_format{"RSVS", "section snapshot", "snapshot",
                                        2};

// The last hold_status a snapshot may hold: the status byte is checked
// against it.
constexpr uint8_t last_hold_status = static_cast<uint8_t>(hold_status::booked);
// The fewest bytes a snapshot's hold takes (slot, customer id length, seat
// count, status, two times, cancelled flag): bounds the hold count.
constexpr std::size_t hold_bytes_min = 7;

// Entry tags. A seat change's tag is its change_kind plus one; the flags
// byte after it says whether an idempotency record follows.
constexpr uint8_t tag_first_change = 1;
constexpr uint8_t tag_last_change =
    tag_first_change + static_cast<uint8_t>(change_kind::booking_cancelled);
constexpr uint8_t tag_idempotency = 6;
constexpr uint8_t tag_event = 7;
constexpr uint8_t flag_idempotency = 1;

constexpr std::array<uint32_t, 256> crc_table = [] {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc >> 1) ^ ((crc & 1) != 0 ? 0x82F63B78u : 0);
    table[i] = crc;
  }
  return table;
}();

uint64_t zigzag(int64_t value) {
  return (static_cast<uint64_t>(value) << 1) ^
         static_cast<uint64_t>(value >> 63);
}

int64_t unzigzag(uint64_t value) {
  return static_cast<int64_t>(value >> 1) ^ -static_cast<int64_t>(value & 1);
}

/// Appends fields to a row.
class sink {
public:
  explicit sink(std::string& out) : out_(out) {}

  void byte(uint8_t value) { out_ += static_cast<char>(value); }
  void flag(bool value) { byte(value ? 1 : 0); }
  void varint(uint64_t value) {
    while (value >= 0x80) {
      byte(static_cast<uint8_t>(value | 0x80));
      value >>= 7;
    }
    byte(static_cast<uint8_t>(value));
  }
  void signed_varint(int64_t value) { varint(zigzag(value)); }
  void text(std::string_view value) {
    varint(value.size());
    out_ += value;
  }
  void fence(const write_fence& value) {
    varint(value.partition);
    varint(value.epoch);
  }

private:
  std::string& out_;
};

/// Reads fields of a row; the first failure sticks, and every read after it
/// returns a zero value, so that decoding an entry reads straight through
/// and checks once.
class source {
public:
  explicit source(std::string_view bytes, std::size_t base)
      : bytes_(bytes), base_(base) {}

  bool failed() const { return error_.has_value(); }
  const std::string& error() const { return *error_; }
  std::size_t remaining() const { return bytes_.size() - at_; }
  std::size_t offset() const { return base_ + at_; }

  void fail(const std::string& why) {
    if (!error_) error_ = why + " at byte " + std::to_string(offset());
  }

  uint8_t byte() {
    if (failed()) return 0;
    if (remaining() == 0) {
      fail("truncated entry");
      return 0;
    }
    return static_cast<uint8_t>(bytes_[at_++]);
  }
  bool flag() {
    auto value = byte();
    if (value > 1) fail("a flag that is neither 0 nor 1");
    return value == 1;
  }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      auto part = byte();
      if (failed()) return 0;
      if (shift == 63 && part > 1) break; // the 64th bit is the last
      value |= static_cast<uint64_t>(part & 0x7f) << shift;
      if ((part & 0x80) == 0) return value;
    }
    fail("a varint longer than 64 bits");
    return 0;
  }
  /// A varint that must be at most `max`.
  uint64_t bounded(uint64_t max, const char* what) {
    auto value = varint();
    if (value > max) fail(std::string{what} + " out of range");
    return failed() ? 0 : value;
  }
  uint32_t u32(const char* what) {
    return static_cast<uint32_t>(
        bounded(std::numeric_limits<uint32_t>::max(), what));
  }
  int64_t signed_varint() { return unzigzag(varint()); }
  /// A count of items that take at least `item_bytes` bytes each: at most
  /// what is left can hold, so that a corrupt count cannot make the reader
  /// reserve memory the row does not have.
  std::size_t count(const char* what, std::size_t item_bytes = 1) {
    // What is left after the count itself, so read it first.
    auto value = varint();
    if (value > remaining() / item_bytes)
      fail(std::string{what} + " out of range");
    return failed() ? 0 : static_cast<std::size_t>(value);
  }
  std::string text() {
    auto size = count("string length");
    if (failed()) return {};
    std::string value{bytes_.substr(at_, size)};
    at_ += size;
    return value;
  }
  write_fence fence() {
    write_fence value;
    value.partition = u32("fence partition");
    value.epoch = varint();
    return value;
  }

private:
  std::string_view bytes_;
  std::size_t base_; // offset of bytes_ within the row, for messages
  std::size_t at_ = 0;
  std::optional<std::string> error_;
};

void put(sink& out, const idempotency_record& record) {
  out.text(record.customer_id);
  out.text(record.key);
  out.text(record.fingerprint);
  out.varint(record.response.status);
  out.text(record.response.body);
  out.text(record.response.location);
  out.signed_varint(record.created_at_ms);
}

idempotency_record get_idempotency(source& in) {
  idempotency_record record;
  record.customer_id = in.text();
  record.key = in.text();
  record.fingerprint = in.text();
  record.response.status = static_cast<unsigned>(in.bounded(999, "status"));
  record.response.body = in.text();
  record.response.location = in.text();
  record.created_at_ms = in.signed_varint();
  return record;
}

seat_change get_change(source& in, uint8_t tag) {
  seat_change change;
  change.kind = static_cast<change_kind>(tag - tag_first_change);
  auto flags = in.byte();
  if ((flags & ~flag_idempotency) != 0) in.fail("unknown change flags");
  change.section_no = in.u32("section number");
  change.slot = in.u32("slot");
  change.customer_id = in.text();
  auto seats = in.count("seat count");
  // Seats are stored as differences from the previous index, so that the
  // usual run of neighbours costs a byte each.
  int64_t previous = 0;
  for (std::size_t i = 0; i < seats && !in.failed(); ++i) {
    constexpr int64_t max_index = std::numeric_limits<uint32_t>::max();
    auto delta = in.signed_varint();
    // Checked before it is added: a corrupt delta may be near the limits
    // of int64_t.
    auto index =
        delta < -max_index || delta > max_index ? -1 : previous + delta;
    if (index < 0 || index > max_index) {
      in.fail("seat index out of range");
      break;
    }
    change.seat_indexes.push_back(static_cast<uint32_t>(index));
    previous = index;
  }
  change.at_ms = in.signed_varint();
  change.expires_at_ms = in.signed_varint();
  change.amount_cents = in.signed_varint();
  change.fence = in.fence();
  if ((flags & flag_idempotency) != 0 && !in.failed())
    change.idempotency =
        std::make_shared<const idempotency_record>(get_idempotency(in));
  return change;
}

event_created get_event(source& in) {
  event_created event;
  auto& def = event.def;
  event.at_ms = in.signed_varint();
  event.fence = in.fence();
  def.id = in.text();
  def.name = in.text();
  def.starts_at_ms = in.signed_varint();
  def.hold_ttl_seconds = in.signed_varint();
  if (in.flag()) def.max_seats_per_customer = in.signed_varint();
  if (in.flag()) {
    waiting_room_def room;
    room.enabled = in.flag();
    room.admit_per_second = in.signed_varint();
    def.waiting_room = room;
  }
  auto sections = in.count("section count");
  for (std::size_t i = 0; i < sections && !in.failed(); ++i) {
    event.section_nos.push_back(in.u32("section number"));
    section_def section;
    section.id = in.text();
    section.name = in.text();
    section.price_cents = in.signed_varint();
    auto rows = in.count("row count");
    for (std::size_t r = 0; r < rows && !in.failed(); ++r) {
      row_def row;
      row.label = in.text();
      row.seats = in.u32("row seats");
      section.rows.push_back(std::move(row));
    }
    def.sections.push_back(std::move(section));
  }
  return event;
}

void put(sink& out, const recorded_hold& hold) {
  out.varint(hold.slot);
  out.text(hold.customer_id);
  out.varint(hold.seats.size());
  for (auto index : hold.seats)
    out.varint(index);
  out.byte(static_cast<uint8_t>(hold.status));
  out.signed_varint(hold.expires_at_ms);
  out.signed_varint(hold.booked_at_ms);
  out.flag(hold.cancelled);
}

recorded_hold get_hold(source& in) {
  recorded_hold hold;
  hold.slot = in.u32("slot");
  hold.customer_id = in.text();
  auto seats = in.count("seat count");
  hold.seats.reserve(seats);
  for (std::size_t i = 0; i < seats && !in.failed(); ++i)
    hold.seats.push_back(in.u32("seat index"));
  auto status = in.byte();
  if (status > last_hold_status) in.fail("hold status out of range");
  hold.status = static_cast<hold_status>(status);
  hold.expires_at_ms = in.signed_varint();
  hold.booked_at_ms = in.signed_varint();
  hold.cancelled = in.flag();
  return hold;
}

void put_u32_le(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i)
    out += static_cast<char>((value >> (8 * i)) & 0xff);
}

uint32_t get_u32_le(std::string_view bytes) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i)
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  return value;
}

caf::error malformed(const sealed_format& format, const std::string& why) {
  return make_error(errc::validation_failed,
                    std::string{format.name} + ": " + why);
}

/// `bytes` without their checksum (header included), or why they are not
/// sealed in `format`.
caf::expected<std::string_view> unseal(std::string_view bytes,
                                       const sealed_format& format) {
  if (bytes.size() < header_bytes + format.content_bytes_min + checksum_bytes)
    return malformed(format,
                     "too short (" + std::to_string(bytes.size()) + " bytes)");
  auto content = bytes.substr(0, bytes.size() - checksum_bytes);
  auto stored = get_u32_le(bytes.substr(content.size()));
  if (auto computed = crc32c(content); computed != stored)
    return malformed(format,
                     "checksum mismatch (stored " + std::to_string(stored) +
                         ", computed " + std::to_string(computed) + "): the " +
                         std::string{format.noun} + " is corrupt or truncated");
  if (content.substr(0, format.magic.size()) != format.magic)
    return malformed(format,
                     "not a " + std::string{format.name} + " (bad magic)");
  if (auto found = static_cast<uint8_t>(content[format.magic.size()]);
      found != version)
    return malformed(format, "unknown version " + std::to_string(found));
  return content;
}

/// `content` (header included) with its checksum after it.
std::string seal(std::string content) {
  put_u32_le(content, crc32c(content));
  return content;
}

} // namespace

uint32_t crc32c(std::string_view bytes) {
  uint32_t crc = 0xffffffffu;
  for (char c : bytes)
    crc = crc_table[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

encoder::encoder() = default;

void encoder::add(const seat_change& change) {
  sink out{body_};
  out.byte(static_cast<uint8_t>(tag_first_change +
                                static_cast<uint8_t>(change.kind)));
  out.byte(change.idempotency ? flag_idempotency : 0);
  out.varint(change.section_no);
  out.varint(change.slot);
  out.text(change.customer_id);
  out.varint(change.seat_indexes.size());
  int64_t previous = 0;
  for (auto index : change.seat_indexes) {
    out.signed_varint(static_cast<int64_t>(index) - previous);
    previous = index;
  }
  out.signed_varint(change.at_ms);
  out.signed_varint(change.expires_at_ms);
  out.signed_varint(change.amount_cents);
  out.fence(change.fence);
  if (change.idempotency) put(out, *change.idempotency);
  ++count_;
}

void encoder::add(const idempotency_record& record) {
  sink out{body_};
  out.byte(tag_idempotency);
  put(out, record);
  ++count_;
}

void encoder::add(const event_created& event) {
  sink out{body_};
  const auto& def = event.def;
  out.byte(tag_event);
  out.signed_varint(event.at_ms);
  out.fence(event.fence);
  out.text(def.id);
  out.text(def.name);
  out.signed_varint(def.starts_at_ms);
  out.signed_varint(def.hold_ttl_seconds);
  out.flag(def.max_seats_per_customer.has_value());
  if (def.max_seats_per_customer)
    out.signed_varint(*def.max_seats_per_customer);
  out.flag(def.waiting_room.has_value());
  if (def.waiting_room) {
    out.flag(def.waiting_room->enabled);
    out.signed_varint(def.waiting_room->admit_per_second);
  }
  out.varint(def.sections.size());
  for (std::size_t i = 0; i < def.sections.size(); ++i) {
    const auto& section = def.sections[i];
    out.varint(i < event.section_nos.size() ? event.section_nos[i] : 0);
    out.text(section.id);
    out.text(section.name);
    out.signed_varint(section.price_cents);
    out.varint(section.rows.size());
    for (const auto& row : section.rows) {
      out.text(row.label);
      out.varint(row.seats);
    }
  }
  ++count_;
}

std::string encoder::finish() {
  std::string row;
  row.reserve(header_bytes + 10 + body_.size() + checksum_bytes);
  row += row_format.magic;
  row += static_cast<char>(version);
  sink{row}.varint(count_);
  row += body_;
  body_.clear();
  count_ = 0;
  return seal(std::move(row));
}

namespace {

/// Reads `count` items with `read_one`, which fails `in` on what it cannot
/// read, and then requires the end of the content. The error names the
/// item (1-based) and the byte where it starts.
template <class ReadOne>
caf::error read_all(source& in, const sealed_format& format, std::size_t count,
                    const char* what, ReadOne&& read_one) {
  std::size_t at = 0; // where the item being read starts
  std::size_t i = 0;
  for (; i < count && !in.failed(); ++i) {
    at = in.offset();
    read_one();
  }
  if (in.failed() && i > 0)
    return malformed(format, std::string{what} + " " + std::to_string(i) +
                                 ", which starts at byte " +
                                 std::to_string(at) + ": " + in.error());
  if (!in.failed() && in.remaining() != 0)
    in.fail(std::string{"trailing bytes after the last "} + what + " (" +
            std::to_string(in.remaining()) + ")");
  if (in.failed()) return malformed(format, in.error());
  return {};
}

} // namespace

caf::expected<std::vector<entry>> decode(std::string_view row) {
  auto content = unseal(row, row_format);
  if (!content) return std::move(content.error());
  source in{content->substr(header_bytes), header_bytes};
  auto count = in.count("entry count");
  std::vector<entry> entries;
  entries.reserve(count);
  auto err = read_all(in, row_format, count, "entry", [&] {
    auto tag = in.byte();
    if (tag >= tag_first_change && tag <= tag_last_change)
      entries.emplace_back(get_change(in, tag));
    else if (tag == tag_idempotency)
      entries.emplace_back(get_idempotency(in));
    else if (tag == tag_event)
      entries.emplace_back(get_event(in));
    else
      in.fail("unknown entry tag " + std::to_string(tag));
  });
  if (err) return err;
  return entries;
}

std::string encode_snapshot(const section_snapshot& snapshot) {
  std::string body;
  body += snapshot_format.magic;
  body += static_cast<char>(version);
  sink out{body};
  out.varint(snapshot.section_no);
  out.varint(snapshot.holds.size());
  for (const auto& hold : snapshot.holds)
    put(out, hold);
  return seal(std::move(body));
}

caf::expected<section_snapshot> decode_snapshot(std::string_view body) {
  auto content = unseal(body, snapshot_format);
  if (!content) return std::move(content.error());
  source in{content->substr(header_bytes), header_bytes};
  section_snapshot snapshot;
  snapshot.section_no = in.u32("section number");
  auto count = in.count("hold count", hold_bytes_min);
  snapshot.holds.reserve(count);
  auto err = read_all(in, snapshot_format, count, "hold",
                      [&] { snapshot.holds.push_back(get_hold(in)); });
  if (err) return err;
  return snapshot;
}

} // namespace rsv::persistence::journal
