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

} // namespace

std::vector<std::string> decode_journal_bytes(std::string_view bytes) {
  std::vector<std::string> broken;
  check(bytes, "raw", broken);
  std::string sealed = "RSVJ\x01";
  sealed += bytes;
  auto crc = persistence::journal::crc32c(sealed);
  for (int i = 0; i < 4; ++i)
    sealed += static_cast<char>((crc >> (8 * i)) & 0xff);
  check(sealed, "sealed", broken);
  return broken;
}

} // namespace rsv::fuzz
