#pragma once

// Private to persistence/: one transaction written in libpq's pipeline mode.

#include "core/errc.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/pg_tables.hpp"

#include <string>

namespace rsv::persistence::pg {

/// One transaction in libpq's pipeline mode: BEGIN, the statements, COMMIT
/// and a sync go out together, and every result comes back in one round
/// trip. Parameters travel as parameters, so nothing is escaped into SQL
/// text. Lives on the thread that owns the connection, for one transaction:
/// `begin`, then `send` for each statement, then `finish` once.
class pipeline_transaction {
public:
  explicit pipeline_transaction(PGconn* conn) : conn_(conn) {}

  /// Enters pipeline mode and queues BEGIN; false when libpq refused (the
  /// connection's error says why).
  bool begin();

  /// Queues one prepared statement. Returns its place among the results,
  /// or -1 when it could not be queued; after that nothing more is.
  /// `lengths` and `formats` are for binary parameters, as in libpq.
  int send(const prepared_statement& statement, const char* const* values,
           const int* lengths = nullptr, const int* formats = nullptr);

  /// False once a statement could not be queued.
  bool queued() const { return queued_; }

  struct outcome {
    bool committed = false;
    /// The connection is no longer usable (results may be half read): the
    /// caller drops it as a lost one.
    bool connection_lost = false;
    /// The answer of the `watched` statement: its one value was true.
    bool watched_true = false;
    /// What the first refused statement means for the writes.
    errc refusal = errc::unavailable;
    std::string message; // empty when committed
  };

  /// Queues COMMIT and the sync, reads every result and leaves pipeline
  /// mode. `watched` is the place of a statement that answers one boolean
  /// rather than a command's status. After a refusal the transaction is
  /// rolled back, so that the connection can go on.
  outcome finish(int watched = -1);

private:
  void read_results(int watched, outcome& out);

  PGconn* conn_;
  int sent_ = 0;
  bool queued_ = true;
};

} // namespace rsv::persistence::pg
