#include "persistence/cluster_queries.hpp"

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/limits.hpp"
#include "core/partition.hpp"
#include "persistence/pg_tables.hpp"

#include <algorithm>
#include <spdlog/spdlog.h>

namespace rsv::persistence::pg {

namespace {

caf::error unavailable(std::string what) {
  return make_error(errc::unavailable, std::move(what));
}

// The takeover locks its rows in partition order before it updates them:
// rsv_fence takes its FOR SHARE locks in that order too, so neither a fence
// nor another takeover can hold one row while waiting for another that this
// one holds.
constexpr prepared_statement lock_partitions{
    "rsv_cluster_lock", 1,
    "SELECT partition FROM cluster_partitions WHERE partition = "
    "ANY($1::int[]) ORDER BY partition FOR UPDATE"};
constexpr prepared_statement raise_epochs{
    "rsv_cluster_raise", 2,
    "UPDATE cluster_partitions SET epoch = epoch + 1, owner = $2, "
    "updated_at = now() WHERE partition = ANY($1::int[]) RETURNING "
    "partition, epoch"};
constexpr prepared_statement set_lock_timeout{
    "rsv_cluster_lock_timeout", 1,
    "SELECT set_config('lock_timeout', $1, true)"};
constexpr prepared_statement select_owners{
    "rsv_cluster_owners", 0,
    "SELECT partition, epoch, owner, (extract(epoch FROM updated_at) * "
    "1000)::bigint FROM cluster_partitions ORDER BY partition"};
constexpr prepared_statement next_section_nos{
    "rsv_cluster_section_nos", 1,
    "SELECT nextval('section_no_seq') FROM generate_series(1, $1::int)"};
constexpr prepared_statement select_bookings{
    "rsv_cluster_bookings", 1,
    "SELECT b.section_no, b.slot, s.event_id, s.id, s.price_cents, "
    "array_to_string(h.seats, ','), b.status, (extract(epoch FROM "
    "b.created_at) * 1000)::bigint FROM bookings b JOIN holds h USING "
    "(section_no, slot) JOIN sections s USING (section_no) WHERE "
    "b.customer_id = $1"};
// A seat is taken by an active hold until its expiry (a section expires a
// hold that is due before it acts, whatever its timer did) and by a
// confirmed booking; everything else is free.
constexpr prepared_statement select_events{
    "rsv_cluster_events", 0,
    "SELECT e.id, e.name, (extract(epoch FROM e.starts_at) * 1000)::bigint, "
    "coalesce((SELECT sum((r.value->>'seats')::bigint) FROM sections s "
    "CROSS JOIN LATERAL jsonb_array_elements(s.rows) AS r WHERE s.event_id "
    "= e.id), 0), coalesce((SELECT sum(cardinality(h.seats)) FROM sections s "
    "JOIN holds h USING (section_no) LEFT JOIN bookings b USING "
    "(section_no, slot) WHERE s.event_id = e.id AND ((h.status = 'active' "
    "AND h.expires_at > now()) OR (h.status = 'booked' AND b.status = "
    "'confirmed'))), 0) FROM events e ORDER BY e.starts_at, e.id"};

const std::string find_customer_sql = std::string{"SELECT "} +
                                      pg::customer_columns +
                                      " FROM customers WHERE email = $1";
const std::string find_idempotency_sql =
    std::string{"SELECT "} + pg::idempotency_columns +
    " FROM idempotency_records WHERE customer_id = $1 AND key = $2 AND "
    "created_at > now() - make_interval(secs => $3::int)";

const prepared_statement select_customer{"rsv_cluster_customer", 1,
                                         find_customer_sql.c_str()};
const prepared_statement select_idempotency{"rsv_cluster_idempotency", 3,
                                            find_idempotency_sql.c_str()};

constexpr const prepared_statement* cluster_statements[] = {
    &lock_partitions, &raise_epochs,     &set_lock_timeout,
    &select_owners,   &next_section_nos, &select_bookings,
    &select_events,   &select_customer,  &select_idempotency,
};

result_ptr exec(PGconn* conn, const prepared_statement& what,
                const std::vector<std::string>& params = {}) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& param : params)
    values.push_back(param.c_str());
  return result_ptr{PQexecPrepared(conn, what.name,
                                   static_cast<int>(values.size()),
                                   values.data(), nullptr, nullptr, 0)};
}

bool command_ok(PGconn* conn, const char* sql) {
  result_ptr result{PQexec(conn, sql)};
  return PQresultStatus(result.get()) == PGRES_COMMAND_OK;
}

/// The statement's rows, or why it failed.
caf::expected<result_ptr> rows_of(PGconn* conn, result_ptr result,
                                  const std::string& what) {
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
    return failure(conn, what);
  return result;
}

std::vector<std::string> split_seats(const std::string& seats) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start < seats.size();) {
    auto end = seats.find(',', start);
    if (end == std::string::npos) end = seats.size();
    out.push_back(seats.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/// One try of a takeover: the new epochs, or the error with its SQLSTATE
/// (a lock timeout is tried again).
struct bump_outcome {
  caf::expected<std::map<uint32_t, uint64_t>> epochs{
      std::map<uint32_t, uint64_t>{}};
  std::string sqlstate;
};

bump_outcome try_bump(PGconn* conn, const std::vector<uint32_t>& partitions,
                      const std::string& address) {
  bump_outcome out;
  auto fail = [&](const result_ptr& result, const std::string& what) {
    out.sqlstate = pg::sqlstate(result.get());
    out.epochs = failure(conn, what);
    command_ok(conn, "ROLLBACK");
    return std::move(out);
  };
  if (!command_ok(conn, "BEGIN")) {
    out.epochs = failure(conn, "starting a takeover");
    return out;
  }
  auto timeout =
      exec(conn, set_lock_timeout,
           {std::to_string(limits::cluster_bump_lock_timeout_ms) + "ms"});
  if (PQresultStatus(timeout.get()) != PGRES_TUPLES_OK)
    return fail(timeout, "setting lock_timeout");
  auto array = pg::int_array(partitions);
  auto locked = exec(conn, lock_partitions, {array});
  if (PQresultStatus(locked.get()) != PGRES_TUPLES_OK)
    return fail(locked, "locking partitions");
  if (static_cast<std::size_t>(PQntuples(locked.get())) != partitions.size()) {
    command_ok(conn, "ROLLBACK");
    out.epochs =
        make_error(errc::validation_failed, "no such partition among " + array +
                                                " (cluster_store::init makes "
                                                "rows 0..N-1)");
    return out;
  }
  auto raised = exec(conn, raise_epochs, {array, address});
  if (PQresultStatus(raised.get()) != PGRES_TUPLES_OK)
    return fail(raised, "raising epochs");
  std::map<uint32_t, uint64_t> epochs;
  for (int row = 0; row < PQntuples(raised.get()); ++row)
    epochs[static_cast<uint32_t>(int_at(raised.get(), row, 0))] =
        static_cast<uint64_t>(int_at(raised.get(), row, 1));
  result_ptr commit{PQexec(conn, "COMMIT")};
  if (PQresultStatus(commit.get()) != PGRES_COMMAND_OK) {
    out.sqlstate = pg::sqlstate(commit.get());
    out.epochs = failure(conn, "committing a takeover");
    return out;
  }
  out.epochs = std::move(epochs);
  return out;
}

} // namespace

bool prepare_cluster_statements(PGconn* conn) {
  for (const auto* statement : cluster_statements)
    if (!prepare(conn, *statement)) return false;
  return true;
}

caf::error init_cluster_tables(PGconn* conn, uint32_t partitions) {
  auto count = std::to_string(partitions);
  auto step = [&](const char* sql, std::vector<std::string> params,
                  ExecStatusType expected) -> caf::error {
    auto result = exec_params(conn, sql, params);
    if (PQresultStatus(result.get()) == expected) return {};
    auto err = failure(conn, "setting up the cluster tables");
    command_ok(conn, "ROLLBACK");
    return err;
  };
  if (!command_ok(conn, "BEGIN"))
    return failure(conn, "starting the cluster set-up");
  // Nodes starting at once: the second INSERT waits for the first one's
  // commit and then does nothing, and its SELECT sees the first one's count.
  if (auto err = step("INSERT INTO cluster_settings (partitions) VALUES "
                      "($1::int) ON CONFLICT (singleton) DO NOTHING",
                      {count}, PGRES_COMMAND_OK))
    return err;
  auto recorded =
      exec_params(conn, "SELECT partitions FROM cluster_settings", {});
  if (PQresultStatus(recorded.get()) != PGRES_TUPLES_OK ||
      PQntuples(recorded.get()) != 1) {
    auto err = failure(conn, "reading the partition count");
    command_ok(conn, "ROLLBACK");
    return err;
  }
  auto stored = static_cast<uint32_t>(int_at(recorded.get(), 0, 0));
  if (stored != partitions) {
    command_ok(conn, "ROLLBACK");
    return make_error(
        errc::validation_failed,
        "this node was started with " + count +
            " partitions, but the cluster's database records " +
            std::to_string(stored) +
            "; a different count would move events between partitions under "
            "running nodes");
  }
  if (auto err = step("INSERT INTO cluster_partitions (partition) SELECT "
                      "generate_series(0, $1::int - 1) ON CONFLICT "
                      "(partition) DO NOTHING",
                      {count}, PGRES_COMMAND_OK))
    return err;
  // Section numbers of sections that a single node created after migration
  // 0006 (it counts them in memory) are not behind the sequence; move it
  // past them, so that a cluster never hands out a number in use.
  if (auto err = step("SELECT setval('section_no_seq', m + 1, false) FROM "
                      "(SELECT max(section_no) AS m FROM sections) AS s, "
                      "section_no_seq q WHERE m IS NOT NULL AND "
                      "(m >= q.last_value)",
                      {}, PGRES_TUPLES_OK))
    return err;
  if (!command_ok(conn, "COMMIT"))
    return failure(conn, "committing the cluster set-up");
  return {};
}

caf::expected<std::map<uint32_t, uint64_t>>
raise_epochs_of(PGconn* conn, const std::vector<uint32_t>& partitions,
                const std::string& address) {
  if (partitions.empty()) return std::map<uint32_t, uint64_t>{};
  for (int attempt = 1;; ++attempt) {
    auto outcome = try_bump(conn, partitions, address);
    // 55P03: lock_timeout (a fenced batch still holds a row); 40P01: a
    // deadlock, which the ordered locks should rule out.
    bool waited = outcome.sqlstate == "55P03" || outcome.sqlstate == "40P01";
    if (outcome.epochs || !waited) return std::move(outcome.epochs);
    if (attempt >= limits::cluster_bump_attempts_max)
      return unavailable(
          "taking over partitions " + int_array(partitions) +
          ": still locked by a batch of their former owner after " +
          std::to_string(attempt) + " waits of " +
          std::to_string(limits::cluster_bump_lock_timeout_ms) + " ms");
    spdlog::warn("cluster store: partitions {} are locked by a batch of "
                 "their former owner; trying again ({} of {})",
                 int_array(partitions), attempt + 1,
                 limits::cluster_bump_attempts_max);
  }
}

caf::expected<std::vector<partition_owner>> read_owners(PGconn* conn) {
  auto rows = rows_of(conn, exec(conn, select_owners), "reading owners");
  if (!rows) return rows.error();
  auto* result = rows->get();
  std::vector<partition_owner> out;
  for (int row = 0; row < PQntuples(result); ++row)
    out.push_back({static_cast<uint32_t>(int_at(result, row, 0)),
                   static_cast<uint64_t>(int_at(result, row, 1)),
                   text_at(result, row, 2), int_at(result, row, 3)});
  return out;
}

caf::expected<recovered_state> read_partitions(PGconn* conn,
                                               const std::set<uint32_t>& wanted,
                                               uint32_t partition_count) {
  // One snapshot: the holds belong to exactly the sections read.
  if (!command_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    return failure(conn, "starting a partition snapshot");
  auto events = read_events(conn, [&](const std::string& id) {
    return wanted.count(partition_of(id, partition_count)) > 0;
  });
  if (!events) return events.error();
  std::vector<uint32_t> section_nos;
  for (const auto& [no, layout] : events->layouts)
    section_nos.push_back(no);
  auto holds = read_holds_of(conn, events->layouts, section_nos);
  if (!holds) return holds.error();
  if (!command_ok(conn, "COMMIT"))
    return failure(conn, "ending a partition snapshot");
  recovered_state state;
  state.events = std::move(events->events);
  state.holds = std::move(*holds);
  state.next_section_no = events->next_section_no;
  return state;
}

caf::expected<std::vector<uint32_t>> take_section_nos(PGconn* conn,
                                                      std::size_t n) {
  std::vector<uint32_t> out;
  if (n == 0) return out;
  auto rows = rows_of(conn, exec(conn, next_section_nos, {std::to_string(n)}),
                      "taking section numbers");
  if (!rows) return rows.error();
  for (int row = 0; row < PQntuples(rows->get()); ++row)
    out.push_back(static_cast<uint32_t>(int_at(rows->get(), row, 0)));
  return out;
}

caf::expected<std::optional<customer_record>>
find_customer(PGconn* conn, const std::string& email) {
  auto rows =
      rows_of(conn, exec(conn, select_customer, {email}), "reading a customer");
  if (!rows) return rows.error();
  if (PQntuples(rows->get()) == 0) return std::optional<customer_record>{};
  return std::optional<customer_record>{customer_at(rows->get(), 0)};
}

caf::expected<std::optional<idempotency_record>>
find_idempotency(PGconn* conn, const std::string& customer_id,
                 const std::string& key) {
  auto rows = rows_of(
      conn,
      exec(conn, select_idempotency,
           {customer_id, key, std::to_string(limits::idempotency_ttl_seconds)}),
      "reading an idempotency record");
  if (!rows) return rows.error();
  if (PQntuples(rows->get()) == 0) return std::optional<idempotency_record>{};
  return std::optional<idempotency_record>{idempotency_at(rows->get(), 0)};
}

caf::expected<std::vector<booking_view>>
read_bookings(PGconn* conn, const std::string& customer_id) {
  auto rows = rows_of(conn, exec(conn, select_bookings, {customer_id}),
                      "reading bookings");
  if (!rows) return rows.error();
  auto* result = rows->get();
  std::vector<booking_view> out;
  for (int row = 0; row < PQntuples(result); ++row) {
    record_ref ref{static_cast<uint32_t>(int_at(result, row, 0)),
                   static_cast<uint32_t>(int_at(result, row, 1)), 0};
    booking_view view;
    view.event_id = text_at(result, row, 2);
    ref.event_hash = fnv1a_64(view.event_id);
    view.booking_id = make_booking_id(ref);
    view.hold_id = make_hold_id(ref);
    view.section_id = text_at(result, row, 3);
    view.seats = split_seats(text_at(result, row, 5));
    view.total_cents =
        int_at(result, row, 4) * static_cast<int64_t>(view.seats.size());
    view.status = text_at(result, row, 6) == "cancelled"
                      ? booking_status::cancelled
                      : booking_status::confirmed;
    view.created_at_ms = int_at(result, row, 7);
    out.push_back(std::move(view));
  }
  std::sort(out.begin(), out.end(), listed_before);
  return out;
}

caf::expected<std::vector<event_summary>> read_event_summaries(PGconn* conn) {
  auto rows = rows_of(conn, exec(conn, select_events), "reading the events");
  if (!rows) return rows.error();
  auto* result = rows->get();
  std::vector<event_summary> out;
  for (int row = 0; row < PQntuples(result); ++row) {
    event_summary summary;
    summary.id = text_at(result, row, 0);
    summary.name = text_at(result, row, 1);
    summary.starts_at_ms = int_at(result, row, 2);
    auto total = int_at(result, row, 3);
    auto taken = int_at(result, row, 4);
    summary.seats_total = static_cast<uint32_t>(total);
    summary.seats_free =
        static_cast<uint32_t>(std::max<int64_t>(0, total - taken));
    out.push_back(std::move(summary));
  }
  return out;
}

} // namespace rsv::persistence::pg
