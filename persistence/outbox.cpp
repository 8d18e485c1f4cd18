#include "persistence/outbox.hpp"

#include "core/ids.hpp"
#include "core/json_writer.hpp"
#include "core/partition.hpp"

#include <array>
#include <charconv>
#include <spdlog/spdlog.h>

namespace rsv::persistence {

namespace {

/// The record types of docs/events.md, in the order of change_kind.
constexpr auto record_types = names_up_to<change_kind::booking_cancelled>(
    {"hold.created", "hold.released", "hold.expired", "booking.confirmed",
     "booking.cancelled"});

/// A line is `id \t key \t value`: the relay needs the id and the key of
/// every record, and reading them from the front of the line costs less
/// than parsing the JSON. A JSON value never contains a raw tab or newline
/// (control characters are escaped).
void begin_line(std::string_view id, std::string_view key,
                std::string& payload) {
  payload.append(id);
  payload += '\t';
  payload.append(key);
  payload += '\t';
}

} // namespace

namespace {

/// What a change's record says, seats already named: the writer knows the
/// layout, the relay (which renders the JSON) does not.
struct change_fields {
  change_kind kind = change_kind::hold_created;
  std::string_view event_id;
  std::string_view section_id;
  uint32_t section_no = 0;
  uint32_t slot = 0;
  std::string_view customer_id;
  millis at_ms = 0;
  millis expires_at_ms = 0;
  int64_t amount_cents = 0;
  std::vector<std::string_view> seats;
};

/// Appends the record line (`id \t key \t value`) of a change.
void render_record(const change_fields& change, std::string& payload) {
  bool booking = change.kind == change_kind::booking_confirmed ||
                 change.kind == change_kind::booking_cancelled;
  record_ref ref{change.section_no, change.slot, fnv1a_64(change.event_id)};
  auto hold_id = make_hold_id(ref);
  auto booking_id = booking ? make_booking_id(ref) : std::string{};
  // A slot sees each kind of change at most once, so the record id of the
  // change is its hold or booking id and its type.
  const char* type = record_types.name(change.kind);
  auto id = (booking ? booking_id : hold_id) + ':' + type;
  std::string key{change.event_id};
  key += '/';
  key += change.section_id;
  begin_line(id, key, payload);
  {
    json_object_writer value{payload};
    if (booking) value.member("booking_id", booking_id);
    value.member("currency_unit", "cents")
        .member("customer_id", change.customer_id)
        .member("event_id", change.event_id);
    if (change.kind == change_kind::hold_created)
      value.member("expires_at", format_rfc3339(change.expires_at_ms));
    value.member("hold_id", hold_id)
        .member("id", id)
        .member("occurred_at", format_rfc3339(change.at_ms));
    auto& seats = value.value_of("seats");
    seats += '[';
    for (std::size_t i = 0; i < change.seats.size(); ++i) {
      if (i > 0) seats += ',';
      append_json_string(seats, change.seats[i]);
    }
    seats += ']';
    value.member("section_id", change.section_id)
        .member("total_cents", change.amount_cents)
        .member("type", type);
  }
  payload += '\n';
}

/// The stored form of a change is one short line of tab-separated fields
/// that the relay turns into the record line: the JSON is three to four
/// times longer, and PostgreSQL writes every byte of the outbox to its WAL
/// inside the booking's commit, which is what made Kafka cost durable
/// holds/s (docs/benchmarks.md, "Change events"). The line starts with a
/// marker no record id starts with (ids start with a letter).
constexpr std::string_view compact_marker = "~1";
constexpr std::size_t compact_fields = 11; // the marker and ten fields

/// Whether `text` can be a field of a stored line: never a tab or a newline
/// (the separators), and in seat ids never a comma (they are joined by it).
bool plain(std::string_view text, bool seat = false) {
  for (char c : text)
    if (c == '\t' || c == '\n' || (seat && c == ',')) return false;
  return true;
}

template <class Int>
bool parse_int(std::string_view text, Int& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

/// The record line of a stored line; false when it is not one.
bool expand_compact(std::string_view line, std::string& out) {
  std::array<std::string_view, compact_fields> f;
  std::size_t n = 0;
  while (n < compact_fields) {
    auto tab = line.find('\t');
    f[n++] = line.substr(0, tab);
    if (tab == std::string_view::npos) break;
    line.remove_prefix(tab + 1);
  }
  if (n != compact_fields || f[0] != compact_marker) return false;
  change_fields change;
  int kind = 0;
  if (!parse_int(f[1], kind) ||
      kind > static_cast<int>(change_kind::booking_cancelled) || kind < 0 ||
      !parse_int(f[4], change.section_no) || !parse_int(f[5], change.slot) ||
      !parse_int(f[7], change.at_ms) ||
      !parse_int(f[8], change.expires_at_ms) ||
      !parse_int(f[9], change.amount_cents))
    return false;
  change.kind = static_cast<change_kind>(kind);
  change.event_id = f[2];
  change.section_id = f[3];
  change.customer_id = f[6];
  for (auto seats = f[10]; !seats.empty();) {
    auto comma = seats.find(',');
    change.seats.push_back(seats.substr(0, comma));
    seats = comma == std::string_view::npos ? std::string_view{}
                                            : seats.substr(comma + 1);
  }
  render_record(change, out);
  return true;
}

/// The fields of `change`'s record, named as its section names them.
change_fields fields_of(const seat_change& change, std::string_view event_id,
                        std::string_view section_id,
                        const std::vector<std::string>& seat_ids) {
  change_fields fields{change.kind,         event_id,
                       section_id,          change.section_no,
                       change.slot,         change.customer_id,
                       change.at_ms,        change.expires_at_ms,
                       change.amount_cents, {}};
  fields.seats.assign(seat_ids.begin(), seat_ids.end());
  return fields;
}

std::vector<std::string> seat_ids_of(const seat_change& change,
                                     const section_layout& layout) {
  std::vector<std::string> seat_ids;
  seat_ids.reserve(change.seat_indexes.size());
  for (auto index : change.seat_indexes)
    seat_ids.push_back(layout.seat_id(index));
  return seat_ids;
}

} // namespace

void render_record_line(const seat_change& change, const section_layout& layout,
                        std::string& lines) {
  render_record(fields_of(change, layout.event_id, layout.section_id,
                          seat_ids_of(change, layout)),
                lines);
}

void render_outbox_record(const seat_change& change,
                          const section_layout& layout, std::string& payload) {
  auto seat_ids = seat_ids_of(change, layout);
  bool compact = plain(change.event_id) && plain(change.section_id) &&
                 plain(change.customer_id);
  for (const auto& seat_id : seat_ids)
    compact = compact && plain(seat_id, true);
  if (!compact) {
    // Names the stored line cannot carry: store the record line itself.
    render_record(
        fields_of(change, change.event_id, change.section_id, seat_ids),
        payload);
    return;
  }
  payload.append(compact_marker);
  for (auto field :
       {std::to_string(static_cast<int>(change.kind)), change.event_id,
        change.section_id, std::to_string(change.section_no),
        std::to_string(change.slot), change.customer_id,
        std::to_string(change.at_ms), std::to_string(change.expires_at_ms),
        std::to_string(change.amount_cents)}) {
    payload += '\t';
    payload += field;
  }
  payload += '\t';
  for (std::size_t i = 0; i < seat_ids.size(); ++i) {
    if (i > 0) payload += ',';
    payload += seat_ids[i];
  }
  payload += '\n';
}

std::string expand_outbox_payload(std::string_view stored) {
  std::string out;
  out.reserve(stored.size() * 4);
  while (!stored.empty()) {
    auto end = stored.find('\n');
    auto line = stored.substr(0, end);
    stored = end == std::string_view::npos ? std::string_view{}
                                           : stored.substr(end + 1);
    if (line.substr(0, compact_marker.size()) == compact_marker) {
      if (!expand_compact(line, out))
        spdlog::error("outbox: a stored line that is not a change, skipped: {}",
                      line);
      continue;
    }
    out.append(line);
    out += '\n';
  }
  return out;
}

void render_outbox_record(const event_def& def, millis at_ms,
                          std::string& payload) {
  auto id = "evt_" + def.id + ":event.created";
  // An event has no section: its record is keyed by the event alone.
  begin_line(id, def.id, payload);
  {
    json_object_writer value{payload};
    value.member("event_id", def.id)
        .member("id", id)
        .member("name", def.name)
        .member("occurred_at", format_rfc3339(at_ms));
    auto& sections = value.value_of("sections");
    sections += '[';
    for (std::size_t i = 0; i < def.sections.size(); ++i) {
      const auto& section = def.sections[i];
      int64_t seats = 0;
      for (const auto& row : section.rows)
        seats += row.seats;
      if (i > 0) sections += ',';
      json_object_writer item{sections};
      item.member("capacity", seats)
          .member("name", section.name)
          .member("price_cents", section.price_cents)
          .member("section_id", section.id);
    }
    sections += ']';
    value.member("starts_at", format_rfc3339(def.starts_at_ms))
        .member("type", "event.created");
  }
  payload += '\n';
}

std::vector<outbox_record> split_outbox_records(std::string_view payload) {
  std::vector<outbox_record> out;
  while (!payload.empty()) {
    auto end = payload.find('\n');
    auto line = payload.substr(0, end);
    payload = end == std::string_view::npos ? std::string_view{}
                                            : payload.substr(end + 1);
    auto first = line.find('\t');
    if (first == std::string_view::npos) continue;
    auto second = line.find('\t', first + 1);
    if (second == std::string_view::npos) continue;
    out.push_back({line.substr(0, first),
                   line.substr(first + 1, second - first - 1),
                   line.substr(second + 1)});
  }
  return out;
}

} // namespace rsv::persistence
