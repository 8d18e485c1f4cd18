#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rsv::fuzz {

/// The headers (magic and version) the harness seals an input behind: a
/// journal row's and a section snapshot's (persistence/journal_codec).
inline constexpr std::string_view row_header{"RSVJ\x01", 5};
inline constexpr std::string_view snapshot_header{"RSVS\x01", 5};

/// `content` behind `header` and before its CRC-32C, as the harness seals
/// an input so that it passes the checksum.
std::string sealed(std::string_view header, std::string_view content);

/// Feeds `bytes` to the journal's decoders (persistence/journal_codec):
/// to `decode` as a whole row, which must fail unless it is one (the
/// checksum), and as the entries of a row sealed with a valid header and
/// checksum, so that the fuzzer reaches the entry decoder behind the
/// checksum; then to `decode_snapshot` the same two ways, as a whole
/// snapshot and as the content of one sealed behind a snapshot's header.
/// Whatever decodes is encoded again and must decode to the same value,
/// and encode again to the same bytes.
///
/// Answers the invariants that broke, one line each (empty: none).
std::vector<std::string> decode_journal_bytes(std::string_view bytes);

} // namespace rsv::fuzz
