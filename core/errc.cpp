#include "core/errc.hpp"

#include <caf/deep_to_string.hpp>
#include <caf/message.hpp>

namespace rsv {

const char* to_string(errc code) {
  switch (code) {
  case errc::none:
    return "none";
  case errc::not_found:
    return "not_found";
  case errc::seats_unavailable:
    return "seats_unavailable";
  case errc::insufficient_seats:
    return "insufficient_seats";
  case errc::unknown_seat:
    return "unknown_seat";
  case errc::limit_exceeded:
    return "limit_exceeded";
  case errc::hold_booked:
    return "hold_booked";
  case errc::hold_expired:
    return "hold_expired";
  case errc::event_exists:
    return "event_exists";
  case errc::email_taken:
    return "email_taken";
  case errc::invalid_credentials:
    return "invalid_credentials";
  case errc::validation_failed:
    return "validation_failed";
  case errc::unavailable:
    return "unavailable";
  case errc::overloaded:
    return "overloaded";
  case errc::fenced:
    return "fenced";
  case errc::not_owner:
    return "not_owner";
  }
  return "unknown";
}

errc code_of(const caf::error& err) {
  if (!err) return errc::none;
  if (err.category() != errc_category) return errc::unavailable;
  return static_cast<errc>(err.code());
}

std::string describe(const caf::error& err) {
  if (!err) return "none";
  if (err.category() != errc_category) return caf::to_string(err);
  std::string text = to_string(code_of(err));
  const auto& context = err.context();
  if (context.match_elements<std::string>()) {
    text += ": ";
    text += context.get_as<std::string>(0);
  }
  return text;
}

} // namespace rsv
