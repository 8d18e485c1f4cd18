#pragma once

#include <caf/expected.hpp>
#include <string>
#include <vector>

namespace rsv::persistence {

/// One versioned schema change, from `persistence/migrations/NNNN_name.sql`,
/// compiled into the binary.
struct migration {
  int version = 0;
  std::string name;
  std::string sql;
};

/// Every migration of this build, by version.
const std::vector<migration>& all_migrations();

struct migration_report {
  std::vector<int> applied; // versions applied by this call
  int schema_version = 0;   // the database's version afterwards
};

/// Applies the migrations the database lacks, each in its own transaction,
/// under a session advisory lock, so that several nodes starting at once
/// apply each migration exactly once. `dsn` empty means libpq's PG*
/// variables. Blocking: call from `reservations migrate` or a start-up
/// thread, never from an actor or I/O thread.
caf::expected<migration_report> apply_migrations(const std::string& dsn);

} // namespace rsv::persistence
