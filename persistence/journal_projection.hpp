#pragma once

// Private to persistence/: applying journal rows (migrations 0008, 0009)
// to the relational tables. Whoever reads the tables and must see every
// acknowledged write (recovery, a section's reload, a partition's load, the
// background projector) drains the journal first on its own connection.

#include "core/model.hpp"
#include "persistence/pg_handles.hpp"

#include <caf/expected.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace rsv::persistence::pg {

/// Takes, inside a transaction, the advisory lock that projection steps of
/// every node and thread, and the relay's trims of the journal, take to
/// exclude each other (any number will do as long as nothing else in the
/// database takes it); PGRES_TUPLES_OK when taken.
inline constexpr const char* take_projection_lock =
    "SELECT pg_advisory_xact_lock(7223019160)";

/// A condition on the journal row `j`: every section whose changes it holds
/// has a snapshot numbered after it (migration 0012), so that recovery
/// reads the row no more. A row is deleted only when this holds too.
inline constexpr const char* covered_by_snapshots =
    "NOT EXISTS (SELECT 1 FROM unnest(j.sections) AS sec (no) LEFT JOIN "
    "section_snapshots snap ON snap.section_no = sec.no WHERE snap.mark IS "
    "NULL OR snap.mark <= j.id)";

/// Deletes, of the oldest `rows_max` journal rows behind the projector's
/// cursor, those that waited only for their sections' snapshots: behind
/// the relay's cursor when they have records, and covered_by_snapshots.
/// Returns how many.
caf::expected<std::size_t> trim_snapshotted(PGconn* conn, std::size_t rows_max);

/// Finds a section's layout without the database, or null.
using layout_lookup =
    std::function<std::shared_ptr<const section_layout>(uint32_t)>;

/// What a projection step did.
struct projected {
  std::size_t rows = 0;    // journal rows applied and deleted
  std::size_t entries = 0; // the writes they held
};

/// Applies journal rows to the tables and moves the projector's cursor of
/// their streams past them (journal_cursors), in one transaction per step,
/// so that a write is in the tables exactly when its row is behind the
/// cursor. The same transaction deletes the rows that wait for nothing
/// else: those without Kafka records, and those the relay has passed, when
/// snapshots cover them; the rest stay for the relay (outbox.hpp) or for
/// trim_snapshotted, which delete them. Steps of every node serialise on an
/// advisory lock: rows are applied once, in the order of their numbers
/// (migration 0012), which is commit order within each stream and a
/// section's order across streams. A row that does not decode stops the
/// projection with an error naming the row; nothing is skipped.
///
/// One instance per connection and thread; it caches the section layouts
/// it read (sections never change).
class journal_projection {
public:
  explicit journal_projection(layout_lookup known = {});

  /// Projects every row committed before the call, in steps of at most
  /// `rows_per_step` rows; `on_step` (when set) hears what each step did.
  /// Blocking; cheap when the journal is empty (one indexed read). `conn`
  /// has the tables' statements prepared (prepare_table_statements), as its
  /// owner does once per connection.
  caf::expected<projected>
  drain(PGconn* conn, std::size_t rows_per_step = 64,
        const std::function<void(const projected&)>& on_step = {});

private:
  /// Per stream: the cursor a step's rows follow, and the last of them.
  using stream_ranges = std::map<std::string, std::pair<int64_t, int64_t>>;

  /// Projects the oldest rows, at most `rows_max` of them.
  caf::expected<projected> step(PGconn* conn, std::size_t rows_max);

  /// Applies `rows` (stream, seq, body, cursor) to the tables, inside the
  /// step's transaction, and notes each stream's range.
  caf::error apply(PGconn* conn, PGresult* rows, stream_ranges& ranges,
                   projected& done);

  caf::expected<std::shared_ptr<const section_layout>>
  layout(PGconn* conn, uint32_t section_no);

  layout_lookup known_;
  layout_map cache_;
};

/// Forgets the cursors of streams that have no rows and stood still for an
/// hour (streams of processes that ended), so that journal_cursors stays
/// small. The projector runs it once a minute.
caf::error forget_idle_cursors(PGconn* conn);

} // namespace rsv::persistence::pg
