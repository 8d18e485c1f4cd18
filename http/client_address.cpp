#include "http/client_address.hpp"

#include <boost/asio/ip/address.hpp>
#include <charconv>

namespace rsv::http {

namespace {

/// The address as a range's bytes: IPv4 (and IPv4-mapped IPv6) in the first
/// four bytes with v6 false.
std::optional<address_range> parse_address(std::string_view text) {
  boost::system::error_code ec;
  auto parsed = boost::asio::ip::make_address(std::string{text}, ec);
  if (ec) return std::nullopt;
  address_range out;
  if (parsed.is_v6() && parsed.to_v6().is_v4_mapped())
    parsed = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped,
                                              parsed.to_v6());
  if (parsed.is_v4()) {
    auto bytes = parsed.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.bytes.begin());
    out.prefix_bits = 32;
  } else {
    out.v6 = true;
    out.bytes = parsed.to_v6().to_bytes();
    out.prefix_bits = 128;
  }
  return out;
}

bool contains(const address_range& range, const address_range& address) {
  if (range.v6 != address.v6) return false;
  auto bits = range.prefix_bits;
  for (std::size_t i = 0; bits > 0; ++i) {
    unsigned take = bits >= 8 ? 8 : bits;
    auto mask = static_cast<unsigned char>(0xff << (8 - take));
    if ((range.bytes[i] & mask) != (address.bytes[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

} // namespace

std::optional<address_range> parse_address_range(std::string_view text) {
  text = trim(text);
  auto slash = text.find('/');
  auto range = parse_address(text.substr(0, slash));
  if (!range) return std::nullopt;
  if (slash == std::string_view::npos) return range;
  auto digits = text.substr(slash + 1);
  unsigned bits = 0;
  auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), bits);
  if (ec != std::errc{} || end != digits.data() + digits.size() ||
      digits.empty() || bits > range->prefix_bits)
    return std::nullopt;
  range->prefix_bits = bits;
  return range;
}

bool in_ranges(std::string_view address,
               const std::vector<address_range>& ranges) {
  auto parsed = parse_address(address);
  if (!parsed) return false;
  for (const auto& range : ranges)
    if (contains(range, *parsed)) return true;
  return false;
}

std::string client_address(std::string_view peer,
                           std::string_view forwarded_for,
                           const std::vector<address_range>& trusted) {
  if (trusted.empty() || forwarded_for.empty() || !in_ranges(peer, trusted))
    return std::string{peer};
  std::string client{peer};
  while (!forwarded_for.empty()) {
    auto comma = forwarded_for.rfind(',');
    auto entry =
        trim(comma == std::string_view::npos ? forwarded_for
                                             : forwarded_for.substr(comma + 1));
    forwarded_for = comma == std::string_view::npos
                        ? std::string_view{}
                        : forwarded_for.substr(0, comma);
    if (!parse_address(entry)) break;
    client = std::string{entry};
    if (!in_ranges(entry, trusted)) break;
  }
  return client;
}

} // namespace rsv::http
