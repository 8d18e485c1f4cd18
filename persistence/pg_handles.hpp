#pragma once

// Private to persistence/: owning handles for libpq objects, so that a
// connection or result is freed on every path.
#include "core/errc.hpp"
#include "core/model.hpp"
#include "persistence/recovery.hpp"

#include <caf/expected.hpp>
#include <charconv>
#include <functional>
#include <libpq-fe.h>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rsv::persistence::pg {

struct conn_deleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};

struct result_deleter {
  void operator()(PGresult* result) const { PQclear(result); }
};

using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// `what` failed on `conn`: unavailable, with PostgreSQL's message.
inline caf::error failure(PGconn* conn, std::string_view what) {
  return make_error(errc::unavailable,
                    std::string{what} + ": " + PQerrorMessage(conn));
}

/// The transaction its creator opened on `conn` (BEGIN): rolled back when
/// it goes out of scope, unless `commit` committed it.
class transaction_scope {
public:
  explicit transaction_scope(PGconn* conn) : conn_(conn) {}
  ~transaction_scope();
  transaction_scope(const transaction_scope&) = delete;
  transaction_scope& operator=(const transaction_scope&) = delete;

  /// COMMIT; false when it failed (the transaction is over either way).
  bool commit();

private:
  PGconn* conn_;
  bool open_ = true;
};

/// Connects (blocking) with `dsn` (empty: libpq's PG* variables), adding
/// timeouts, keepalives and this process's application_name unless the
/// DSN sets its own. Check PQstatus.
conn_ptr connect(const std::string& dsn);

/// The wall clock's microseconds since the epoch, in hex: what names a
/// process's journal streams and its connections, so that a later process
/// never takes an earlier one's name.
std::string microseconds_now_hex();

/// The application_name `connect` gives: "reservations", or what
/// `name_connections` set.
const std::string& connection_name();

/// Sets the application_name of the connections this process opens from
/// now on. Call once at start, before any connection (it is not guarded).
void name_connections(std::string name);

/// True when `conn` still answers a query (`SELECT 1`): what a thread that
/// owns a connection checks while idle, so that /health stays live.
bool answers(PGconn* conn);

/// `text` as an SQL string literal, quoted and escaped for `conn`'s
/// encoding (PQescapeLiteral); NULL if libpq cannot escape it.
std::string literal(PGconn* conn, const std::string& text);

/// An integer column (times come back as milliseconds since the epoch); 0
/// when NULL.
inline int64_t int_at(PGresult* result, int row, int column) {
  const char* text = PQgetvalue(result, row, column);
  int64_t value = 0;
  std::from_chars(text, text + PQgetlength(result, row, column), value);
  return value;
}

/// A bigint column of a result in binary format (big-endian).
inline int64_t int8_at(PGresult* result, int row, int column) {
  const auto* bytes =
      reinterpret_cast<const unsigned char*>(PQgetvalue(result, row, column));
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value = (value << 8) | bytes[i];
  return static_cast<int64_t>(value);
}

inline std::string text_at(PGresult* result, int row, int column) {
  return {PQgetvalue(result, row, column),
          static_cast<std::size_t>(PQgetlength(result, row, column))};
}

/// A column's bytes as the result holds them (a bytea of a binary result),
/// valid while the result lives.
inline std::string_view bytes_at(PGresult* result, int row, int column) {
  return {PQgetvalue(result, row, column),
          static_cast<std::size_t>(PQgetlength(result, row, column))};
}

/// The SQLSTATE of a failed result (`55P03`), empty when there is none.
std::string sqlstate(const PGresult* result);

/// Array parameters in PostgreSQL's text form, for `$1::int[]` and
/// `$1::text[]`: each text element is double-quoted with `"` and `\`
/// escaped, which is the array syntax's quoting, not SQL's.
std::string int_array(const std::vector<uint32_t>& values);
std::string text_array(const std::vector<std::string>& values);

/// Runs `sql` with text parameters (PQexecParams: values never become SQL
/// text).
result_ptr exec_params(PGconn* conn, const char* sql,
                       const std::vector<std::string>& params);

using layout_map =
    std::unordered_map<uint32_t, std::shared_ptr<const section_layout>>;
using holds_by_section =
    std::unordered_map<uint32_t, std::vector<recorded_hold>>;

/// Reads what a section rebuilds from (store.hpp, section_loaded): live
/// holds with their bookings, and each section's last hold; of one section,
/// or of every section when `section_no` is empty. Seat ids become indexes
/// through the layouts; a seat a layout lacks is an error.
caf::expected<holds_by_section> read_holds(PGconn* conn,
                                           const layout_map& layouts,
                                           std::optional<uint32_t> section_no);

/// Reads what these sections rebuild from, as read_holds does.
caf::expected<holds_by_section>
read_holds_of(PGconn* conn, const layout_map& layouts,
              const std::vector<uint32_t>& section_nos);

/// Reads one hold with its booking, whatever its state: none when there is
/// no such hold.
caf::expected<holds_by_section> read_hold(PGconn* conn,
                                          const layout_map& layouts,
                                          uint32_t section_no, uint32_t slot);

/// The select list of a customers row, in the order customer_at reads it.
extern const char* const customer_columns;
customer_record customer_at(PGresult* result, int row);

/// The select list of an idempotency_records row, in the order
/// idempotency_at reads it.
extern const char* const idempotency_columns;
idempotency_record idempotency_at(PGresult* result, int row);

/// Events as recorded, with their sections in event order and the
/// sections' layouts.
struct recorded_events {
  std::vector<recovered_event> events;
  layout_map layouts;
  uint32_t next_section_no = 0; // past every section number read
};

/// Reads events (with their waiting rooms) and their sections, in the
/// caller's transaction: every event when `keep` is empty, else only the
/// events whose id it accepts, and only their sections. Start-up recovery
/// reads them all; a clustered node reads its partitions' (cluster_store).
caf::expected<recorded_events>
read_events(PGconn* conn,
            const std::function<bool(const std::string&)>& keep = {});

/// Reads the layouts of these sections (absent ones are left out).
caf::expected<layout_map> read_layouts(PGconn* conn,
                                       const std::vector<uint32_t>& numbers);

/// Reads the layout of a section that a journal row names; an error when
/// the sections table lacks it (its event commits before the section takes
/// a request, so that is a damaged database, not a race).
caf::expected<std::shared_ptr<const section_layout>>
read_journal_layout(PGconn* conn, uint32_t section_no);

} // namespace rsv::persistence::pg
