#include "persistence/pg_handles.hpp"

#include <chrono>
#include <cstdio>

namespace rsv::persistence::pg {

namespace {

std::string& process_connection_name() {
  static std::string name = "reservations";
  return name;
}

} // namespace

std::string microseconds_now_hex() {
  char hex[24];
  std::snprintf(hex, sizeof(hex), "%llx",
                static_cast<unsigned long long>(
                    std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()));
  return hex;
}

const std::string& connection_name() {
  return process_connection_name();
}

void name_connections(std::string name) {
  process_connection_name() = std::move(name);
}

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
  const char* values[] = {"5",         "5",     "2",
                          "3",         "10000", connection_name().c_str(),
                          dsn.c_str(), nullptr};
  return conn_ptr{PQconnectdbParams(keywords, values, 1)};
}

bool answers(PGconn* conn) {
  result_ptr ping{PQexec(conn, "SELECT 1")};
  return PQresultStatus(ping.get()) == PGRES_TUPLES_OK;
}

transaction_scope::~transaction_scope() {
  if (open_ && PQstatus(conn_) == CONNECTION_OK)
    result_ptr{PQexec(conn_, "ROLLBACK")};
}

bool transaction_scope::commit() {
  open_ = false;
  result_ptr result{PQexec(conn_, "COMMIT")};
  return PQresultStatus(result.get()) == PGRES_COMMAND_OK;
}

std::string literal(PGconn* conn, const std::string& text) {
  char* escaped = PQescapeLiteral(conn, text.data(), text.size());
  std::string out = escaped != nullptr ? escaped : "NULL";
  PQfreemem(escaped);
  return out;
}

std::string sqlstate(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return state != nullptr ? state : "";
}

std::string int_array(const std::vector<uint32_t>& values) {
  std::string out = "{";
  for (auto value : values) {
    if (out.size() > 1) out += ',';
    out += std::to_string(value);
  }
  return out + "}";
}

std::string text_array(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const auto& value : values) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : value) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

result_ptr exec_params(PGconn* conn, const char* sql,
                       const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& param : params)
    values.push_back(param.c_str());
  return result_ptr{PQexecParams(conn, sql, static_cast<int>(values.size()),
                                 nullptr, values.data(), nullptr, nullptr, 0)};
}

} // namespace rsv::persistence::pg
