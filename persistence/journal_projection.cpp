#include "persistence/journal_projection.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/pg_tables.hpp"

#include <limits>
#include <map>
#include <set>

namespace rsv::persistence::pg {

namespace {

/// Serialises projection steps across every node and thread: any number
/// will do as long as nothing else in the database takes it.
constexpr const char* take_projection_lock =
    "SELECT pg_advisory_xact_lock(7223019160)";

/// A big-endian integer of a binary-format result column.
int64_t int8_at(PGresult* result, int row, int column) {
  const auto* bytes =
      reinterpret_cast<const unsigned char*>(PQgetvalue(result, row, column));
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value = (value << 8) | bytes[i];
  return static_cast<int64_t>(value);
}

bool run(PGconn* conn, const char* sql, ExecStatusType expected) {
  result_ptr result{PQexec(conn, sql)};
  return PQresultStatus(result.get()) == expected;
}

/// Ends the step's transaction unless it committed.
struct transaction {
  PGconn* conn;
  bool open = true;
  ~transaction() {
    if (open && PQstatus(conn) == CONNECTION_OK)
      run(conn, "ROLLBACK", PGRES_COMMAND_OK);
  }
};

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
  auto read = read_layouts(conn, {section_no});
  if (!read) return read.error();
  auto it = read->find(section_no);
  if (it == read->end())
    return make_error(errc::unavailable,
                      "the journal names section " +
                          std::to_string(section_no) +
                          ", which the sections table lacks");
  cache_[section_no] = it->second;
  return it->second;
}

caf::expected<projected> journal_projection::step(PGconn* conn,
                                                  std::size_t rows_max) {
  auto failed = [&](const std::string& what) {
    return make_error(errc::unavailable, "projecting the journal: " + what +
                                             ": " + PQerrorMessage(conn));
  };
  if (!run(conn, "BEGIN", PGRES_COMMAND_OK)) return failed("BEGIN");
  transaction tx{conn};
  auto idle = "SET LOCAL idle_in_transaction_session_timeout = " +
              std::to_string(limits::journal_step_idle_timeout_ms);
  if (!run(conn, idle.c_str(), PGRES_COMMAND_OK))
    return failed("bounding the step");
  if (!run(conn, take_projection_lock, PGRES_TUPLES_OK))
    return failed("taking the projection lock");
  auto limit = std::to_string(rows_max);
  const char* values[] = {limit.c_str()};
  // Binary results: the body's bytes as they are, seq as 8 bytes.
  result_ptr rows{PQexecParams(conn,
                               "SELECT stream, seq, body FROM journal ORDER "
                               "BY stream, seq LIMIT $1::int8",
                               1, nullptr, values, nullptr, nullptr, 1)};
  if (PQresultStatus(rows.get()) != PGRES_TUPLES_OK)
    return failed("reading the journal");
  projected done;
  if (PQntuples(rows.get()) == 0) return done;
  table_rows tables;
  std::map<std::string, int64_t> last_seq; // per stream: what to delete
  for (int row = 0; row < PQntuples(rows.get()); ++row) {
    auto stream = text_at(rows.get(), row, 0);
    auto seq = int8_at(rows.get(), row, 1);
    auto entries = journal::decode(
        {PQgetvalue(rows.get(), row, 2),
         static_cast<std::size_t>(PQgetlength(rows.get(), row, 2))});
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
    last_seq[stream] = seq;
    ++done.rows;
  }
  if (auto failure = tables.execute(conn); !failure.empty())
    return make_error(errc::unavailable, "projecting the journal: " + failure);
  array_param stream_param, seq_param;
  for (const auto& [stream, seq] : last_seq) {
    stream_param.add(stream);
    seq_param.add(seq);
  }
  const char* bounds[] = {stream_param.c_str(), seq_param.c_str()};
  result_ptr deleted{PQexecParams(
      conn,
      "DELETE FROM journal j USING unnest($1::text[], $2::int8[]) AS v "
      "(stream, seq) WHERE j.stream = v.stream AND j.seq <= v.seq",
      2, nullptr, bounds, nullptr, nullptr, 0)};
  if (PQresultStatus(deleted.get()) != PGRES_COMMAND_OK)
    return failed("deleting projected rows");
  if (!run(conn, "COMMIT", PGRES_COMMAND_OK)) return failed("COMMIT");
  tx.open = false;
  return done;
}

caf::expected<projected> journal_projection::drain(
    PGconn* conn, std::size_t rows_per_step,
    const std::function<void(const projected&)>& on_step) {
  // The usual case, an empty journal, costs one read of its index.
  result_ptr any{PQexec(conn, "SELECT 1 FROM journal LIMIT 1")};
  if (PQresultStatus(any.get()) != PGRES_TUPLES_OK)
    return make_error(errc::unavailable, std::string{"reading the journal: "} +
                                             PQerrorMessage(conn));
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

} // namespace rsv::persistence::pg
