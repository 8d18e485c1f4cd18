#pragma once

#include "actors/directory.hpp"
#include "core/model.hpp"

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// JSON <-> domain types. Parsing validates everything the contract says and
/// answers errc::validation_failed with a detail that names the field.
/// nlohmann exceptions never leave this file.
namespace rsv::http {

/// Parses a body; nullopt for malformed JSON (including invalid UTF-8).
std::optional<nlohmann::json> parse_json(std::string_view body);

struct hold_body {
  std::string event_id;
  std::string section_id;
  std::vector<std::string> seats; // empty when quantity is used
  uint32_t quantity = 0;
};

struct credentials_body {
  std::string email; // normalised: trimmed, lower-case
  std::string password;
};

caf::expected<event_def> parse_event(const nlohmann::json& body,
                                     bool waiting_room_supported);
caf::expected<hold_body> parse_hold(const nlohmann::json& body);
caf::expected<credentials_body> parse_registration(const nlohmann::json& body);
caf::expected<credentials_body> parse_login(const nlohmann::json& body);
caf::expected<std::string> parse_booking(const nlohmann::json& body);

std::string render_hold(const hold_view& hold);
nlohmann::json booking_json(const booking_view& booking);
std::string render_booking(const booking_view& booking);
std::string render_bookings(const std::vector<booking_view>& bookings);
/// `counts`, when given, replaces the sections' own counts (in section
/// order): the read model's.
std::string render_event(const actors::event_entry& event,
                         const std::vector<seat_counts>* counts = nullptr);
std::string render_events(const actors::directory_snapshot& snapshot);
/// The same from a list (a cluster reads it from PostgreSQL), in its order.
std::string render_events(const std::vector<event_summary>& events);
std::string render_seat_map(const seat_map_view& map);
std::string render_stats(const actors::event_entry& event);

} // namespace rsv::http
