#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rsv::http {

/// A block of IP addresses, such as `10.0.0.0/16` or `2001:db8::/32`; an
/// address alone is a block of one.
struct address_range {
  bool v6 = false;
  std::array<unsigned char, 16> bytes{}; // IPv4 in the first 4
  unsigned prefix_bits = 0;
};

/// `ADDRESS` or `ADDRESS/BITS`; nullopt when it is neither.
std::optional<address_range> parse_address_range(std::string_view text);

/// Whether `address` (text) lies in one of `ranges`. IPv4-mapped IPv6
/// addresses count as their IPv4 address.
bool in_ranges(std::string_view address,
               const std::vector<address_range>& ranges);

/// The client's address of a request that came from `peer` with
/// `forwarded_for` (the X-Forwarded-For header's values, comma-separated).
/// Only a trusted proxy's word counts: unless `peer` is in `trusted`, the
/// client is `peer` and the header is ignored (anyone can send it). From a
/// trusted proxy, the client is the rightmost address of the header that is
/// not itself a trusted proxy: each proxy appends the address it saw, so
/// what lies left of that is the client's own claim. An entry that is no
/// address ends the walk at the last good one.
std::string client_address(std::string_view peer,
                           std::string_view forwarded_for,
                           const std::vector<address_range>& trusted);

} // namespace rsv::http
