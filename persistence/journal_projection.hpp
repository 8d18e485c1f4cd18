#pragma once

// Private to persistence/: applying journal rows (migration 0008) to the
// relational tables. Whoever reads the tables and must see every
// acknowledged write (recovery, a section's reload, a partition's load, the
// background projector) drains the journal first on its own connection.

#include "core/model.hpp"
#include "persistence/pg_handles.hpp"

#include <caf/expected.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace rsv::persistence::pg {

/// Finds a section's layout without the database, or null.
using layout_lookup =
    std::function<std::shared_ptr<const section_layout>(uint32_t)>;

/// What a projection step did.
struct projected {
  std::size_t rows = 0;    // journal rows applied and deleted
  std::size_t entries = 0; // the writes they held
};

/// Applies journal rows to the tables and deletes them, in one transaction
/// per step, so that a write is in the tables exactly when its row is gone.
/// Steps of every node serialise on an advisory lock: rows are applied
/// once, in commit order within each stream. A row that does not decode
/// stops the projection with an error naming the row; nothing is skipped.
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
  /// Projects the oldest rows, at most `rows_max` of them.
  caf::expected<projected> step(PGconn* conn, std::size_t rows_max);

  caf::expected<std::shared_ptr<const section_layout>>
  layout(PGconn* conn, uint32_t section_no);

  layout_lookup known_;
  layout_map cache_;
};

} // namespace rsv::persistence::pg
