#pragma once

// Private to persistence/: the tables the relay reads (outbox.hpp,
// make_pg_outbox_reader). The outbox holds the records of `pipeline`
// writers; the journal (migrations 0008, 0009) is the outbox of `journal`
// writers. Both are read per stream after the last row delivered, by their
// primary key (stream, seq), so a read touches only new rows, never the
// delivered ones that wait to be let go nor the deleted ones that wait for
// vacuum.

#include "persistence/outbox.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/pg_tables.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rsv::persistence::pg {

/// One table of committed batches, as the relay reads it: per stream, the
/// last row delivered and the last one let go, and how to read, render and
/// let go of rows. For the relay's thread only; every call gets the relay's
/// connection, which holds the relay lease. Errors are errc::unavailable
/// unless they say otherwise.
class relay_table {
public:
  virtual ~relay_table() = default;

  /// The connection (just) took the relay lease: another node may have
  /// relayed meanwhile, so start again from what the database says.
  virtual caf::error restart(PGconn* conn) = 0;

  /// Learns the streams that have rows, by a skip scan of the primary key
  /// (a step per stream, whatever the backlog).
  caf::error discover(PGconn* conn);

  /// The oldest undelivered rows of the known streams, at most `max_rows`,
  /// oldest first (time, stream, seq): a prefix of each stream, their
  /// payloads as stored (`render` makes records of them).
  caf::expected<std::vector<outbox_row>> read(PGconn* conn,
                                              std::size_t max_rows);

  /// Turns the stored payloads of rows `read` gave into record lines. An
  /// error (errc::validation_failed) names a row that cannot be rendered.
  virtual caf::error render(PGconn* conn, std::vector<outbox_row*>& rows) = 0;

  /// Kafka acknowledged every record of `row`: it is not read again.
  void delivered(const outbox_row& row);

  /// Lets go of the rows delivered since the last trim.
  virtual caf::error trim(PGconn* conn) = 0;

  /// What waits beyond the delivered rows.
  virtual caf::expected<outbox_backlog> backlog(PGconn* conn) = 0;

protected:
  /// `filter` is a condition on the rows to relay (`AND ...`), or empty.
  relay_table(outbox_table kind, std::string name, std::string payload,
              std::string filter);

  /// Per stream: the last row delivered (0: none yet) and the last let go;
  /// the rows between await `trim`. Every stream with rows is here after a
  /// discovery.
  struct stream_marks {
    int64_t delivered = 0;
    int64_t trimmed = 0;
  };

  /// The streams delivered beyond their last trim, as three array
  /// parameters: stream, last trimmed, last delivered.
  struct untrimmed {
    array_param streams, trimmed, delivered;
    std::size_t count = 0;
  };
  untrimmed untrimmed_ranges();

  /// Every stream's rows up to its delivered mark were let go.
  void trimmed();

  /// Runs `sql`, a backlog query of one row (rows, records, the oldest
  /// row's time in ms since the epoch), and reads it; `what` names it in an
  /// error.
  caf::expected<outbox_backlog>
  read_backlog(PGconn* conn, const std::string& sql, std::string_view what);

  /// The delivered marks as a VALUES list `(stream, seq)`; marks_ is not
  /// empty.
  std::string marks_values(PGconn* conn) const;

  const outbox_table kind_;
  const std::string name_;    // the table
  const std::string payload_; // its column of records
  const std::string filter_;
  std::map<std::string, stream_marks> marks_;
};

/// The outbox table (migration 0003): rows hold stored record lines;
/// delivered rows are deleted.
std::unique_ptr<relay_table> make_outbox_table();

/// The journal table (migrations 0008, 0009): rows with records are
/// decoded and rendered; delivered ones advance the relay's cursors, and
/// are deleted once the projector has passed them too.
std::unique_ptr<relay_table> make_journal_table();

/// A relay error for `what`, with libpq's message.
caf::error relay_failure(PGconn* conn, std::string_view what);

} // namespace rsv::persistence::pg
