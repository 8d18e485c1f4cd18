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

void check(std::string_view row, const char* as,
           std::vector<std::string>& broken) {
  auto decoded = persistence::journal::decode(row);
  if (!decoded) {
    if (code_of(decoded.error()) != errc::validation_failed)
      broken.push_back(std::string{as} +
                       ": refused with another code than "
                       "validation_failed: " +
                       describe(decoded.error()));
    return;
  }
  // A decoded row is a valid encoding; encoding its entries again may
  // differ from it (a varint written with redundant bytes), but must then
  // be stable.
  auto again = reencode(*decoded);
  auto redecoded = persistence::journal::decode(again);
  if (!redecoded) {
    broken.push_back(std::string{as} + ": re-encoded row does not decode: " +
                     describe(redecoded.error()));
    return;
  }
  if (redecoded->size() != decoded->size())
    broken.push_back(std::string{as} + ": re-encoding changed the entries");
  else if (reencode(*redecoded) != again)
    broken.push_back(std::string{as} + ": re-encoding is not stable");
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

void check_snapshot(std::string_view body, const char* as,
                    std::vector<std::string>& broken) {
  auto decoded = persistence::journal::decode_snapshot(body);
  if (!decoded) {
    if (code_of(decoded.error()) != errc::validation_failed)
      broken.push_back(std::string{as} +
                       ": snapshot refused with another code than "
                       "validation_failed: " +
                       describe(decoded.error()));
    return;
  }
  // As for rows: the bytes may differ from the input (redundant varint
  // bytes), but what they hold may not.
  auto again = persistence::journal::encode_snapshot(*decoded);
  auto redecoded = persistence::journal::decode_snapshot(again);
  if (!redecoded) {
    broken.push_back(std::string{as} +
                     ": re-encoded snapshot does not decode: " +
                     describe(redecoded.error()));
    return;
  }
  if (!same(*decoded, *redecoded))
    broken.push_back(std::string{as} + ": re-encoding changed the snapshot");
  else if (persistence::journal::encode_snapshot(*redecoded) != again)
    broken.push_back(std::string{as} + ": snapshot re-encoding is not stable");
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
  check_snapshot(bytes, "raw", broken);
  check_snapshot(sealed(snapshot_header, bytes), "sealed snapshot", broken);
  return broken;
}

} // namespace rsv::fuzz
