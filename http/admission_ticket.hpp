#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace rsv::http {

/// Whose place in an event's waiting room a queue ticket names.
struct ticket_owner {
  std::string event_id;
  std::string customer_id;
};

/// The ticket of `customer_id` in the waiting room of `event_id`: `qtk_` and
/// base64url (no padding) of "<event id>/<customer id>". It grants nothing
/// by itself (the ticket routes check that it is the caller's), so it needs
/// no signature, and the same customer joining again gets the same ticket.
std::string make_ticket(std::string_view event_id,
                        std::string_view customer_id);

/// The event and customer of a ticket; nullopt for anything that is not one
/// (wrong prefix, not base64url, longer than 256 bytes, no '/' between two
/// non-empty parts).
std::optional<ticket_owner> read_ticket(std::string_view ticket);

} // namespace rsv::http
