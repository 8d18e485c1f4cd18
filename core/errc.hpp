#pragma once

#include "core/enum_names.hpp"

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace rsv {

/// Domain errors: operating errors are values, never exceptions. The http
/// module maps each one to a status and a problem `code` in exactly one place
/// (http/problem.cpp). Context travels in the caf::error's message:
/// - seats_unavailable, unknown_seat: std::vector<std::string> of seat ids
/// - hold_booked: std::string booking id
/// - every other code: an optional std::string detail
enum class errc : uint8_t {
  none = 0,
  not_found,
  seats_unavailable,
  insufficient_seats,
  unknown_seat,
  limit_exceeded,
  hold_booked,
  hold_expired,
  event_exists,
  email_taken,
  invalid_credentials,
  validation_failed,
  unavailable,
  overloaded,
  /// A write refused by the cluster's fence: the event's partition moved to
  /// another node after this one loaded it. Answered 503 (safe to retry).
  fenced,
  /// This node does not own the event (now): a forwarded request answers
  /// 421, and the node that forwarded it refreshes and retries once.
  not_owner,
};
inline constexpr auto errc_names = names_up_to<errc::not_owner>(
    {"none", "not_found", "seats_unavailable", "insufficient_seats",
     "unknown_seat", "limit_exceeded", "hold_booked", "hold_expired",
     "event_exists", "email_taken", "invalid_credentials", "validation_failed",
     "unavailable", "overloaded", "fenced", "not_owner"});

inline const char* to_string(errc code) {
  return errc_names.name(code);
}

/// The category atom under which rsv errors travel inside caf::error.
constexpr caf::atom_value errc_category = caf::atom("rsv");

inline caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), errc_category};
}

inline caf::error make_error(errc code, std::string detail) {
  return caf::error{static_cast<uint8_t>(code), errc_category,
                    caf::make_message(std::move(detail))};
}

inline caf::error make_error(errc code, std::vector<std::string> seat_ids) {
  return caf::error{static_cast<uint8_t>(code), errc_category,
                    caf::make_message(std::move(seat_ids))};
}

/// Not found answers for holds and bookings: the same for an unknown id and
/// for another customer's, so that ids cannot be probed.
inline caf::error no_such_hold() {
  return make_error(errc::not_found, std::string{"no such hold"});
}
inline caf::error no_such_booking() {
  return make_error(errc::not_found, std::string{"no such booking"});
}

/// A readable one-line description: `unavailable: connecting to ...`.
std::string describe(const caf::error& err);

/// Returns the domain code of `err`, or errc::unavailable for an error of a
/// foreign category (a CAF timeout, a dead actor): the caller cannot know
/// whether the request took effect, which is exactly what 503 says.
errc code_of(const caf::error& err);

} // namespace rsv
