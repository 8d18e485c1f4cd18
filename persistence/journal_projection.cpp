#include "persistence/journal_projection.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/pg_tables.hpp"

#include <cstdlib>
#include <map>

namespace rsv::persistence::pg {

namespace {

bool run(PGconn* conn, const char* sql, ExecStatusType expected) {
  result_ptr result{PQexec(conn, sql)};
  return PQresultStatus(result.get()) == expected;
}

/// The journal's streams (a skip scan of its primary key, a step per
/// stream), each with the projector's cursor: rows up to it are in the
/// tables (migration 0009).
constexpr const char* streams_with_cursors =
    "WITH RECURSIVE s (stream) AS ((SELECT stream FROM journal ORDER BY "
    "stream LIMIT 1) UNION ALL SELECT (SELECT j.stream FROM journal j WHERE "
    "j.stream > s.stream ORDER BY j.stream LIMIT 1) FROM s WHERE s.stream IS "
    "NOT NULL), c AS (SELECT s.stream, coalesce((SELECT k.seq FROM "
    "journal_cursors k WHERE k.reader = 'projector' AND k.stream = "
    "s.stream), 0) AS projected FROM s WHERE s.stream IS NOT NULL) ";

/// The oldest rows beyond each stream's cursor, at most $1, with the
/// cursor they follow, in the order of their numbers: a prefix of each
/// stream (numbers grow with seq), and a section's rows of an earlier
/// stream before those of a later one (migration 0012). The rows kept only
/// for the relay are not read again.
const std::string select_unprojected =
    std::string{streams_with_cursors} +
    "SELECT r.stream, r.seq, r.body, c.projected FROM c CROSS JOIN LATERAL "
    "(SELECT j.stream, j.seq, j.body, j.id FROM journal j WHERE j.stream = "
    "c.stream AND j.seq > c.projected ORDER BY j.seq LIMIT $1::int8) r "
    "ORDER BY r.id LIMIT $1::int8";

/// Whether any row waits for the projector.
const std::string any_unprojected =
    std::string{streams_with_cursors} +
    "SELECT 1 FROM c WHERE EXISTS (SELECT 1 FROM journal j WHERE j.stream = "
    "c.stream AND j.seq > c.projected) LIMIT 1";

/// Moves the cursors past a step's rows, per stream (low, high], and
/// deletes those of them that wait for no relay (rows without records, and
/// rows the relay has passed) and no snapshot. The others stay until the
/// relay's trim, which cannot run meanwhile (the projection lock): it sees
/// this cursor; or until trim_snapshotted.
const std::string advance_projector =
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[]) AS "
    "v (stream, low, high)), projected AS (INSERT INTO journal_cursors "
    "(reader, stream, seq, updated_at) SELECT 'projector', stream, high, "
    "now() FROM v ON CONFLICT (reader, stream) DO UPDATE SET seq = "
    "excluded.seq, updated_at = excluded.updated_at) "
    "DELETE FROM journal j USING v LEFT JOIN journal_cursors r ON r.reader = "
    "'relay' AND r.stream = v.stream WHERE j.stream = v.stream AND j.seq > "
    "v.low AND j.seq <= v.high AND (j.records = 0 OR j.seq <= "
    "coalesce(r.seq, 0)) AND " +
    std::string{covered_by_snapshots};

/// Of the oldest $1 projected rows, those the relay passed (or that need
/// none) and snapshots cover. A window, so that rows that wait a while for
/// their snapshots are not all checked again every time.
const std::string delete_snapshotted =
    "DELETE FROM journal d WHERE d.id IN (SELECT j.id FROM (SELECT j.id, "
    "j.stream, j.seq, j.records, j.sections FROM journal j JOIN "
    "journal_cursors p ON p.reader = 'projector' AND p.stream = j.stream AND "
    "j.seq <= p.seq ORDER BY j.id LIMIT $1::int8) j LEFT JOIN "
    "journal_cursors r ON r.reader = 'relay' AND r.stream = j.stream WHERE "
    "(j.records = 0 OR j.seq <= coalesce(r.seq, 0)) AND " +
    std::string{covered_by_snapshots} + ")";

/// Forgets the cursors of streams without rows that stood still for an
/// hour (migration 0009 says why an hour).
constexpr const char* forget_cursors =
    "DELETE FROM journal_cursors c WHERE c.updated_at < now() - interval '1 "
    "hour' AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.stream = "
    "c.stream)";

} // namespace

journal_projection::journal_projection(layout_lookup known)
    : known_(std::move(known)) {}

caf::expected<std::shared_ptr<const section_layout>>
journal_projection::layout(PGconn* conn, uint32_t section_no) {
  if (auto it = cache_.find(section_no); it != cache_.end()) return it->second;
  if (known_) {
    if (auto layout = known_(section_no)) {
      cache_[section_no] = layout;
      return layout;
    }
  }
  auto read = read_journal_layout(conn, section_no);
  if (read) cache_[section_no] = *read;
  return read;
}

caf::error journal_projection::apply(PGconn* conn, PGresult* rows,
                                     stream_ranges& ranges, projected& done) {
  table_rows tables;
  for (int row = 0; row < PQntuples(rows); ++row) {
    auto stream = text_at(rows, row, 0);
    auto seq = int8_at(rows, row, 1);
    auto entries = journal::decode(bytes_at(rows, row, 2));
    if (!entries)
      return make_error(errc::validation_failed,
                        "journal row " + stream + " seq " +
                            std::to_string(seq) + " cannot be read (" +
                            describe(entries.error()) +
                            "); nothing after it is projected until it is "
                            "repaired");
    for (const auto& entry : *entries) {
      if (const auto* change = std::get_if<seat_change>(&entry)) {
        auto section = layout(conn, change->section_no);
        if (!section) return section.error();
        tables.add(*change, **section);
      } else if (const auto* record = std::get_if<idempotency_record>(&entry)) {
        tables.add(*record);
      }
      // An event's entry is for its Kafka record: its rows are written
      // with it, in its own transaction.
      ++done.entries;
    }
    // Rows come in seq order within a stream, after its cursor.
    auto& range =
        ranges.try_emplace(stream, int8_at(rows, row, 3), seq).first->second;
    range.second = seq;
    ++done.rows;
  }
  if (auto failure = tables.execute(conn); !failure.empty())
    return make_error(errc::unavailable, "projecting the journal: " + failure);
  return {};
}

caf::expected<projected> journal_projection::step(PGconn* conn,
                                                  std::size_t rows_max) {
  auto failed = [&](const std::string& what) {
    return failure(conn, "projecting the journal: " + what);
  };
  if (!run(conn, "BEGIN", PGRES_COMMAND_OK)) return failed("BEGIN");
  transaction_scope tx{conn};
  auto idle = "SET LOCAL idle_in_transaction_session_timeout = " +
              std::to_string(limits::journal_step_idle_timeout_ms);
  if (!run(conn, idle.c_str(), PGRES_COMMAND_OK))
    return failed("bounding the step");
  if (!run(conn, take_projection_lock, PGRES_TUPLES_OK))
    return failed("taking the projection lock");
  auto limit = std::to_string(rows_max);
  const char* values[] = {limit.c_str()};
  // Binary results: the body's bytes as they are, numbers as 8 bytes.
  result_ptr rows{PQexecParams(conn, select_unprojected.c_str(), 1, nullptr,
                               values, nullptr, nullptr, 1)};
  if (PQresultStatus(rows.get()) != PGRES_TUPLES_OK)
    return failed("reading the journal");
  projected done;
  if (PQntuples(rows.get()) == 0) return done;
  stream_ranges ranges;
  if (auto err = apply(conn, rows.get(), ranges, done)) return err;
  array_param streams, lows, highs;
  for (const auto& [stream, range] : ranges) {
    streams.add(stream);
    lows.add(range.first);
    highs.add(range.second);
  }
  const char* bounds[] = {streams.c_str(), lows.c_str(), highs.c_str()};
  result_ptr advanced{PQexecParams(conn, advance_projector.c_str(), 3, nullptr,
                                   bounds, nullptr, nullptr, 0)};
  if (PQresultStatus(advanced.get()) != PGRES_COMMAND_OK)
    return failed("advancing the projector's cursors");
  if (!tx.commit()) return failed("COMMIT");
  return done;
}

caf::expected<projected> journal_projection::drain(
    PGconn* conn, std::size_t rows_per_step,
    const std::function<void(const projected&)>& on_step) {
  // The usual case, nothing to project, costs an index probe per stream
  // (one when the journal is empty).
  result_ptr any{PQexec(conn, any_unprojected.c_str())};
  if (PQresultStatus(any.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading the journal");
  projected total;
  if (PQntuples(any.get()) == 0) return total;
  // Rows committed after the drain began may be projected too; it ends at
  // the first step that finds fewer rows than it asked for. A step is one
  // transaction, so its size bounds how long it holds the lock and how much
  // one rollback repeats.
  for (;;) {
    auto step_done = step(conn, rows_per_step);
    if (!step_done) return step_done.error();
    if (on_step) on_step(*step_done);
    total.rows += step_done->rows;
    total.entries += step_done->entries;
    if (step_done->rows < rows_per_step) return total;
  }
}

caf::expected<std::size_t> trim_snapshotted(PGconn* conn,
                                            std::size_t rows_max) {
  auto limit = std::to_string(rows_max);
  const char* values[] = {limit.c_str()};
  result_ptr deleted{PQexecParams(conn, delete_snapshotted.c_str(), 1, nullptr,
                                  values, nullptr, nullptr, 0)};
  if (PQresultStatus(deleted.get()) != PGRES_COMMAND_OK)
    return failure(conn, "trimming snapshotted journal rows");
  return static_cast<std::size_t>(std::atoll(PQcmdTuples(deleted.get())));
}

caf::error forget_idle_cursors(PGconn* conn) {
  result_ptr forgotten{PQexec(conn, forget_cursors)};
  if (PQresultStatus(forgotten.get()) != PGRES_COMMAND_OK)
    return failure(conn, "forgetting idle journal cursors");
  return {};
}

} // namespace rsv::persistence::pg
