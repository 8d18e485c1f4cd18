#pragma once

// Private to persistence/: the one place where rows of the relational
// tables (events, sections, customers, holds, bookings, idempotency_records)
// are written, each through one prepared statement with an explicit column
// list that takes one array per column, so that a batch of any size
// executes each statement at most once. The store's writer uses them to
// write a batch directly (`--pg-batch-encoding pipeline`); the journal's
// projector, to apply journal rows to the tables.

#include "core/model.hpp"

#include <cstdint>
#include <functional>
#include <libpq-fe.h>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rsv::persistence::pg {

class pipeline_transaction;

struct prepared_statement {
  const char* name;
  int params;
  const char* sql;
};

/// Prepares `statement` on `conn`; false (logged) when PostgreSQL refuses.
bool prepare(PGconn* conn, const prepared_statement& statement);

/// Prepares every statement of `table_rows` on `conn`.
bool prepare_table_statements(PGconn* conn);

/// A PostgreSQL array literal in text format, for one array parameter. Every
/// text element is quoted, so that commas, braces and quotes inside it stay
/// data.
class array_param {
public:
  void add(std::string_view text);
  void add(int64_t number);
  void add_null();
  /// The literal; an array that was never added to is empty, not absent.
  const char* c_str();

private:
  void separate();
  std::string text_;
  bool closed_ = false;
};

/// A batch's rows, sorted into their statements, as one array per column.
///
/// `send` queues the statements that have rows in an order that respects
/// what depends on what: events and their sections, customers, holds
/// created, hold status changes, bookings, cancellations, idempotency
/// records. A slot is created at most once, its hold status changes at most
/// once, and its booking is cancelled only after it was created, so this
/// order leaves the same rows as writing the changes one by one, however
/// many batches (or journal rows) are gathered into one.
class table_rows {
public:
  table_rows();

  void add(const event_def& def, const std::vector<uint32_t>& section_nos);
  void add(const customer_record& customer);
  /// Adds `change` and the idempotency record it carries. `layout` is its
  /// section's: a new hold's seats are stored by id.
  void add(const seat_change& change, const section_layout& layout);
  void add(const idempotency_record& record);

  /// Rows added, over all tables.
  std::size_t size() const;

  /// Queues the statements with rows in `transaction`; false when libpq
  /// could not queue one (the connection is then unusable).
  bool send(pipeline_transaction& transaction);

  /// Executes the statements with rows on `conn` one after another, inside
  /// the caller's transaction; the first failure, if any, as a message.
  std::string execute(PGconn* conn);

private:
  struct rows {
    explicit rows(std::size_t column_count) : columns(column_count) {}
    std::vector<array_param> columns;
    std::size_t count = 0;
  };
  /// Calls `run(statement, values)` for each statement with rows, in
  /// dependency order, until it answers false.
  void each_statement(
      const std::function<bool(const prepared_statement&,
                               const std::vector<const char*>&)>& run);
  void add_key(rows& to, const seat_change& change);
  void add_status(const seat_change& change, std::string_view status);

  rows events_{6}, sections_{7}, customers_{4}, holds_{6}, statuses_{4},
      bookings_{5}, cancels_{3};
  // Idempotency records by customer and key, the last one added winning:
  // ON CONFLICT cannot touch a row twice in one statement.
  std::unordered_map<std::string, idempotency_record> latest_records_;
};

} // namespace rsv::persistence::pg
