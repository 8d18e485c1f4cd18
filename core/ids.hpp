#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rsv {

/// `^[a-z0-9][a-z0-9-]{0,63}$`: event and section ids (the contract).
bool is_valid_slug(std::string_view id);

/// `^[A-Z0-9]{1,4}$`: row labels (the contract).
bool is_valid_row_label(std::string_view label);

/// A seat id `<row label>-<seat number>` split into its parts; nullopt when it
/// is not of that shape (a number with a leading zero is not).
struct seat_ref {
  std::string_view row_label;
  uint32_t number = 0;
};
std::optional<seat_ref> parse_seat_id(std::string_view seat_id);

/// Idempotency keys: 1..255 visible ASCII characters (the contract).
bool is_valid_idempotency_key(std::string_view key);

/// Hold and booking ids are opaque to clients but carry the number of the
/// section that owns them and the hash of its event id (core/partition.hpp),
/// so any node routes `GET /v1/holds/{id}` in one step without a global
/// index: to the section when it is local, to the owner of the event's
/// partition in a cluster. Shape: `hld_<section hex>_<slot hex>_<hash hex>`
/// and `bkg_...`; ids made before clusters existed have no hash
/// (`hld_<section hex>_<slot hex>`, event_hash 0) and still parse.
struct record_ref {
  uint32_t section_no = 0;
  uint32_t slot = 0;
  uint64_t event_hash = 0; // 0: an id without it
};
std::string make_hold_id(record_ref ref);
std::string make_booking_id(record_ref ref);
std::optional<record_ref> parse_hold_id(std::string_view id);
std::optional<record_ref> parse_booking_id(std::string_view id);

/// A random id with a prefix, e.g. `cus_3f9a...` (16 hex digits from
/// libsodium's CSPRNG).
std::string make_random_id(std::string_view prefix);

/// RFC 3339 in UTC: `2026-12-31T20:00:00Z`, with `.mmm` when the
/// milliseconds are not zero.
std::string format_rfc3339(int64_t unix_ms);

/// Parses RFC 3339 (`Z` or a numeric offset, optional fraction); nullopt on
/// anything else, including impossible dates.
std::optional<int64_t> parse_rfc3339(std::string_view text);

} // namespace rsv
