// The journal as the relay reads it (relay_table.hpp): the journal is the
// outbox of `journal` writers (migration 0009). A row with records is
// decoded with the journal's codec and rendered into the very record lines
// an outbox row of the `pipeline` encoding gives, so consumers cannot tell
// which encoding a node used. How far the relay got in each stream is kept
// in journal_cursors; a row is deleted once the projector has passed it
// too.

#include "core/errc.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/journal_projection.hpp"
#include "persistence/relay_table.hpp"

namespace rsv::persistence::pg {

namespace {

/// Records the relay's cursors and deletes the delivered rows that the
/// projector already applied (the others are deleted by the projector when
/// it applies them), in one statement, under the projection lock.
const std::string trim_journal =
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[]) AS "
    "v (stream, low, high)), relayed AS (INSERT INTO journal_cursors "
    "(reader, stream, seq, updated_at) SELECT 'relay', stream, high, now() "
    "FROM v ON CONFLICT (reader, stream) DO UPDATE SET seq = "
    "greatest(journal_cursors.seq, excluded.seq), updated_at = "
    "excluded.updated_at) "
    "DELETE FROM journal j USING v, journal_cursors p WHERE p.reader = "
    "'projector' AND p.stream = v.stream AND j.stream = v.stream AND j.seq > "
    "v.low AND j.seq <= least(v.high, p.seq) AND " +
    std::string{covered_by_snapshots};

class journal_relay_table final : public relay_table {
public:
  journal_relay_table()
      : relay_table(outbox_table::journal, "journal", "body",
                    " AND records > 0") {}

  /// The relay's cursors are where it got to: delivered rows stay until
  /// the projector has applied them.
  caf::error restart(PGconn* conn) override {
    marks_.clear();
    result_ptr result{PQexec(conn, "SELECT stream, seq FROM journal_cursors "
                                   "WHERE reader = 'relay'")};
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
      return relay_failure(conn, "reading the relay's journal cursors");
    for (int i = 0; i < PQntuples(result.get()); ++i) {
      auto seq = int_at(result.get(), i, 1);
      marks_[text_at(result.get(), i, 0)] = {seq, seq};
    }
    return {};
  }

  caf::error render(PGconn* conn, std::vector<outbox_row*>& rows) override {
    for (auto* row : rows) {
      auto entries = journal::decode(row->payload);
      if (!entries)
        return make_error(
            errc::validation_failed,
            "journal row " + row->stream + " seq " + std::to_string(row->seq) +
                " cannot be relayed (" + describe(entries.error()) +
                "); nothing after it is relayed until it is "
                "repaired");
      std::string lines;
      for (const auto& entry : *entries) {
        if (const auto* change = std::get_if<seat_change>(&entry)) {
          auto section = layout(conn, change->section_no);
          if (!section) return section.error();
          render_record_line(*change, **section, lines);
        } else if (const auto* event =
                       std::get_if<journal::event_created>(&entry)) {
          render_outbox_record(event->def, event->at_ms, lines);
        }
        // An idempotency answer is no change: it has no record.
      }
      row->payload = std::move(lines);
    }
    return {};
  }

  /// A trim and a projection step exclude each other (the projection
  /// lock), so that whichever comes second sees the other's cursor and
  /// deletes the rows both passed. A trim may wait for a step that runs
  /// (milliseconds; bounded by the steps' idle timeout and the relay's
  /// statement timeout), once per trim, not per round.
  caf::error trim(PGconn* conn) override {
    auto ranges = untrimmed_ranges();
    if (ranges.count == 0) return {};
    result_ptr lock{
        PQexec(conn, (std::string{"BEGIN; "} + take_projection_lock).c_str())};
    transaction_scope tx{conn};
    if (PQresultStatus(lock.get()) != PGRES_TUPLES_OK)
      return relay_failure(conn, "taking the projection lock");
    const char* values[] = {ranges.streams.c_str(), ranges.trimmed.c_str(),
                            ranges.delivered.c_str()};
    result_ptr result{PQexecParams(conn, trim_journal.c_str(), 3, nullptr,
                                   values, nullptr, nullptr, 0)};
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK)
      return relay_failure(conn, "recording how far the journal was relayed");
    if (!tx.commit()) return relay_failure(conn, "committing the trim");
    trimmed();
    return {};
  }

  caf::expected<outbox_backlog> backlog(PGconn* conn) override {
    // Beyond the relay's cursor and its marks: rows delivered but kept for
    // the projector are not waiting for Kafka.
    std::string sql =
        "SELECT count(*), coalesce(sum(j.records), 0), coalesce((extract(epoch "
        "FROM min(j.created_at)) * 1000)::int8, 0) FROM journal j LEFT JOIN "
        "journal_cursors c ON c.reader = 'relay' AND c.stream = j.stream";
    std::string after = "coalesce(c.seq, 0)";
    if (!marks_.empty()) {
      sql += " LEFT JOIN " + marks_values(conn) +
             " AS m (stream, seq) ON m.stream = j.stream";
      after = "greatest(coalesce(c.seq, 0), coalesce(m.seq, 0))";
    }
    sql += " WHERE j.records > 0 AND j.seq > " + after;
    return read_backlog(conn, sql, "measuring the journal's relay backlog");
  }

private:
  /// A section's layout, read once: sections never change, and a section
  /// is in its table before any journal row names it (its event commits
  /// before the section takes a request).
  caf::expected<std::shared_ptr<const section_layout>>
  layout(PGconn* conn, uint32_t section_no) {
    if (auto it = layouts_.find(section_no); it != layouts_.end())
      return it->second;
    auto read = read_journal_layout(conn, section_no);
    if (read) layouts_[section_no] = *read;
    return read;
  }

  layout_map layouts_;
};

} // namespace

std::unique_ptr<relay_table> make_journal_table() {
  return std::make_unique<journal_relay_table>();
}

} // namespace rsv::persistence::pg
