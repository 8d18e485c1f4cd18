#pragma once

// Private to persistence/: owning handles for libpq objects, so that a
// connection or result is freed on every path.
#include "core/model.hpp"

#include <caf/expected.hpp>
#include <libpq-fe.h>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace rsv::pg {

struct conn_deleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};

struct result_deleter {
  void operator()(PGresult* result) const { PQclear(result); }
};

using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// Connects (blocking) with `dsn` (empty: libpq's PG* variables), adding
/// timeouts and keepalives unless the DSN sets its own. Check PQstatus.
conn_ptr connect(const std::string& dsn);

/// `text` as an SQL string literal, quoted and escaped for `conn`'s
/// encoding (PQescapeLiteral); NULL if libpq cannot escape it.
std::string literal(PGconn* conn, const std::string& text);

using layout_map =
    std::unordered_map<uint32_t, std::shared_ptr<const section_layout>>;
using holds_by_section =
    std::unordered_map<uint32_t, std::vector<recorded_hold>>;

/// Reads recorded holds with their bookings: of one section, or of every
/// section in `layouts` when `section_no` is empty. Seat ids become indexes
/// through the layouts; a seat a layout lacks is an error.
caf::expected<holds_by_section> read_holds(PGconn* conn,
                                           const layout_map& layouts,
                                           std::optional<uint32_t> section_no);

} // namespace rsv::pg
