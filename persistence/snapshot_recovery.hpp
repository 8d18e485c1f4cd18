#pragma once

// Private to persistence/: recovery from per-section snapshots (migration
// 0012, docs/architecture.md "Per-section snapshots"). Each section's holds
// are its snapshot and the journal rows numbered after it; the journal is
// not projected into the tables first.

#include "core/model.hpp"
#include "persistence/pg_handles.hpp"

#include <caf/expected.hpp>
#include <cstddef>
#include <optional>
#include <vector>

namespace rsv::persistence::pg {

/// What recovery takes from the snapshots and the journal.
struct snapshot_image {
  /// Each section's live holds and last hold, as read_holds gives them.
  holds_by_section holds;
  /// The idempotency records of rows the projector has not applied yet
  /// (the others are in idempotency_records).
  std::vector<idempotency_record> idempotency;
  std::size_t snapshots = 0; // sections read from a snapshot
  std::size_t rows = 0;      // journal rows read after them
  std::size_t entries = 0;   // seat changes applied from those rows
};

/// Reads the snapshot image inside the caller's transaction (REPEATABLE
/// READ, so that snapshots and rows agree). None when some section has no
/// snapshot, or there are no sections: the caller projects the journal and
/// reads the tables instead. A snapshot or row that does not decode, or a
/// change of a section that has none, is an error naming it: nothing is
/// skipped.
caf::expected<std::optional<snapshot_image>> read_snapshot_image(PGconn* conn);

} // namespace rsv::persistence::pg
