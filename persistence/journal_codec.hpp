#pragma once

// The journal's row format (issue 16, docs/architecture.md "Journal"): every
// write of one group commit, encoded as one compact binary value that the
// writer inserts as one row. A pure codec: no database, no clock, no
// layout; unit-tested and fuzzed (fuzz/journal.cpp) on its own.
//
// A row is
//   "RSVJ"  version (1 byte, 1)  entry count (varint)  entries...  CRC-32C
// where the CRC-32C (4 bytes, little-endian) covers everything before it,
// integers are LEB128 varints (signed ones zig-zag encoded), and strings are
// a varint length and their bytes. Each entry starts with a tag byte; see
// journal_codec.cpp for each entry's fields, in order.
//
// A section's snapshot (docs/architecture.md, "Per-section snapshots") is
// sealed the same way, under its own magic so that neither is taken for
// the other:
//   "RSVS"  version (1 byte, 1)  section number (varint)  hold count
//   (varint)  holds...  CRC-32C
// where a hold is its slot, customer id, seat count and seat indexes (as
// given, one varint each), status byte (hold_status), expiry and booking
// times (signed varints) and cancelled flag (a byte, 0 or 1).

#include "core/model.hpp"

#include <caf/expected.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rsv::persistence::journal {

/// A new event and the section numbers it was given, in section order.
struct event_created {
  event_def def;
  std::vector<uint32_t> section_nos;
  write_fence fence;
  millis at_ms = 0;
};

/// One journaled write. A seat change carries its idempotency record, if
/// any; a record alone is the answer to a request that changed nothing
/// (a 4xx kept for its Idempotency-Key). A decoded seat change has no
/// `event_id` and `section_id`: those are its section's names, which the
/// reader takes from the layout of `section_no`.
using entry = std::variant<seat_change, idempotency_record, event_created>;

/// Builds one row: add the batch's writes in commit order, then `finish`.
class encoder {
public:
  encoder();
  void add(const seat_change& change);
  void add(const idempotency_record& record);
  void add(const event_created& event);
  /// Entries added so far.
  std::size_t size() const { return count_; }
  /// The row: header, entries, checksum. The encoder is empty afterwards.
  std::string finish();

private:
  std::string body_; // the entries, encoded
  std::size_t count_ = 0;
};

/// The entries of a row in the order they were added, or why the bytes are
/// not a row this version wrote: a bad magic or version, a checksum that
/// does not match, a truncated entry, an unknown tag, a value out of range,
/// or bytes left over, each with the byte offset where it was found
/// (errc::validation_failed). Never reads outside `row`, whatever it holds.
caf::expected<std::vector<entry>> decode(std::string_view row);

/// One section's state as a snapshot keeps it (docs/architecture.md,
/// "Per-section snapshots"): its live holds (active ones and bookings,
/// cancelled bookings included) and its last hold whatever its state, as
/// recovery reads them from the tables. Seat owners follow from the holds.
struct section_snapshot {
  uint32_t section_no = 0;
  std::vector<recorded_hold> holds; // recorded_hold is in core/model.hpp
};

/// A snapshot's body: "RSVS", version 1, the section number, the hold
/// count, the holds, CRC-32C.
std::string encode_snapshot(const section_snapshot& snapshot);

/// The snapshot `body` holds, or why it is not one this version wrote
/// (errc::validation_failed, naming the byte offset), like decode().
caf::expected<section_snapshot> decode_snapshot(std::string_view body);

/// CRC-32C (Castagnoli) of `bytes`, as the row's checksum.
uint32_t crc32c(std::string_view bytes);

} // namespace rsv::persistence::journal
