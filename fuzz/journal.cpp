#include "journal.hpp"

#include "core/errc.hpp"
#include "persistence/journal_codec.hpp"

namespace rsv::fuzz {

namespace {

/// The row that the entries of `row` encode to again.
std::string reencode(const std::vector<persistence::journal::entry>& entries) {
  persistence::journal::encoder out;
  for (const auto& entry : entries)
    std::visit([&](const auto& write) { out.add(write); }, entry);
  return out.finish();
}

/// Decodes `bytes`: a refusal must be validation_failed; what decodes must
/// encode to bytes that decode to the same (`same`) and encode to
/// themselves again. Those bytes may differ from the input (a varint written
/// with redundant bytes); what they hold may not.
template <class Decode, class Encode, class Same>
void check_round_trip(std::string_view bytes, const std::string& as,
                      Decode decode, Encode encode, Same same,
                      std::vector<std::string>& broken) {
  auto decoded = decode(bytes);
  if (!decoded) {
    if (code_of(decoded.error()) != errc::validation_failed)
      broken.push_back(as +
                       ": refused with another code than "
                       "validation_failed: " +
                       describe(decoded.error()));
    return;
  }
  auto again = encode(*decoded);
  auto redecoded = decode(again);
  if (!redecoded) {
    broken.push_back(as + ": re-encoded, it does not decode: " +
                     describe(redecoded.error()));
    return;
  }
  if (!same(*decoded, *redecoded))
    broken.push_back(as + ": re-encoding changed what it holds");
  else if (encode(*redecoded) != again)
    broken.push_back(as + ": re-encoding is not stable");
}

bool same(const recorded_hold& a, const recorded_hold& b) {
  return a.slot == b.slot && a.customer_id == b.customer_id &&
         a.seats == b.seats && a.status == b.status &&
         a.expires_at_ms == b.expires_at_ms &&
         a.booked_at_ms == b.booked_at_ms && a.cancelled == b.cancelled;
}

bool same(const persistence::journal::section_snapshot& a,
          const persistence::journal::section_snapshot& b) {
  if (a.section_no != b.section_no || a.holds.size() != b.holds.size())
    return false;
  for (std::size_t i = 0; i < a.holds.size(); ++i)
    if (!same(a.holds[i], b.holds[i])) return false;
  return true;
}

void check(std::string_view row, const std::string& as,
           std::vector<std::string>& broken) {
  check_round_trip(
      row, as,
      [](std::string_view in) { return persistence::journal::decode(in); },
      reencode,
      [](const auto& a, const auto& b) { return a.size() == b.size(); },
      broken);
}

void check_snapshot(std::string_view body, const std::string& as,
                    std::vector<std::string>& broken) {
  check_round_trip(
      body, as,
      [](std::string_view in) {
        return persistence::journal::decode_snapshot(in);
      },
      persistence::journal::encode_snapshot,
      [](const auto& a, const auto& b) { return same(a, b); }, broken);
}

} // namespace

std::string sealed(std::string_view header, std::string_view content) {
  std::string bytes{header};
  bytes += content;
  auto crc = persistence::journal::crc32c(bytes);
  for (int i = 0; i < 4; ++i)
    bytes += static_cast<char>((crc >> (8 * i)) & 0xff);
  return bytes;
}

std::vector<std::string> decode_journal_bytes(std::string_view bytes) {
  std::vector<std::string> broken;
  check(bytes, "raw", broken);
  check(sealed(row_header, bytes), "sealed", broken);
  check_snapshot(bytes, "raw snapshot", broken);
  check_snapshot(sealed(snapshot_header, bytes), "sealed snapshot", broken);
  return broken;
}

} // namespace rsv::fuzz
