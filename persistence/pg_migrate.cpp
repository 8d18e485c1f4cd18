#include "core/errc.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_handles.hpp"

#include <memory>
#include <string>

namespace rsv::persistence {

namespace {

/// The advisory lock that serialises migrations across nodes ("rsv" + 1).
constexpr const char* lock_key = "7500231";

using pg::conn_ptr;
using pg::result_ptr;

caf::error pg_error(const std::string& what, PGconn* conn) {
  std::string message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
    message.pop_back();
  return make_error(errc::unavailable, what + ": " + message);
}

/// Runs statements without parameters; answers the result of the last one.
caf::expected<result_ptr> exec(PGconn* conn, const std::string& sql,
                               const std::string& what) {
  result_ptr result{PQexec(conn, sql.c_str())};
  auto status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return pg_error(what, conn);
  return result;
}

} // namespace

caf::expected<migration_report> apply_migrations(const std::string& dsn) {
  auto conn = pg::connect(dsn);
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return pg_error("connecting to PostgreSQL", conn.get());
  auto quiet = exec(conn.get(), "SET client_min_messages = warning",
                    "configuring the session");
  if (!quiet) return quiet.error();
  auto locked =
      exec(conn.get(), std::string{"SELECT pg_advisory_lock("} + lock_key + ")",
           "taking the migration lock");
  if (!locked) return locked.error();
  // The lock is a session lock: it ends with the connection, whatever
  // happens below.
  auto table = exec(conn.get(),
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY,"
                    " name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    "creating schema_migrations");
  if (!table) return table.error();
  auto current = exec(conn.get(),
                      "SELECT coalesce(max(version), 0) FROM schema_migrations",
                      "reading the schema version");
  if (!current) return current.error();
  migration_report report;
  report.schema_version = std::stoi(PQgetvalue(current->get(), 0, 0));
  for (const auto& step : all_migrations()) {
    if (step.version <= report.schema_version) continue;
    auto what = "migration " + std::to_string(step.version) + " " + step.name;
    auto begin = exec(conn.get(), "BEGIN", what);
    if (!begin) return begin.error();
    auto applied = exec(conn.get(), step.sql, what);
    if (!applied) {
      auto err = applied.error();
      exec(conn.get(), "ROLLBACK", what);
      return err;
    }
    const char* params[] = {nullptr, step.name.c_str()};
    auto version = std::to_string(step.version);
    params[0] = version.c_str();
    result_ptr recorded{PQexecParams(
        conn.get(),
        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
        nullptr, params, nullptr, nullptr, 0)};
    if (PQresultStatus(recorded.get()) != PGRES_COMMAND_OK) {
      auto err = pg_error(what, conn.get());
      exec(conn.get(), "ROLLBACK", what);
      return err;
    }
    auto commit = exec(conn.get(), "COMMIT", what);
    if (!commit) return commit.error();
    report.applied.push_back(step.version);
    report.schema_version = step.version;
  }
  return report;
}

} // namespace rsv::persistence
