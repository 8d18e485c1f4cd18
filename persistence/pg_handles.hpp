#pragma once

// Private to persistence/: owning handles for libpq objects, so that a
// connection or result is freed on every path.
#include <libpq-fe.h>
#include <memory>

namespace rsv::pg {

struct conn_deleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};

struct result_deleter {
  void operator()(PGresult* result) const { PQclear(result); }
};

using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

} // namespace rsv::pg
