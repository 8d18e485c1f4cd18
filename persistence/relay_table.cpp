#include "persistence/relay_table.hpp"

#include "core/errc.hpp"

#include <algorithm>
#include <set>

namespace rsv::persistence::pg {

caf::error relay_failure(PGconn* conn, std::string_view what) {
  return failure(conn, "PostgreSQL: " + std::string{what});
}

relay_table::relay_table(outbox_table kind, std::string name,
                         std::string payload, std::string filter)
    : kind_(kind), name_(std::move(name)), payload_(std::move(payload)),
      filter_(std::move(filter)) {}

caf::error relay_table::discover(PGconn* conn) {
  auto sql = "WITH RECURSIVE s (stream) AS ((SELECT stream FROM " + name_ +
             " ORDER BY stream LIMIT 1) UNION ALL SELECT (SELECT t.stream "
             "FROM " +
             name_ +
             " t WHERE t.stream > s.stream ORDER BY t.stream LIMIT 1) FROM s "
             "WHERE s.stream IS NOT NULL) SELECT stream FROM s WHERE stream "
             "IS NOT NULL";
  result_ptr result{PQexec(conn, sql.c_str())};
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
    return relay_failure(conn, "listing the " + name_ + " streams");
  std::set<std::string> found;
  for (int i = 0; i < PQntuples(result.get()); ++i)
    found.insert(PQgetvalue(result.get(), i, 0));
  // A stream without rows whose deliveries were all let go is forgotten (a
  // node that went away); should it write again, its numbers are higher
  // than any it had, so reading it from 0 is right.
  std::erase_if(marks_, [&](const auto& entry) {
    return !found.contains(entry.first) &&
           entry.second.delivered <= entry.second.trimmed;
  });
  for (const auto& stream : found)
    marks_.try_emplace(stream);
  return {};
}

caf::expected<std::vector<outbox_row>> relay_table::read(PGconn* conn,
                                                         std::size_t max_rows) {
  std::vector<outbox_row> rows;
  if (marks_.empty()) return rows;
  auto limit = std::to_string(max_rows);
  std::string sql = "SELECT t.stream, t.seq, (extract(epoch FROM "
                    "t.created_at) * 1000)::int8, t." +
                    payload_ + " FROM (";
  bool first = true;
  for (const auto& [stream, mark] : marks_) {
    if (!first) sql += " UNION ALL ";
    first = false;
    sql += "(SELECT * FROM " + name_ +
           " WHERE stream = " + literal(conn, stream) + " AND seq > " +
           std::to_string(mark.delivered) + filter_ + " ORDER BY seq LIMIT " +
           limit + ')';
  }
  // created_at only grows within a stream (the writer makes sure), so
  // this order is seq order within each stream.
  sql += ") t ORDER BY t.created_at, t.stream, t.seq LIMIT " + limit;
  // Binary results: a journal row's body as it is stored.
  result_ptr result{PQexecParams(conn, sql.c_str(), 0, nullptr, nullptr,
                                 nullptr, nullptr, 1)};
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
    return relay_failure(conn, "reading the " + name_);
  int count = PQntuples(result.get());
  rows.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    outbox_row row;
    row.table = kind_;
    row.stream = text_at(result.get(), i, 0);
    row.seq = int8_at(result.get(), i, 1);
    row.created_at_ms = int8_at(result.get(), i, 2);
    row.payload = text_at(result.get(), i, 3);
    rows.push_back(std::move(row));
  }
  return rows;
}

void relay_table::delivered(const outbox_row& row) {
  auto& mark = marks_[row.stream];
  mark.delivered = std::max(mark.delivered, row.seq);
}

relay_table::untrimmed relay_table::untrimmed_ranges() {
  untrimmed out;
  for (const auto& [stream, mark] : marks_) {
    if (mark.delivered <= mark.trimmed) continue;
    out.streams.add(stream);
    out.trimmed.add(mark.trimmed);
    out.delivered.add(mark.delivered);
    ++out.count;
  }
  return out;
}

void relay_table::trimmed() {
  for (auto& [stream, mark] : marks_)
    mark.trimmed = mark.delivered;
}

caf::expected<outbox_backlog> relay_table::read_backlog(PGconn* conn,
                                                        const std::string& sql,
                                                        std::string_view what) {
  result_ptr result{PQexec(conn, sql.c_str())};
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
    return relay_failure(conn, what);
  return outbox_backlog{int_at(result.get(), 0, 0), int_at(result.get(), 0, 1),
                        int_at(result.get(), 0, 2)};
}

std::string relay_table::marks_values(PGconn* conn) const {
  std::string sql = "(VALUES ";
  bool first = true;
  for (const auto& [stream, mark] : marks_) {
    if (!first) sql += ',';
    first = false;
    sql += '(' + literal(conn, stream) + ", " + std::to_string(mark.delivered) +
           "::int8)";
  }
  return sql + ')';
}

namespace {

/// The outbox: delivered rows are deleted, so the table itself is where the
/// relay got to; its marks start empty.
class outbox_relay_table final : public relay_table {
public:
  outbox_relay_table()
      : relay_table(outbox_table::outbox, "outbox", "payload", "") {}

  caf::error restart(PGconn*) override {
    marks_.clear();
    return {};
  }

  caf::error render(PGconn*, std::vector<outbox_row*>& rows) override {
    for (auto* row : rows)
      row->payload = expand_outbox_payload(row->payload);
    return {};
  }

  caf::error trim(PGconn* conn) override {
    auto ranges = untrimmed_ranges();
    if (ranges.count == 0) return {};
    // Rows up to a stream's mark were all delivered: they are read in seq
    // order, and a round is acknowledged only when all of it was. Only the
    // range since the last trim: below it are the deleted rows' index
    // entries, which vacuum has not necessarily removed yet.
    const char* values[] = {ranges.streams.c_str(), ranges.trimmed.c_str(),
                            ranges.delivered.c_str()};
    result_ptr result{PQexecParams(
        conn,
        "DELETE FROM outbox o USING unnest($1::text[], $2::int8[], "
        "$3::int8[]) AS v (stream, low, high) WHERE o.stream = v.stream AND "
        "o.seq > v.low AND o.seq <= v.high",
        3, nullptr, values, nullptr, nullptr, 0)};
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK)
      return relay_failure(conn, "trimming the outbox");
    trimmed();
    return {};
  }

  caf::expected<outbox_backlog> backlog(PGconn* conn) override {
    std::string sql = "SELECT count(*), coalesce(sum(o.records), 0), "
                      "coalesce((extract(epoch FROM min(o.created_at)) * "
                      "1000)::int8, 0) FROM outbox o";
    // Delivered rows not deleted yet are not waiting.
    if (!marks_.empty())
      sql += " LEFT JOIN " + marks_values(conn) +
             " AS m (stream, seq) ON m.stream = o.stream WHERE o.seq > "
             "coalesce(m.seq, 0)";
    return read_backlog(conn, sql, "measuring the outbox");
  }
};

} // namespace

std::unique_ptr<relay_table> make_outbox_table() {
  return std::make_unique<outbox_relay_table>();
}

} // namespace rsv::persistence::pg
