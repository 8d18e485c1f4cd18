#pragma once

#include "core/clock.hpp"
#include "core/enum_names.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

/// Domain value types shared by every module: what an event is, what a hold
/// and a booking look like to a client, and the change records that section
/// actors hand to the store and to the change sink. Plain data, no behaviour
/// beyond small helpers.
namespace rsv {

struct row_def {
  std::string label;
  uint32_t seats = 0;
};

struct section_def {
  std::string id;
  std::string name;
  int64_t price_cents = 0;
  std::vector<row_def> rows;
};

struct waiting_room_def {
  bool enabled = false;
  int64_t admit_per_second = 0;
};

struct event_def {
  std::string id;
  std::string name;
  millis starts_at_ms = 0;
  int64_t hold_ttl_seconds = 600;
  std::optional<int64_t> max_seats_per_customer;
  std::optional<waiting_room_def> waiting_room;
  std::vector<section_def> sections;
};

/// Under which ownership a write was made, in a cluster: the partition of
/// its event and the epoch the node held it at when it loaded the event. A
/// group commit refuses writes whose epoch is no longer current
/// (docs/cluster.md, "Fencing"). Epoch 0: a single node, nothing to check.
struct write_fence {
  uint32_t partition = 0;
  uint64_t epoch = 0;

  bool operator==(const write_fence&) const = default;
  auto operator<=>(const write_fence&) const = default;
};

/// The immutable shape of one section, shared by its actor and the request
/// router: seat ids map to dense indexes `row_offset[row] + number - 1`.
struct section_layout {
  std::string event_id;
  std::string section_id;
  std::string name;
  uint32_t section_no = 0; // cluster-wide number carried inside hold ids
  uint64_t event_hash = 0; // fnv1a_64(event_id), also carried inside them
  /// The ownership its event was loaded under; every change carries it.
  write_fence fence;
  int64_t price_cents = 0;
  std::vector<std::string> row_labels;
  std::vector<uint32_t> row_offset; // size rows + 1; last = seat count
  std::unordered_map<std::string, uint32_t> row_by_label;

  uint32_t seat_count() const { return row_offset.back(); }
  uint32_t row_count() const {
    return static_cast<uint32_t>(row_labels.size());
  }
  /// The dense index of a seat id, or nullopt when the section has no such
  /// seat.
  std::optional<uint32_t> seat_index(std::string_view seat_id) const;
  /// The seat id of a dense index, e.g. `B-7`.
  std::string seat_id(uint32_t index) const;
  uint32_t row_of(uint32_t index) const;

  static std::shared_ptr<const section_layout> make(const std::string& event_id,
                                                    const section_def& def,
                                                    uint32_t section_no,
                                                    write_fence fence = {});
};

enum class hold_status : uint8_t { active, expired, released, booked };
inline constexpr auto hold_status_names = names_up_to<hold_status::booked>(
    {"active", "expired", "released", "booked"});
enum class booking_status : uint8_t { confirmed, cancelled };
inline constexpr auto booking_status_names =
    names_up_to<booking_status::cancelled>({"confirmed", "cancelled"});
enum class seat_status : uint8_t { free = 0, held = 1, booked = 2 };
inline constexpr auto seat_status_names =
    names_up_to<seat_status::booked>({"free", "held", "booked"});

const char* to_string(hold_status status);
const char* to_string(booking_status status);
const char* to_string(seat_status status);

struct hold_view {
  std::string hold_id;
  std::string event_id;
  std::string section_id;
  std::vector<std::string> seats;
  hold_status status = hold_status::active;
  millis expires_at_ms = 0;
  int64_t total_cents = 0;
};

struct booking_view {
  std::string booking_id;
  std::string hold_id;
  std::string event_id;
  std::string section_id;
  std::vector<std::string> seats;
  int64_t total_cents = 0;
  booking_status status = booking_status::confirmed;
  millis created_at_ms = 0;
};

/// The order of `GET /v1/bookings`: newest first, and bookings of the same
/// millisecond by the section and slot of their id, highest first, so that
/// the list is the same however the bookings reached memory (live, after a
/// section reload, after a restart).
bool listed_before(const booking_view& a, const booking_view& b);

/// One line of `GET /v1/events`.
struct event_summary {
  std::string id;
  std::string name;
  millis starts_at_ms = 0;
  uint32_t seats_total = 0;
  /// seats_total minus the seats of active holds not yet past their expiry
  /// and of confirmed bookings.
  uint32_t seats_free = 0;
};

/// A section's seat statuses in dense index order, with the layout needed to
/// name them.
struct seat_map_view {
  std::shared_ptr<const section_layout> layout;
  std::vector<seat_status> statuses;
};

/// Free, held and booked counts of a section.
struct seat_counts {
  uint32_t free = 0;
  uint32_t held = 0;
  uint32_t booked = 0;
};

/// A customer account: what registration creates and login checks.
struct customer_record {
  std::string customer_id;
  std::string email;         // normalised: trimmed, lower-case
  std::string password_hash; // libsodium crypto_pwhash_str (argon2id)
  millis created_at_ms = 0;
};

/// A hold (and its booking) as the store recorded it, for recovery. Seats
/// are dense indexes of the section's layout.
struct recorded_hold {
  uint32_t slot = 0;
  std::string customer_id;
  std::vector<uint32_t> seats;
  hold_status status = hold_status::active;
  millis expires_at_ms = 0;
  millis booked_at_ms = 0;
  bool cancelled = false; // for booked holds: the booking was cancelled
};

/// Every state change of a section, as the store persists it and the change
/// sink publishes it. `slot` identifies the hold (and its booking) within the
/// section.
enum class change_kind : uint8_t {
  hold_created,
  hold_released,
  hold_expired,
  booking_confirmed,
  booking_cancelled,
};
inline constexpr auto change_kind_names =
    names_up_to<change_kind::booking_cancelled>(
        {"hold_created", "hold_released", "hold_expired", "booking_confirmed",
         "booking_cancelled"});

const char* to_string(change_kind kind);

/// An answer to a request that carried an Idempotency-Key.
struct stored_response {
  unsigned status = 0;
  std::string body;
  std::string location;
};

/// A customer's idempotency key with the answer it gets again for 24 hours.
/// The answer to a request that changed seats is written in the transaction
/// of that change, so a retry after a crash is answered, not run again.
struct idempotency_record {
  std::string customer_id;
  std::string key;
  std::string fingerprint; // hash of method, target and body
  stored_response response;
  millis created_at_ms = 0;
};

struct seat_change {
  change_kind kind = change_kind::hold_created;
  std::string event_id;
  std::string section_id;
  uint32_t section_no = 0;
  uint32_t slot = 0;
  std::string customer_id;
  std::vector<uint32_t> seat_indexes;
  millis at_ms = 0;
  millis expires_at_ms = 0;
  int64_t amount_cents = 0;
  /// The section's ownership (section_layout::fence).
  write_fence fence;
  /// Set when the change answers a request with an Idempotency-Key.
  std::shared_ptr<const idempotency_record> idempotency;
};

/// Applies `change` to the record of its hold, as a store keeps it: a new
/// hold's fields, or its new status. A change that does not follow from
/// the record's status (a release written again after the hold ended)
/// leaves it as it is.
void apply_to_record(recorded_hold& hold, const seat_change& change);

} // namespace rsv
