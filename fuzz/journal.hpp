#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rsv::fuzz {

/// Feeds `bytes` to the journal's decoder (persistence/journal_codec) twice:
/// as a whole row, which must fail unless it is one (the checksum), and as
/// the entries of a row sealed with a valid header and checksum, so that
/// the fuzzer reaches the entry decoder behind the checksum. Whatever
/// decodes is encoded again and must decode to the same bytes.
///
/// Answers the invariants that broke, one line each (empty: none).
std::vector<std::string> decode_journal_bytes(std::string_view bytes);

} // namespace rsv::fuzz
