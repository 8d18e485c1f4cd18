#include "http/admission_ticket.hpp"

#include <sodium.h>

namespace rsv::http {

namespace {

constexpr std::string_view ticket_prefix = "qtk_";
/// Longer tickets are refused before decoding: no real one comes near it.
constexpr std::size_t ticket_bytes_max = 256;

} // namespace

std::string make_ticket(std::string_view event_id,
                        std::string_view customer_id) {
  std::string plain{event_id};
  plain += '/';
  plain += customer_id;
  std::string encoded(
      sodium_base64_ENCODED_LEN(plain.size(),
                                sodium_base64_VARIANT_URLSAFE_NO_PADDING),
      '\0');
  sodium_bin2base64(encoded.data(), encoded.size(),
                    reinterpret_cast<const unsigned char*>(plain.data()),
                    plain.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  encoded.resize(encoded.find('\0'));
  return std::string{ticket_prefix} + encoded;
}

std::optional<ticket_owner> read_ticket(std::string_view ticket) {
  if (ticket.size() <= ticket_prefix.size() ||
      ticket.size() > ticket_bytes_max ||
      ticket.substr(0, ticket_prefix.size()) != ticket_prefix)
    return std::nullopt;
  ticket.remove_prefix(ticket_prefix.size());
  std::string plain(ticket.size(), '\0');
  std::size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(plain.data()),
                        plain.size(), ticket.data(), ticket.size(), nullptr,
                        &length, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return std::nullopt;
  plain.resize(length);
  auto slash = plain.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == plain.size())
    return std::nullopt;
  return ticket_owner{plain.substr(0, slash), plain.substr(slash + 1)};
}

} // namespace rsv::http
