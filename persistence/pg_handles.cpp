#include "persistence/pg_handles.hpp"

namespace rsv::pg {

conn_ptr connect(const std::string& dsn) {
  // Defaults first: what the DSN (or the PG* variables) says wins. They keep
  // a dead server or network from blocking a connect or a query forever:
  // connecting gives up after 5 s, and a connection whose peer stops
  // answering is dropped after about 10 s.
  const char* keywords[] = {"connect_timeout",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "tcp_user_timeout",
                            "application_name",
                            "dbname",
                            nullptr};
  const char* values[] = {
      "5", "5", "2", "3", "10000", "reservations", dsn.c_str(), nullptr};
  return conn_ptr{PQconnectdbParams(keywords, values, 1)};
}

std::string literal(PGconn* conn, const std::string& text) {
  char* escaped = PQescapeLiteral(conn, text.data(), text.size());
  std::string out = escaped != nullptr ? escaped : "NULL";
  PQfreemem(escaped);
  return out;
}

} // namespace rsv::pg
