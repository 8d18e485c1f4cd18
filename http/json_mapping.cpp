#include "http/json_mapping.hpp"

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/json_writer.hpp"
#include "core/limits.hpp"
#include "http/ascii.hpp"
#include "http/problem.hpp"

#include <algorithm>
#include <type_traits>
#include <unordered_set>

namespace rsv::http {

using nlohmann::json;

namespace {

caf::error invalid(const std::string& field, const std::string& why) {
  return make_error(errc::validation_failed, field + ": " + why);
}

std::size_t utf8_length(std::string_view text) {
  std::size_t count = 0;
  for (unsigned char c : text)
    if ((c & 0xC0) != 0x80) ++count;
  return count;
}

caf::expected<std::string> get_string(const json& obj, const char* name,
                                      const std::string& path,
                                      std::size_t chars_min,
                                      std::size_t chars_max) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return invalid(path, "is required");
  if (!it->is_string()) return invalid(path, "must be a string");
  const auto& value = it->get_ref<const std::string&>();
  auto length = utf8_length(value);
  if (length < chars_min || length > chars_max)
    return invalid(path, "must have " + std::to_string(chars_min) + " to " +
                             std::to_string(chars_max) + " characters");
  return value;
}

/// True when `text` (valid UTF-8: the JSON parser checked) has a C0 or C1
/// control character or DEL: invisible, they break logs, terminals and
/// exports.
bool has_control_character(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) return true;
    // U+0080..U+009F are 0xC2 0x80..0x9F in UTF-8.
    if (c == 0xC2 && i + 1 < text.size()) {
      auto next = static_cast<unsigned char>(text[i + 1]);
      if (next >= 0x80 && next <= 0x9F) return true;
    }
  }
  return false;
}

/// A display name: 1 to name_chars_max characters, no control characters.
caf::expected<std::string> get_name(const json& obj, const std::string& path) {
  auto value = get_string(obj, "name", path, 1, limits::name_chars_max);
  if (!value) return value;
  if (has_control_character(*value))
    return invalid(path, "must not contain control characters");
  return value;
}

caf::expected<std::string> get_slug(const json& obj, const char* name,
                                    const std::string& path) {
  auto value = get_string(obj, name, path, 1, 64);
  if (!value) return value;
  if (!is_valid_slug(*value))
    return invalid(path, "must match ^[a-z0-9][a-z0-9-]{0,63}$");
  return value;
}

/// An integer in [min, max]; `absent` when the member is missing or null.
caf::expected<int64_t> get_int(const json& obj, const char* name,
                               const std::string& path, int64_t min,
                               int64_t max,
                               std::optional<int64_t> absent = std::nullopt) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) {
    if (absent) return *absent;
    return invalid(path, "is required");
  }
  auto out_of_range = [&] {
    return invalid(path, "must be an integer from " + std::to_string(min) +
                             " to " + std::to_string(max));
  };
  if (it->is_number_unsigned()) {
    auto value = it->get<uint64_t>();
    if (value > static_cast<uint64_t>(max) || static_cast<int64_t>(value) < min)
      return out_of_range();
    return static_cast<int64_t>(value);
  }
  if (!it->is_number_integer()) return out_of_range();
  auto value = it->get<int64_t>();
  if (value < min || value > max) return out_of_range();
  return value;
}

caf::error require_object(const json& body) {
  if (!body.is_object()) return invalid("body", "must be a JSON object");
  return {};
}

std::string normalise_email(std::string email) {
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
  };
  while (!email.empty() && is_space(email.front()))
    email.erase(email.begin());
  while (!email.empty() && is_space(email.back()))
    email.pop_back();
  return ascii_lowercase(email);
}

bool is_plausible_email(const std::string& email) {
  if (email.size() > limits::email_bytes_max) return false;
  auto at = email.find('@');
  if (at == std::string::npos || at == 0 ||
      email.find('@', at + 1) != std::string::npos)
    return false;
  auto domain = email.substr(at + 1);
  auto dot = domain.find('.');
  if (dot == std::string::npos || dot == 0 || domain.back() == '.')
    return false;
  for (unsigned char c : email)
    if (c <= 0x20 || c == 0x7f) return false;
  return true;
}

} // namespace

// Events are read far more than anything else during an on-sale; building
// an nlohmann tree per read cost more than everything else together (see
// docs/benchmarks.md), so events are rendered directly.
std::string render_event(const actors::event_entry& event,
                         const std::vector<seat_counts>* counts_from) {
  const auto& def = event.def;
  std::string out;
  out.reserve(256 + event.sections.size() * 128);
  {
    json_object_writer object{out};
    object.member("id", def.id)
        .member("name", def.name)
        .member("starts_at", format_rfc3339(def.starts_at_ms))
        .member("hold_ttl_seconds", def.hold_ttl_seconds);
    if (def.max_seats_per_customer)
      object.member("max_seats_per_customer", *def.max_seats_per_customer);
    else
      object.raw("max_seats_per_customer", "null");
    if (def.waiting_room)
      json_object_writer{object.value_of("waiting_room")}
          .raw("enabled", def.waiting_room->enabled ? "true" : "false")
          .member("admit_per_second", def.waiting_room->admit_per_second);
    auto& sections = object.value_of("sections");
    sections += '[';
    for (std::size_t i = 0; i < event.sections.size(); ++i) {
      const auto& layout = *event.sections[i]->layout;
      auto counts = counts_from && i < counts_from->size()
                        ? (*counts_from)[i]
                        : event.sections[i]->counts();
      if (i > 0) sections += ',';
      json_object_writer{sections}
          .member("id", layout.section_id)
          .member("name", layout.name)
          .member("price_cents", layout.price_cents)
          .member("seats_total", layout.seat_count())
          .member("free", counts.free)
          .member("held", counts.held)
          .member("booked", counts.booked);
    }
    sections += ']';
  }
  return out;
}

std::string render_events(const actors::directory_snapshot& snapshot) {
  std::vector<event_summary> events;
  events.reserve(snapshot.events_ordered.size());
  for (const auto& event : snapshot.events_ordered) {
    uint32_t free = 0;
    for (const auto& section : event->sections)
      free += section->counts().free;
    events.push_back({event->def.id, event->def.name, event->def.starts_at_ms,
                      event->seat_count(), free});
  }
  return render_events(events);
}

std::string render_events(const std::vector<event_summary>& events) {
  std::string out = R"({"events":[)";
  bool first = true;
  for (const auto& event : events) {
    if (!first) out += ',';
    first = false;
    json_object_writer{out}
        .member("id", event.id)
        .member("name", event.name)
        .member("starts_at", format_rfc3339(event.starts_at_ms))
        .member("seats_total", event.seats_total)
        .member("seats_free", event.seats_free);
  }
  out += "]}";
  return out;
}

std::optional<json> parse_json(std::string_view body) {
  auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

namespace {

caf::expected<waiting_room_def> parse_waiting_room(const json& room,
                                                   bool supported) {
  if (!room.is_object()) return invalid("waiting_room", "must be an object");
  auto enabled = room.find("enabled");
  if (enabled == room.end() || !enabled->is_boolean())
    return invalid("waiting_room.enabled", "must be true or false");
  auto rate = get_int(room, "admit_per_second", "waiting_room.admit_per_second",
                      1, 100'000);
  if (!rate) return rate.error();
  if (enabled->get<bool>() && !supported)
    return invalid("waiting_room", "needs the server to run with Redis "
                                   "(--redis-url)");
  return waiting_room_def{enabled->get<bool>(), *rate};
}

/// The rows of the section at `path`, their seats added to `seats_total`.
caf::error parse_rows(const json& item, const std::string& path,
                      section_def& section, std::size_t& seats_total) {
  auto rows = item.find("rows");
  if (rows == item.end() || !rows->is_array() || rows->empty() ||
      rows->size() > limits::rows_per_section_max)
    return invalid(path + ".rows", "must be an array of 1 to 1000 rows");
  std::unordered_set<std::string> labels;
  for (std::size_t r = 0; r < rows->size(); ++r) {
    const auto& row = (*rows)[r];
    auto row_path = path + ".rows[" + std::to_string(r) + "]";
    if (!row.is_object()) return invalid(row_path, "must be an object");
    auto label = get_string(row, "label", row_path + ".label", 1, 4);
    if (!label) return label.error();
    if (!is_valid_row_label(*label))
      return invalid(row_path + ".label", "must match ^[A-Z0-9]{1,4}$");
    if (!labels.insert(*label).second)
      return invalid(row_path + ".label", "repeats row label " + *label);
    auto seats = get_int(row, "seats", row_path + ".seats", 1,
                         limits::seats_per_row_max);
    if (!seats) return seats.error();
    seats_total += static_cast<std::size_t>(*seats);
    section.rows.push_back({*label, static_cast<uint32_t>(*seats)});
  }
  return {};
}

/// The event's sections: ids unique, seats counted into `seats_total`.
caf::error parse_sections(const json& body, event_def& def,
                          std::size_t& seats_total) {
  auto sections = body.find("sections");
  if (sections == body.end() || !sections->is_array() || sections->empty() ||
      sections->size() > limits::sections_per_event_max)
    return invalid("sections", "must be an array of 1 to 1000 sections");
  std::unordered_set<std::string> section_ids;
  for (std::size_t i = 0; i < sections->size(); ++i) {
    const auto& item = (*sections)[i];
    auto path = "sections[" + std::to_string(i) + "]";
    if (!item.is_object()) return invalid(path, "must be an object");
    section_def section;
    auto id = get_slug(item, "id", path + ".id");
    if (!id) return id.error();
    if (!section_ids.insert(*id).second)
      return invalid(path + ".id", "repeats section id " + *id);
    section.id = *id;
    auto section_name = get_name(item, path + ".name");
    if (!section_name) return section_name.error();
    section.name = *section_name;
    auto price = get_int(item, "price_cents", path + ".price_cents", 0,
                         limits::price_cents_max);
    if (!price) return price.error();
    section.price_cents = *price;
    if (auto err = parse_rows(item, path, section, seats_total)) return err;
    def.sections.push_back(std::move(section));
  }
  return {};
}

} // namespace

caf::expected<event_def> parse_event(const json& body,
                                     bool waiting_room_supported) {
  if (auto err = require_object(body)) return err;
  event_def def;
  if (auto it = body.find("id"); it != body.end() && !it->is_null()) {
    auto id = get_slug(body, "id", "id");
    if (!id) return id.error();
    def.id = *id;
  }
  auto name = get_name(body, "name");
  if (!name) return name.error();
  def.name = *name;
  auto starts_at = get_string(body, "starts_at", "starts_at", 1, 64);
  if (!starts_at) return starts_at.error();
  auto starts_at_ms = parse_rfc3339(*starts_at);
  if (!starts_at_ms)
    return invalid("starts_at", "must be an RFC 3339 time such as "
                                "2026-12-31T20:00:00Z");
  def.starts_at_ms = *starts_at_ms;
  auto ttl = get_int(body, "hold_ttl_seconds", "hold_ttl_seconds",
                     limits::hold_ttl_seconds_min, limits::hold_ttl_seconds_max,
                     limits::hold_ttl_seconds_default);
  if (!ttl) return ttl.error();
  def.hold_ttl_seconds = *ttl;
  if (auto it = body.find("max_seats_per_customer");
      it != body.end() && !it->is_null()) {
    auto limit =
        get_int(body, "max_seats_per_customer", "max_seats_per_customer", 1,
                limits::max_seats_per_customer_max);
    if (!limit) return limit.error();
    def.max_seats_per_customer = *limit;
  }
  if (auto it = body.find("waiting_room"); it != body.end() && !it->is_null()) {
    auto room = parse_waiting_room(*it, waiting_room_supported);
    if (!room) return room.error();
    def.waiting_room = *room;
  }
  std::size_t seats_total = 0;
  if (auto err = parse_sections(body, def, seats_total)) return err;
  if (seats_total > limits::seats_per_event_max)
    return invalid("sections", "an event has at most 1000000 seats, this one " +
                                   std::to_string(seats_total));
  return def;
}

caf::expected<hold_body> parse_hold(const json& body) {
  if (auto err = require_object(body)) return err;
  hold_body out;
  auto event_id = get_slug(body, "event_id", "event_id");
  if (!event_id) return event_id.error();
  out.event_id = *event_id;
  auto section_id = get_slug(body, "section_id", "section_id");
  if (!section_id) return section_id.error();
  out.section_id = *section_id;
  auto seats = body.find("seats");
  auto quantity = body.find("quantity");
  bool has_seats = seats != body.end() && !seats->is_null();
  bool has_quantity = quantity != body.end() && !quantity->is_null();
  if (has_seats == has_quantity)
    return invalid("seats", "give exactly one of seats or quantity");
  if (has_quantity) {
    auto value = get_int(body, "quantity", "quantity", 1,
                         static_cast<int64_t>(limits::seats_per_hold_max));
    if (!value) return value.error();
    out.quantity = static_cast<uint32_t>(*value);
    return out;
  }
  if (!seats->is_array() || seats->empty() ||
      seats->size() > limits::seats_per_hold_max)
    return invalid("seats", "must be an array of 1 to 50 seat ids");
  std::unordered_set<std::string> seen;
  for (std::size_t i = 0; i < seats->size(); ++i) {
    const auto& seat = (*seats)[i];
    auto path = "seats[" + std::to_string(i) + "]";
    if (!seat.is_string()) return invalid(path, "must be a string");
    const auto& id = seat.get_ref<const std::string&>();
    if (!seen.insert(id).second) return invalid(path, "repeats seat " + id);
    out.seats.push_back(id);
  }
  return out;
}

caf::expected<credentials_body> parse_registration(const json& body) {
  if (auto err = require_object(body)) return err;
  auto email = get_string(body, "email", "email", 1, 1024);
  if (!email) return email.error();
  auto normalised = normalise_email(*email);
  // Unicode has look-alikes of every Latin letter (Cyrillic "а", fullwidth
  // "ａ", invisible joiners): accepting them would let a second account pose
  // as someone else's. ASCII is all that a registration takes; NFKC would
  // fold fullwidth forms but not Cyrillic, so it would not be enough.
  auto ascii = std::all_of(normalised.begin(), normalised.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x80;
  });
  if (!ascii)
    return invalid("email", "must be ASCII: internationalised addresses are "
                            "not accepted, since look-alike letters would "
                            "make different accounts look the same");
  if (!is_plausible_email(normalised))
    return invalid("email", "must be an email address such as a@b.example");
  auto password =
      get_string(body, "password", "password", limits::password_chars_min,
                 limits::password_chars_max);
  if (!password) return password.error();
  return credentials_body{std::move(normalised), *password};
}

caf::expected<credentials_body> parse_login(const json& body) {
  if (auto err = require_object(body)) return err;
  auto email = get_string(body, "email", "email", 0, 1024);
  if (!email) return email.error();
  auto password =
      get_string(body, "password", "password", 0, limits::password_chars_max);
  if (!password) return password.error();
  return credentials_body{normalise_email(*email), *password};
}

caf::expected<std::string> parse_booking(const json& body) {
  if (auto err = require_object(body)) return err;
  return get_string(body, "hold_id", "hold_id", 1, 128);
}

std::string render_hold(const hold_view& hold) {
  return dump({
      {"hold_id", hold.hold_id},
      {"event_id", hold.event_id},
      {"section_id", hold.section_id},
      {"seats", hold.seats},
      {"status", to_string(hold.status)},
      {"expires_at", format_rfc3339(hold.expires_at_ms)},
      {"total_cents", hold.total_cents},
  });
}

json booking_json(const booking_view& booking) {
  return {
      {"booking_id", booking.booking_id},
      {"hold_id", booking.hold_id},
      {"event_id", booking.event_id},
      {"section_id", booking.section_id},
      {"seats", booking.seats},
      {"total_cents", booking.total_cents},
      {"status", to_string(booking.status)},
      {"created_at", format_rfc3339(booking.created_at_ms)},
  };
}

std::string render_booking(const booking_view& booking) {
  return dump(booking_json(booking));
}

std::string render_bookings(const std::vector<booking_view>& bookings) {
  json list = json::array();
  for (const auto& booking : bookings)
    list.push_back(booking_json(booking));
  return dump({{"bookings", std::move(list)}});
}

std::string render_seat_map(const seat_map_view& map) {
  // Written by hand: a section can have a million seats, and ids and
  // statuses never need escaping.
  const auto& layout = *map.layout;
  std::string out;
  out.reserve(64 + map.statuses.size() * 32);
  out += R"({"event_id":")";
  out += layout.event_id;
  out += R"(","section_id":")";
  out += layout.section_id;
  out += R"(","seats":[)";
  for (uint32_t row = 0; row < layout.row_count(); ++row) {
    for (auto seat = layout.row_offset[row]; seat < layout.row_offset[row + 1];
         ++seat) {
      if (seat != 0) out += ',';
      out += R"({"id":")";
      out += layout.row_labels[row];
      out += '-';
      out += std::to_string(seat - layout.row_offset[row] + 1);
      out += R"(","status":")";
      out += to_string(map.statuses[seat]);
      out += "\"}";
    }
  }
  out += "]}";
  return out;
}

std::string render_stats(const actors::event_entry& event) {
  uint64_t free = 0, held = 0, booked = 0;
  int64_t revenue = 0;
  for (const auto& section : event.sections) {
    auto counts = section->counts();
    free += counts.free;
    held += counts.held;
    booked += counts.booked;
    revenue +=
        static_cast<int64_t>(counts.booked) * section->layout->price_cents;
  }
  return dump({
      {"event_id", event.def.id},
      {"free", free},
      {"held", held},
      {"booked", booked},
      {"revenue_cents", revenue},
  });
}

} // namespace rsv::http
