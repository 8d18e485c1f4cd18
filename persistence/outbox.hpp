#pragma once

// The transactional outbox (docs/events.md): how a committed change becomes
// a Kafka record. A writer of the `pipeline` encoding renders records into
// an outbox row in the transaction of the change; one of the `journal`
// encoding writes the change once, in its journal row, which is the outbox
// too (pg_store). A relay reads both back in commit order and lets them go
// once Kafka has them (messaging/kafka_relay).

#include "core/model.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rsv::persistence {

/// The Kafka record of one change: `id` is unique per change and the same
/// every time the change is rendered, so consumers drop duplicates by it;
/// `key` is `event_id/section_id`, so one section's records share a
/// partition; `value` is the JSON documented in docs/events.md.
struct outbox_record {
  std::string_view id;
  std::string_view key;
  std::string_view value;
};

/// Appends the stored form of `change`'s record to `payload`: a short line
/// the relay expands into the record (`expand_outbox_payload`). `layout`
/// turns seat indexes into seat ids.
void render_outbox_record(const seat_change& change,
                          const section_layout& layout, std::string& payload);

/// Appends the record line (`id \t key \t value`) of `change` to `lines`:
/// the line `expand_outbox_payload` makes of what `render_outbox_record`
/// stored, with the event and section ids that `layout` names. The relay
/// renders journal rows with it.
void render_record_line(const seat_change& change, const section_layout& layout,
                        std::string& lines);

/// Appends the record of a new event (`event.created`) to `payload`, as a
/// record line.
void render_outbox_record(const event_def& def, millis at_ms,
                          std::string& payload);

/// The record lines of a stored payload: each stored change line expanded
/// into `id \t key \t value`, record lines kept as they are.
std::string expand_outbox_payload(std::string_view stored);

/// The records of an expanded payload, in order; views into `payload`. Lines
/// that are not records (which the writer never writes) are skipped.
std::vector<outbox_record> split_outbox_records(std::string_view payload);

/// Where a batch's records were written: an `outbox` row (the `pipeline`
/// encoding, and events of nodes before the journal was the outbox), or a
/// `journal` row (migration 0009).
enum class outbox_table : uint8_t { outbox, journal };

/// One committed batch's records.
struct outbox_row {
  outbox_table table = outbox_table::outbox;
  /// `<node id>/<writer>` in the outbox, `<node>/<start>/<writer>` in the
  /// journal; a stream is one writer's, in one table.
  std::string stream;
  int64_t seq = 0; // commit order within the stream
  millis created_at_ms = 0;
  std::string payload; // record lines, as `read` returns it: expanded
};

/// What the relay has not delivered yet, over both tables.
struct outbox_backlog {
  int64_t rows = 0;
  int64_t records = 0;
  millis oldest_created_at_ms = 0; // 0 when empty
};

/// The relay's side of the outbox. Blocking calls, for one thread (the
/// relay's own): implementations hold one database connection.
///
/// Delivered rows are let go in batches (`trim`), not one statement per
/// round: until then the reader remembers, per stream, the last row it was
/// told was delivered, and reads after it.
class outbox_reader {
public:
  virtual ~outbox_reader() = default;

  /// The oldest rows not yet delivered, at most `max_rows`, in commit order
  /// within each stream. Empty while another node relays (only one node
  /// holds the relay lease) or nothing waits. An error for a row that cannot
  /// be rendered (a journal row that does not decode), naming it: nothing
  /// after it is read until it is repaired.
  virtual caf::expected<std::vector<outbox_row>> read(std::size_t max_rows) = 0;

  /// Kafka acknowledged every record of `rows`: they are not read again,
  /// and the next `trim` deletes them.
  virtual void delivered(const std::vector<outbox_row>& rows) = 0;

  /// Lets the delivered rows go: deletes outbox rows, and records how far
  /// each journal stream was relayed (deleting the rows already projected).
  /// Should that be lost (a crash, a connection that died), the rows are
  /// read and produced again: a duplicate, never a loss.
  virtual caf::error trim() = 0;

  /// What waits beyond the delivered rows.
  virtual caf::expected<outbox_backlog> backlog() = 0;
};

/// The outbox and journal tables in PostgreSQL, reached with `dsn` (empty:
/// libpq's PG* variables). Connects lazily and reconnects after failures.
std::unique_ptr<outbox_reader> make_pg_outbox_reader(std::string dsn);

} // namespace rsv::persistence
