#include "persistence/pg_store.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "persistence/outbox.hpp"
#include "persistence/pg_handles.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <random>
#include <set>
#include <shared_mutex>
#include <spdlog/spdlog.h>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>

namespace rsv {

namespace {

struct event_write {
  event_def def;
  std::vector<uint32_t> section_nos;
  write_fence fence;
};

/// A read of one section's live holds, or of one hold (`slot`), ordered
/// after the writes queued before it.
struct section_load {
  uint32_t section_no = 0;
  std::optional<uint32_t> slot;
  section_loaded done;
};

struct pending_write {
  std::variant<event_write, customer_record, seat_change, idempotency_record,
               section_load>
      what;
  store_ack done; // empty for a section_load, which answers through its own

  bool is_load() const { return std::holds_alternative<section_load>(what); }

  /// Answers the write, or the load, once: later calls do nothing, so that
  /// a writer restarted in the middle of a batch answers only what it had
  /// not answered yet.
  void answer(caf::error err) {
    if (auto* load = std::get_if<section_load>(&what)) {
      auto loaded = std::exchange(load->done, nullptr);
      if (loaded) loaded(std::move(err));
      return;
    }
    auto acknowledge = std::exchange(done, nullptr);
    if (acknowledge) acknowledge(std::move(err));
  }
};

using pg::conn_ptr;
using pg::result_ptr;

std::string timestamp(millis ms) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "to_timestamp(%lld.%03lld)",
                static_cast<long long>(ms / 1000),
                static_cast<long long>(ms % 1000));
  return buf;
}

/// A PostgreSQL array literal in text format, for one array parameter of
/// the pipeline encoding. Every element is quoted, so that commas, braces
/// and quotes inside it stay data.
class array_param {
public:
  void add(std::string_view text) {
    text_ += text_.empty() ? "{\"" : ",\"";
    for (char c : text) {
      if (c == '"' || c == '\\') text_ += '\\';
      text_ += c;
    }
    text_ += '"';
  }
  void add(int64_t number) {
    text_ += text_.empty() ? "{" : ",";
    text_ += std::to_string(number);
  }
  /// The literal; an array that was never added to is empty, not absent.
  const char* c_str() {
    if (!closed_) {
      text_ = text_.empty() ? "{}" : text_ + '}';
      closed_ = true;
    }
    return text_.c_str();
  }

private:
  std::string text_;
  bool closed_ = false;
};

/// One prepared statement of the pipeline encoding: its rows as one array
/// per column, which unnest() turns back into rows.
struct unnest_rows {
  explicit unnest_rows(std::size_t column_count) : columns(column_count) {}
  std::vector<array_param> columns;
  std::size_t rows = 0;
};

/// The pipeline encoding's statements, prepared on every connection. Each
/// takes one array per column, so a batch executes each at most once,
/// whatever its size; timestamps travel as milliseconds since the epoch.
struct prepared_statement {
  const char* name;
  int params;
  const char* sql;
};

constexpr prepared_statement insert_holds{
    "rsv_insert_holds", 6,
    "INSERT INTO holds SELECT v.section_no, v.slot, v.customer_id, "
    "v.seats::text[], 'active', to_timestamp(v.at_ms / 1000.0), "
    "to_timestamp(v.expires_ms / 1000.0), to_timestamp(v.at_ms / 1000.0) "
    "FROM unnest($1::int[], $2::int[], $3::text[], $4::text[], $5::int8[], "
    "$6::int8[]) AS v (section_no, slot, customer_id, seats, at_ms, "
    "expires_ms)"};
constexpr prepared_statement update_statuses{
    "rsv_update_statuses", 4,
    "UPDATE holds h SET status = v.status, updated_at = to_timestamp(v.at_ms "
    "/ 1000.0) FROM unnest($1::int[], $2::int[], $3::text[], $4::int8[]) AS "
    "v (section_no, slot, status, at_ms) WHERE h.section_no = v.section_no "
    "AND h.slot = v.slot"};
constexpr prepared_statement insert_bookings{
    "rsv_insert_bookings", 5,
    "INSERT INTO bookings SELECT v.section_no, v.slot, v.customer_id, "
    "'confirmed', v.total_cents, to_timestamp(v.at_ms / 1000.0), NULL FROM "
    "unnest($1::int[], $2::int[], $3::text[], $4::int8[], $5::int8[]) AS v "
    "(section_no, slot, customer_id, total_cents, at_ms)"};
constexpr prepared_statement cancel_bookings{
    "rsv_cancel_bookings", 3,
    "UPDATE bookings b SET status = 'cancelled', cancelled_at = "
    "to_timestamp(v.at_ms / 1000.0) FROM unnest($1::int[], $2::int[], "
    "$3::int8[]) AS v (section_no, slot, at_ms) WHERE b.section_no = "
    "v.section_no AND b.slot = v.slot"};
constexpr prepared_statement insert_customers{
    "rsv_insert_customers", 4,
    "INSERT INTO customers SELECT v.id, v.email, v.password_hash, "
    "to_timestamp(v.at_ms / 1000.0) FROM unnest($1::text[], $2::text[], "
    "$3::text[], $4::int8[]) AS v (id, email, password_hash, at_ms)"};
constexpr prepared_statement upsert_idempotency{
    "rsv_upsert_idempotency", 7,
    "INSERT INTO idempotency_records SELECT v.customer_id, v.key, "
    "v.fingerprint, v.status, v.body, v.location, to_timestamp(v.at_ms / "
    "1000.0) FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], "
    "$5::text[], $6::text[], $7::int8[]) AS v (customer_id, key, "
    "fingerprint, status, body, location, at_ms) ON CONFLICT (customer_id, "
    "key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, status = "
    "EXCLUDED.status, body = EXCLUDED.body, location = EXCLUDED.location, "
    "created_at = EXCLUDED.created_at"};
constexpr prepared_statement insert_outbox{
    "rsv_insert_outbox", 5,
    "INSERT INTO outbox VALUES ($1, $2::int8, to_timestamp($3::int8 / "
    "1000.0), $4::int, $5)"};

// The cluster's fence (migration 0006, docs/cluster.md): the first statement
// of a transaction whose writes were made under an ownership epoch. It fails
// with SQLSTATE RSV01 when any of them is no longer current. The test-only
// switch that turns fencing off asks the second instead, which only tells.
constexpr prepared_statement check_fence{
    "rsv_check_fence", 2, "SELECT rsv_fence($1::int[], $2::int8[])"};
constexpr prepared_statement check_stale{
    "rsv_check_stale", 2, "SELECT rsv_stale_epochs($1::int[], $2::int8[])"};
constexpr const char* fenced_sqlstate = "RSV01";

constexpr prepared_statement pipeline_statements[] = {
    insert_holds,    update_statuses,  insert_bookings,
    cancel_bookings, insert_customers, upsert_idempotency,
    insert_outbox,   check_fence,      check_stale};

/// The distinct ownership fences a batch's writes were made under, as the
/// two array parameters of rsv_fence; empty when none was (a single node).
struct batch_fences {
  array_param partitions;
  array_param epochs;
  std::size_t count = 0;
};

batch_fences fences_of(const std::vector<const pending_write*>& batch) {
  std::set<write_fence> distinct;
  for (const auto* write : batch) {
    if (const auto* change = std::get_if<seat_change>(&write->what))
      distinct.insert(change->fence);
    else if (const auto* event = std::get_if<event_write>(&write->what))
      distinct.insert(event->fence);
  }
  batch_fences out;
  for (const auto& fence : distinct) {
    if (fence.epoch == 0) continue;
    out.partitions.add(static_cast<int64_t>(fence.partition));
    out.epochs.add(static_cast<int64_t>(fence.epoch));
    ++out.count;
  }
  return out;
}

} // namespace

/// What a refused statement means for its writes: the fence's refusal
/// (SQLSTATE RSV01), an email another node registered first (in a
/// cluster, the unique index is where two registrations meet), or an
/// outage or refused row (unavailable).
errc refusal_of(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  if (state != nullptr && std::string_view{state} == fenced_sqlstate)
    return errc::fenced;
  const char* constraint = PQresultErrorField(result, PG_DIAG_CONSTRAINT_NAME);
  if (constraint != nullptr &&
      std::string_view{constraint} == "customers_email_key")
    return errc::email_taken;
  return errc::unavailable;
}

/// What every writer shares: the configuration, the metrics, and the
/// layouts that turn seat indexes into seat ids.
struct shared_state {
  explicit shared_state(pg_store_config cfg) : config(std::move(cfg)) {
    if (config.registry) {
      writer_restarts = &actor_restarts(*config.registry, "store_writer");
      delays_injected = &chaos_faults(*config.registry, "commit_delay");
      failures_injected = &chaos_faults(*config.registry, "commit_failure");
      crashes_injected = &chaos_faults(*config.registry, "writer_crash");
      batch_rows =
          &prometheus::BuildHistogram()
               .Name("rsv_store_batch_rows")
               .Help("Writes per PostgreSQL transaction")
               .Register(*config.registry)
               .Add({}, prometheus::Histogram::BucketBoundaries{
                            1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000});
      commit_seconds =
          &prometheus::BuildHistogram()
               .Name("rsv_store_commit_seconds")
               .Help("Time to write and commit one batch")
               .Register(*config.registry)
               .Add({}, prometheus::Histogram::BucketBoundaries{
                            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                            0.25, 0.5, 1, 2.5, 5});
      fenced_batches = &prometheus::BuildCounter()
                            .Name("rsv_store_fenced_batches_total")
                            .Help("Transactions the cluster's fence refused: "
                                  "their partitions had moved to another node")
                            .Register(*config.registry)
                            .Add({});
      if (!config.fencing)
        stale_batches =
            &prometheus::BuildCounter()
                 .Name("rsv_store_unfenced_stale_batches_total")
                 .Help("With fencing turned off (a test switch): "
                       "transactions written under an epoch that was no "
                       "longer current, which the fence would have refused")
                 .Register(*config.registry)
                 .Add({});
    }
  }

  /// A transaction PostgreSQL refused, as its writes are answered.
  caf::error refused(errc refusal, const std::string& message) {
    return make_error(refusal, "PostgreSQL: " + message);
  }

  /// A group commit the fence refused: counted once, whatever its writes
  /// meet when they are tried again one by one.
  void fenced(const caf::error& err) {
    if (fenced_batches != nullptr) fenced_batches->Increment();
    spdlog::warn("a batch was fenced: {}", describe(err));
  }

  void stale_batch() {
    if (stale_batches != nullptr) stale_batches->Increment();
    spdlog::error("fencing is OFF (test switch) and a batch was written under "
                  "a stale epoch");
  }

  std::shared_ptr<const section_layout> layout(uint32_t section_no) {
    std::shared_lock<std::shared_mutex> guard{layouts_mutex};
    auto it = layouts.find(section_no);
    return it == layouts.end() ? nullptr : it->second;
  }

  void learn(std::shared_ptr<const section_layout> layout) {
    std::unique_lock<std::shared_mutex> guard{layouts_mutex};
    layouts[layout->section_no] = std::move(layout);
  }

  pg_store_config config;
  // Group commit at work: rows per transaction and the time COMMIT takes.
  prometheus::Histogram* batch_rows = nullptr;
  prometheus::Histogram* commit_seconds = nullptr;
  prometheus::Counter* fenced_batches = nullptr;
  prometheus::Counter* stale_batches = nullptr;
  // Supervision and the chaos facility's faults (store.hpp).
  store_faults faults;
  prometheus::Counter* writer_restarts = nullptr;
  prometheus::Counter* delays_injected = nullptr;
  prometheus::Counter* failures_injected = nullptr;
  prometheus::Counter* crashes_injected = nullptr;

private:
  std::shared_mutex layouts_mutex;
  pg::layout_map layouts; // guarded by layouts_mutex
};

/// One writer: a connection, its queue and the thread that commits it.
/// A section's writes and loads always go to the same writer, so they
/// commit in the order the section made them.
struct writer {
  writer(shared_state& shared_state, std::size_t index)
      : shared(shared_state), config(shared_state.config), purges(index == 0),
        stream(config.outbox_node.empty()
                   ? std::string{}
                   : config.outbox_node + '/' + std::to_string(index)) {
    thread = std::thread([this] { supervise(); });
  }

  ~writer() { stop(); }

  /// Commits what is queued, then ends the thread; later pushes fail.
  void stop() {
    {
      std::lock_guard<std::mutex> guard{mutex};
      stopping = true;
    }
    wake.notify_all();
    if (thread.joinable()) thread.join();
  }

  shared_state& shared;
  const pg_store_config& config;
  const bool purges;        // this writer deletes old idempotency records
  const std::string stream; // its outbox stream; empty: no outbox
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<pending_write> queue; // guarded by mutex
  bool stopping = false;           // guarded by mutex
  std::atomic<service_state> state{service_state::down};
  // Writer thread only.
  conn_ptr conn;
  std::chrono::steady_clock::time_point next_purge{};
  // The next outbox row's number in this stream, and the newest row's
  // time: rows are numbered in commit order and their times never go back,
  // which is the order the relay reads them in.
  int64_t next_outbox_seq = 1;
  millis last_outbox_ms = 0;
  // The batch being written: a member, so that a restart can answer it.
  std::vector<pending_write> in_flight;
  std::minstd_rand dice{std::random_device{}()}; // injected failures
  std::thread thread;

  void push(pending_write write) {
    bool stopped = false;
    {
      std::lock_guard<std::mutex> guard{mutex};
      stopped = stopping;
      if (queue.size() < config.queue_max && !stopping) {
        queue.push_back(std::move(write));
        wake.notify_one();
        return;
      }
    }
    write.answer(
        make_error(errc::unavailable,
                   std::string{stopped ? "the store is closed"
                                       : "the store's write queue is full"}));
  }

  std::string literal(const std::string& text) {
    return pg::literal(conn.get(), text);
  }

  bool connect() {
    conn = pg::connect(config.dsn);
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      spdlog::warn("PostgreSQL unreachable: {}", PQerrorMessage(conn.get()));
      conn.reset();
      return false;
    }
    // A commit is acknowledged once it is on disk; statements cannot hang.
    result_ptr set{PQexec(conn.get(), "SET synchronous_commit = on; "
                                      "SET statement_timeout = 10000")};
    if (PQresultStatus(set.get()) != PGRES_COMMAND_OK) {
      conn.reset();
      return false;
    }
    // Prepared statements live as long as their connection: a new
    // connection prepares them again.
    if (config.encoding == batch_encoding::pipeline) {
      for (const auto& statement : pipeline_statements) {
        result_ptr prepared{PQprepare(conn.get(), statement.name, statement.sql,
                                      statement.params, nullptr)};
        if (PQresultStatus(prepared.get()) != PGRES_COMMAND_OK) {
          spdlog::warn("PostgreSQL: preparing {}: {}", statement.name,
                       PQerrorMessage(conn.get()));
          conn.reset();
          return false;
        }
      }
    }
    if (!stream.empty()) {
      // A transaction whose connection died may have committed its row:
      // continue after whatever the stream has.
      auto sql = "SELECT coalesce(max(seq), 0) FROM outbox WHERE stream = " +
                 literal(stream);
      result_ptr last{PQexec(conn.get(), sql.c_str())};
      if (PQresultStatus(last.get()) != PGRES_TUPLES_OK) {
        spdlog::warn("PostgreSQL: reading outbox stream {}: {}", stream,
                     PQerrorMessage(conn.get()));
        conn.reset();
        return false;
      }
      // The relay deletes delivered rows, so the table may not show how far
      // the stream got: numbers start no lower than the clock in
      // microseconds, which a restarted node has passed (a relay on another
      // node skips numbers it saw delivered).
      auto clock_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
      next_outbox_seq = std::max<int64_t>(
          {next_outbox_seq, std::atoll(PQgetvalue(last.get(), 0, 0)) + 1,
           static_cast<int64_t>(clock_us)});
    }
    return true;
  }

  /// The outbox row of a batch: the Kafka records of its changes, or
  /// nothing when it has none (customers, idempotency records). False when
  /// a change's section is unknown.
  bool render_outbox(const std::vector<const pending_write*>& batch,
                     std::string& sql, millis& created_ms) {
    std::string payload;
    int64_t records = 0;
    if (!outbox_payload(batch, payload, records, created_ms)) return false;
    if (records == 0) return true;
    sql += "INSERT INTO outbox VALUES (" + literal(stream) + ", " +
           std::to_string(next_outbox_seq) + ", " + timestamp(created_ms) +
           ", " + std::to_string(records) + ", " + literal(payload) + ");\n";
    return true;
  }

  /// A transaction committed; `outbox_ms` is its outbox row's time, 0 when
  /// it had none. The stream's next row takes the next number, and the
  /// relay is woken.
  void outbox_committed(millis outbox_ms) {
    if (outbox_ms == 0) return;
    ++next_outbox_seq;
    last_outbox_ms = outbox_ms;
    if (config.on_outbox_commit) config.on_outbox_commit();
  }

  /// The records of a batch's outbox row and its time; no records when it
  /// has none. False when a change's section is unknown.
  bool outbox_payload(const std::vector<const pending_write*>& batch,
                      std::string& payload, int64_t& records,
                      millis& created_ms) {
    auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    for (const auto* write : batch) {
      if (const auto* event = std::get_if<event_write>(&write->what)) {
        render_outbox_record(event->def, now_ms, payload);
        ++records;
      } else if (const auto* change = std::get_if<seat_change>(&write->what)) {
        auto layout = shared.layout(change->section_no);
        if (!layout) return false;
        render_outbox_record(*change, *layout, payload);
        ++records;
      }
    }
    if (records > 0) created_ms = std::max(now_ms, last_outbox_ms);
    return true;
  }

  std::string idempotency_row(const idempotency_record& record) {
    return literal(record.customer_id) + ", " + literal(record.key) + ", " +
           literal(record.fingerprint) + ", " +
           std::to_string(record.response.status) + ", " +
           literal(record.response.body) + ", " +
           literal(record.response.location) + ", " +
           timestamp(record.created_at_ms);
  }

  /// A hold's seats as a text[] literal of seat ids; nullopt for a section
  /// the writer does not know.
  std::optional<std::string> seat_array(const seat_change& change) {
    auto layout = shared.layout(change.section_no);
    if (!layout) return std::nullopt;
    std::string seats = "{";
    for (auto index : change.seat_indexes) {
      if (seats.size() > 1) seats += ',';
      seats += layout->seat_id(index);
    }
    seats += "}";
    return seats;
  }

  void render_idempotency(const idempotency_record& record, std::string& sql) {
    // A record the node forgot (past 24 h in memory, not yet purged here)
    // is simply replaced.
    sql += "INSERT INTO idempotency_records VALUES (" +
           idempotency_row(record) +
           ") ON CONFLICT (customer_id, key) DO UPDATE SET fingerprint = "
           "EXCLUDED.fingerprint, status = EXCLUDED.status, body = "
           "EXCLUDED.body, location = EXCLUDED.location, created_at = "
           "EXCLUDED.created_at;\n";
  }

  /// Appends the SQL of one write; false when it cannot be written at all.
  bool render(const pending_write& write, std::string& sql) {
    if (const auto* record = std::get_if<idempotency_record>(&write.what)) {
      render_idempotency(*record, sql);
      return true;
    }
    if (!render_change(write, sql)) return false;
    if (const auto* change = std::get_if<seat_change>(&write.what);
        change != nullptr && change->idempotency)
      render_idempotency(*change->idempotency, sql);
    return true;
  }

  bool render_change(const pending_write& write, std::string& sql) {
    if (const auto* event = std::get_if<event_write>(&write.what)) {
      const auto& def = event->def;
      // Every field of the definition, as pg_recovery reads it back: a
      // field left out here is lost at the next restart (the waiting room
      // was, and with it the queue of an on-sale).
      sql += "INSERT INTO events (id, name, starts_at, hold_ttl_seconds, "
             "max_seats_per_customer, waiting_room) VALUES (";
      sql += literal(def.id) + ", " + literal(def.name) + ", " +
             timestamp(def.starts_at_ms) + ", " +
             std::to_string(def.hold_ttl_seconds) + ", " +
             (def.max_seats_per_customer
                  ? std::to_string(*def.max_seats_per_customer)
                  : std::string{"NULL"}) +
             ", " +
             (def.waiting_room
                  ? literal(std::string{R"({"enabled":)"} +
                            (def.waiting_room->enabled ? "true" : "false") +
                            R"(,"admit_per_second":)" +
                            std::to_string(def.waiting_room->admit_per_second) +
                            "}") +
                        "::jsonb"
                  : std::string{"NULL"}) +
             ");\n";
      for (std::size_t i = 0; i < def.sections.size(); ++i) {
        const auto& section = def.sections[i];
        std::string rows = "[";
        for (const auto& row : section.rows) {
          if (rows.size() > 1) rows += ',';
          rows += R"({"label":")" + row.label + R"(","seats":)" +
                  std::to_string(row.seats) + "}";
        }
        rows += "]";
        sql += "INSERT INTO sections VALUES (" +
               std::to_string(event->section_nos[i]) + ", " + literal(def.id) +
               ", " + literal(section.id) + ", " + std::to_string(i) + ", " +
               literal(section.name) + ", " +
               std::to_string(section.price_cents) + ", " + literal(rows) +
               ");\n";
      }
      return true;
    }
    if (const auto* customer = std::get_if<customer_record>(&write.what)) {
      sql += "INSERT INTO customers VALUES (" + literal(customer->customer_id) +
             ", " + literal(customer->email) + ", " +
             literal(customer->password_hash) + ", " +
             timestamp(customer->created_at_ms) + ");\n";
      return true;
    }
    const auto& change = std::get<seat_change>(write.what);
    auto key =
        std::to_string(change.section_no) + ", " + std::to_string(change.slot);
    auto where = " WHERE section_no = " + std::to_string(change.section_no) +
                 " AND slot = " + std::to_string(change.slot) + ";\n";
    auto at = timestamp(change.at_ms);
    switch (change.kind) {
    case change_kind::hold_created: {
      auto seats = seat_array(change);
      if (!seats) return false;
      sql += "INSERT INTO holds VALUES (" + key + ", " +
             literal(change.customer_id) + ", " + literal(*seats) +
             ", 'active', " + at + ", " + timestamp(change.expires_at_ms) +
             ", " + at + ");\n";
      return true;
    }
    case change_kind::hold_released:
    case change_kind::hold_expired:
      sql +=
          std::string{"UPDATE holds SET status = '"} +
          (change.kind == change_kind::hold_released ? "released" : "expired") +
          "', updated_at = " + at + where;
      return true;
    case change_kind::booking_confirmed:
      sql += "UPDATE holds SET status = 'booked', updated_at = " + at + where;
      sql += "INSERT INTO bookings VALUES (" + key + ", " +
             literal(change.customer_id) + ", 'confirmed', " +
             std::to_string(change.amount_cents) + ", " + at + ", NULL);\n";
      return true;
    case change_kind::booking_cancelled:
      sql += "UPDATE bookings SET status = 'cancelled', cancelled_at = " + at +
             where;
      return true;
    }
    return false;
  }

  /// Renders a batch as a few multi-row statements, one per kind of row,
  /// in an order that respects what depends on what: events, holds created,
  /// hold status changes, bookings, cancellations, idempotency records. A
  /// slot is created at most once, its hold status changes at most once, and
  /// its booking is cancelled only after it was created, so this order gives
  /// the same result as writing the batch statement by statement. PostgreSQL
  /// then parses and plans six statements instead of one per write.
  bool render_multirow(const std::vector<const pending_write*>& batch,
                       std::string& sql) {
    std::string holds, statuses, bookings, cancels;
    std::vector<const idempotency_record*> records;
    auto add = [](std::string& rows, const std::string& row) {
      rows += rows.empty() ? "(" : ",\n(";
      rows += row;
      rows += ')';
    };
    for (const auto* write : batch) {
      if (const auto* record = std::get_if<idempotency_record>(&write->what)) {
        records.push_back(record);
        continue;
      }
      const auto* change = std::get_if<seat_change>(&write->what);
      if (change == nullptr) { // events and customers: rare, one by one
        if (!render_change(*write, sql)) return false;
        continue;
      }
      auto key = std::to_string(change->section_no) + ", " +
                 std::to_string(change->slot);
      auto at = timestamp(change->at_ms);
      switch (change->kind) {
      case change_kind::hold_created: {
        auto seats = seat_array(*change);
        if (!seats) return false;
        add(holds, key + ", " + literal(change->customer_id) + ", " +
                       literal(*seats) + ", 'active', " + at + ", " +
                       timestamp(change->expires_at_ms) + ", " + at);
        break;
      }
      case change_kind::hold_released:
        add(statuses, key + ", 'released', " + at);
        break;
      case change_kind::hold_expired:
        add(statuses, key + ", 'expired', " + at);
        break;
      case change_kind::booking_confirmed:
        add(statuses, key + ", 'booked', " + at);
        add(bookings,
            key + ", " + literal(change->customer_id) + ", 'confirmed', " +
                std::to_string(change->amount_cents) + ", " + at + ", NULL");
        break;
      case change_kind::booking_cancelled:
        add(cancels, key + ", " + at);
        break;
      }
      if (change->idempotency) records.push_back(change->idempotency.get());
    }
    if (!holds.empty()) sql += "INSERT INTO holds VALUES " + holds + ";\n";
    if (!statuses.empty())
      sql += "UPDATE holds h SET status = v.status, updated_at = v.at FROM "
             "(VALUES " +
             statuses +
             ") AS v (section_no, slot, status, at) WHERE h.section_no = "
             "v.section_no AND h.slot = v.slot;\n";
    if (!bookings.empty())
      sql += "INSERT INTO bookings VALUES " + bookings + ";\n";
    if (!cancels.empty())
      sql += "UPDATE bookings b SET status = 'cancelled', cancelled_at = v.at "
             "FROM (VALUES " +
             cancels +
             ") AS v (section_no, slot, at) WHERE b.section_no = "
             "v.section_no AND b.slot = v.slot;\n";
    // One row per key: ON CONFLICT cannot touch a row twice in a statement.
    std::unordered_map<std::string, const idempotency_record*> latest;
    std::string rows;
    for (auto it = records.rbegin(); it != records.rend(); ++it)
      if (latest.emplace((*it)->customer_id + '\n' + (*it)->key, *it).second)
        add(rows, idempotency_row(**it));
    if (!rows.empty())
      sql += "INSERT INTO idempotency_records VALUES " + rows +
             " ON CONFLICT (customer_id, key) DO UPDATE SET fingerprint = "
             "EXCLUDED.fingerprint, status = EXCLUDED.status, body = "
             "EXCLUDED.body, location = EXCLUDED.location, created_at = "
             "EXCLUDED.created_at;\n";
    return true;
  }

  /// A batch's rows for the pipeline encoding: one set of column arrays per
  /// prepared statement.
  struct pipeline_rows {
    unnest_rows customers{4}, holds{6}, statuses{4}, bookings{5}, cancels{3},
        records{7};
  };

  /// Sorts a batch's rows into their statements. The statements run in the
  /// order of render_multirow (customers, which depend on nothing, first),
  /// for the same reasons. False when a hold's section is unknown.
  bool gather_pipeline(const std::vector<const pending_write*>& batch,
                       pipeline_rows& out) {
    std::vector<const idempotency_record*> records;
    auto key = [](unnest_rows& rows, const seat_change& change) {
      rows.columns[0].add(int64_t{change.section_no});
      rows.columns[1].add(int64_t{change.slot});
      ++rows.rows;
    };
    auto status = [&](const seat_change& change, std::string_view to) {
      key(out.statuses, change);
      out.statuses.columns[2].add(to);
      out.statuses.columns[3].add(change.at_ms);
    };
    for (const auto* write : batch) {
      if (const auto* record = std::get_if<idempotency_record>(&write->what)) {
        records.push_back(record);
        continue;
      }
      if (const auto* customer = std::get_if<customer_record>(&write->what)) {
        auto& columns = out.customers.columns;
        columns[0].add(customer->customer_id);
        columns[1].add(customer->email);
        columns[2].add(customer->password_hash);
        columns[3].add(customer->created_at_ms);
        ++out.customers.rows;
        continue;
      }
      const auto& change = std::get<seat_change>(write->what);
      switch (change.kind) {
      case change_kind::hold_created: {
        auto seats = seat_array(change);
        if (!seats) return false;
        key(out.holds, change);
        auto& columns = out.holds.columns;
        columns[2].add(change.customer_id);
        columns[3].add(*seats);
        columns[4].add(change.at_ms);
        columns[5].add(change.expires_at_ms);
        break;
      }
      case change_kind::hold_released:
        status(change, "released");
        break;
      case change_kind::hold_expired:
        status(change, "expired");
        break;
      case change_kind::booking_confirmed: {
        status(change, "booked");
        key(out.bookings, change);
        auto& columns = out.bookings.columns;
        columns[2].add(change.customer_id);
        columns[3].add(change.amount_cents);
        columns[4].add(change.at_ms);
        break;
      }
      case change_kind::booking_cancelled:
        key(out.cancels, change);
        out.cancels.columns[2].add(change.at_ms);
        break;
      }
      if (change.idempotency) records.push_back(change.idempotency.get());
    }
    // One row per key: ON CONFLICT cannot touch a row twice in a statement.
    std::unordered_map<std::string, const idempotency_record*> latest;
    for (auto it = records.rbegin(); it != records.rend(); ++it) {
      if (!latest.emplace((*it)->customer_id + '\n' + (*it)->key, *it).second)
        continue;
      const auto& record = **it;
      auto& columns = out.records.columns;
      columns[0].add(record.customer_id);
      columns[1].add(record.key);
      columns[2].add(record.fingerprint);
      columns[3].add(int64_t{record.response.status});
      columns[4].add(record.response.body);
      columns[5].add(record.response.location);
      columns[6].add(record.created_at_ms);
      ++out.records.rows;
    }
    return true;
  }

  /// Writes `batch` as prepared statements in libpq's pipeline mode: BEGIN,
  /// one execute per kind of row, the outbox row, COMMIT and a sync go out
  /// together, and the results come back in one round trip. Parameters
  /// travel as parameters, so nothing is escaped into SQL text.
  caf::error commit_pipeline(const std::vector<const pending_write*>& batch) {
    pipeline_rows rows;
    std::string payload;
    int64_t records = 0;
    millis outbox_ms = 0;
    if (!gather_pipeline(batch, rows) ||
        (!stream.empty() &&
         !outbox_payload(batch, payload, records, outbox_ms)))
      return make_error(errc::unavailable,
                        std::string{"write for an unknown section"});
    auto* c = conn.get();
    if (PQenterPipelineMode(c) != 1)
      return make_error(errc::unavailable,
                        "PostgreSQL: " + std::string{PQerrorMessage(c)});
    int sent = 0;
    bool queued = true;
    auto send_text = [&](const char* sql) {
      queued = queued && PQsendQueryParams(c, sql, 0, nullptr, nullptr, nullptr,
                                           nullptr, 0) == 1;
      sent += queued ? 1 : 0;
    };
    auto send = [&](const prepared_statement& statement, unnest_rows& of) {
      if (of.rows == 0) return;
      std::vector<const char*> values;
      for (auto& column : of.columns)
        values.push_back(column.c_str());
      queued = queued &&
               PQsendQueryPrepared(c, statement.name, statement.params,
                                   values.data(), nullptr, nullptr, 0) == 1;
      sent += queued ? 1 : 0;
    };
    send_text("BEGIN");
    auto fences = fences_of(batch);
    int fence_at = -1; // the fence's place among the results
    if (fences.count > 0 && queued) {
      const char* values[] = {fences.partitions.c_str(), fences.epochs.c_str()};
      const auto& check = config.fencing ? check_fence : check_stale;
      queued = PQsendQueryPrepared(c, check.name, check.params, values, nullptr,
                                   nullptr, 0) == 1;
      fence_at = sent;
      sent += queued ? 1 : 0;
    }
    send(insert_customers, rows.customers);
    send(insert_holds, rows.holds);
    send(update_statuses, rows.statuses);
    send(insert_bookings, rows.bookings);
    send(cancel_bookings, rows.cancels);
    send(upsert_idempotency, rows.records);
    if (records > 0 && queued) {
      auto seq = std::to_string(next_outbox_seq);
      auto at = std::to_string(outbox_ms);
      auto count = std::to_string(records);
      const char* values[] = {stream.c_str(), seq.c_str(), at.c_str(),
                              count.c_str(), payload.c_str()};
      queued = PQsendQueryPrepared(c, insert_outbox.name, insert_outbox.params,
                                   values, nullptr, nullptr, 0) == 1;
      sent += queued ? 1 : 0;
    }
    send_text("COMMIT");
    queued = queued && PQpipelineSync(c) == 1;
    if (!queued) {
      // libpq could not even queue the pipeline: the connection is unusable
      // (results may be half read), so drop it as a lost one.
      std::string message = PQerrorMessage(c);
      conn.reset();
      return make_error(errc::unavailable, "PostgreSQL: " + message);
    }
    // Every statement's results end with a null; after an error the rest
    // come back as PGRES_PIPELINE_ABORTED, and the sync closes the pipeline.
    std::string message;
    bool committed = false;
    auto refusal = errc::unavailable;
    for (int i = 0; i < sent; ++i) {
      while (result_ptr result{PQgetResult(c)}) {
        auto status = PQresultStatus(result.get());
        if (i == fence_at && status == PGRES_TUPLES_OK) {
          // Fencing off (a test): the check only tells whether it would
          // have refused.
          if (!config.fencing && PQntuples(result.get()) == 1 &&
              *PQgetvalue(result.get(), 0, 0) == 't')
            shared.stale_batch();
          continue;
        }
        if (status == PGRES_FATAL_ERROR && message.empty())
          refusal = refusal_of(result.get());
        if (status == PGRES_COMMAND_OK) {
          committed = i == sent - 1 &&
                      std::string_view{PQcmdStatus(result.get())} == "COMMIT";
        } else if (message.empty()) {
          message = status == PGRES_PIPELINE_ABORTED
                        ? std::string{"pipeline aborted"}
                        : std::string{PQresultErrorMessage(result.get())};
        }
      }
    }
    result_ptr sync{PQgetResult(c)};
    bool synced = PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC;
    if (!synced || PQexitPipelineMode(c) != 1) {
      if (message.empty()) message = PQerrorMessage(c);
      conn.reset();
      return make_error(errc::unavailable, "PostgreSQL: " + message);
    }
    if (committed && message.empty()) {
      outbox_committed(outbox_ms);
      return {};
    }
    if (message.empty()) message = "COMMIT did not commit";
    // The failed statement left the transaction aborted; end it so the
    // connection can go on.
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
      result_ptr rollback{PQexec(c, "ROLLBACK")};
    }
    return shared.refused(refusal, message);
  }

  /// Writes `batch` in one transaction; answers the error, if any.
  caf::error commit(const std::vector<const pending_write*>& batch) {
    if (!conn)
      return make_error(errc::unavailable,
                        std::string{"PostgreSQL connection lost"});
    // Events (rare: an administrator creates them) have no prepared
    // statement: a batch with one goes as text.
    if (config.encoding == batch_encoding::pipeline &&
        std::none_of(batch.begin(), batch.end(), [](const auto* write) {
          return std::holds_alternative<event_write>(write->what);
        }))
      return commit_pipeline(batch);
    std::string sql = "BEGIN;\n";
    if (auto fences = fences_of(batch); fences.count > 0 && config.fencing)
      sql += std::string{"SELECT rsv_fence('"} + fences.partitions.c_str() +
             "'::int[], '" + fences.epochs.c_str() + "'::int8[]);\n";
    bool rendered = true;
    if (config.encoding == batch_encoding::multirow && batch.size() > 1) {
      rendered = render_multirow(batch, sql);
    } else {
      for (const auto* write : batch)
        rendered = rendered && render(*write, sql);
    }
    millis outbox_ms = 0;
    if (rendered && !stream.empty())
      rendered = render_outbox(batch, sql, outbox_ms);
    if (!rendered)
      return make_error(errc::unavailable,
                        std::string{"write for an unknown section"});
    sql += "COMMIT;";
    result_ptr result{PQexec(conn.get(), sql.c_str())};
    if (PQresultStatus(result.get()) == PGRES_COMMAND_OK) {
      outbox_committed(outbox_ms);
      return {};
    }
    std::string message = PQerrorMessage(conn.get());
    auto refusal = refusal_of(result.get());
    // The transaction is aborted; end it so the connection can go on.
    result_ptr rollback{PQexec(conn.get(), "ROLLBACK")};
    return shared.refused(refusal, message);
  }

  /// While idle, once a second: is the database still there? Keeps
  /// /health true when no writes come, and reconnects before they do.
  void check_connection() {
    if (conn) {
      result_ptr ping{PQexec(conn.get(), "SELECT 1")};
      if (PQresultStatus(ping.get()) == PGRES_TUPLES_OK) {
        state = service_state::ok;
        return;
      }
      conn.reset();
    }
    state = connect() ? service_state::ok : service_state::down;
  }

  /// Answers a section load; while the database is unreachable, with the
  /// error (the section retries).
  void load(section_load& request) {
    if (!conn && !connect()) {
      state = service_state::down;
      request.done(make_error(errc::unavailable,
                              std::string{"PostgreSQL is unreachable"}));
      request.done = nullptr;
      return;
    }
    pg::layout_map layouts;
    if (auto layout = shared.layout(request.section_no))
      layouts[request.section_no] = layout;
    auto holds =
        request.slot
            ? pg::read_hold(conn.get(), layouts, request.section_no,
                            *request.slot)
            : pg::read_holds(conn.get(), layouts, request.section_no);
    if (!holds) {
      if (PQstatus(conn.get()) != CONNECTION_OK) {
        state = service_state::down;
        conn.reset();
      }
      std::exchange(request.done, nullptr)(holds.error());
      return;
    }
    state = service_state::ok;
    std::exchange(request.done,
                  nullptr)(std::move((*holds)[request.section_no]));
  }

  /// Deletes idempotency records past their 24 hours, at most every ten
  /// minutes and a bounded number per statement, so that the table stays
  /// small without a long-running DELETE in the write path.
  void purge_if_due() {
    auto now = std::chrono::steady_clock::now();
    if (!purges || !conn || now < next_purge) return;
    next_purge = now + std::chrono::minutes(10);
    auto sql = "DELETE FROM idempotency_records WHERE ctid IN (SELECT ctid "
               "FROM idempotency_records WHERE created_at < now() - "
               "interval '" +
               std::to_string(limits::idempotency_ttl_seconds) +
               " seconds' LIMIT 50000)";
    result_ptr purged{PQexec(conn.get(), sql.c_str())};
    if (PQresultStatus(purged.get()) != PGRES_COMMAND_OK)
      spdlog::warn("purging idempotency records: {}",
                   PQerrorMessage(conn.get()));
    else if (auto n = std::atoi(PQcmdTuples(purged.get())); n > 0)
      spdlog::info("purged {} idempotency records older than 24 h", n);
  }

  /// Runs the writer's loop; when it throws, answers what it was writing,
  /// drops the connection and starts again (core/supervised.hpp).
  void supervise() {
    run_supervised(
        [this] { run(); },
        [this](const char* what) {
          spdlog::error("store writer {} died: {}; its batch of {} is "
                        "answered unavailable and it restarts",
                        stream.empty() ? std::string{"-"} : stream, what,
                        in_flight.size());
          state = service_state::down;
          conn.reset();
          for (auto& write : in_flight)
            write.answer(
                make_error(errc::unavailable,
                           std::string{"the store's writer restarted"}));
          in_flight.clear();
        },
        [this](std::chrono::milliseconds delay) {
          std::unique_lock<std::mutex> lock{mutex};
          wake.wait_for(lock, delay, [this] { return stopping; });
        },
        shared.writer_restarts);
  }

  /// The chaos facility's faults, before a batch is written: a crash (the
  /// supervisor's business), a delay, or a failure (answered for the batch
  /// as a refused transaction would be). True when the batch failed.
  bool inject_faults() {
    auto& faults = shared.faults;
    int crashes = faults.writer_crashes.load();
    while (crashes > 0 &&
           !faults.writer_crashes.compare_exchange_weak(crashes, crashes - 1)) {
    }
    if (crashes > 0) {
      if (shared.crashes_injected) shared.crashes_injected->Increment();
      throw std::runtime_error("chaos: injected writer crash");
    }
    if (auto delay = faults.commit_delay_ms.load(); delay > 0) {
      if (shared.delays_injected) shared.delays_injected->Increment();
      // The writer thread waits, as it would on a slow disk: its queue
      // gathers meanwhile, up to its bound.
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
    auto percent = faults.commit_failure_percent.load();
    if (percent <= 0 ||
        std::uniform_int_distribution<int>(0, 99)(dice) >= percent)
      return false;
    if (shared.failures_injected) shared.failures_injected->Increment();
    for (auto& write : in_flight)
      write.answer(make_error(
          errc::unavailable,
          std::string{"chaos: injected commit failure (nothing written)"}));
    return true;
  }

  void run() {
    state = connect() ? service_state::ok : service_state::down;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock{mutex};
        if (!wake.wait_for(lock, std::chrono::seconds(1),
                           [this] { return stopping || !queue.empty(); })) {
          lock.unlock();
          check_connection();
          purge_if_due();
          continue;
        }
        if (queue.empty() && stopping) return;
        // A section load is a barrier: it runs alone, after the writes
        // before it, so that it reads what they left.
        if (queue.front().is_load()) {
          in_flight.push_back(std::move(queue.front()));
          queue.pop_front();
        } else {
          while (!queue.empty() && !queue.front().is_load() &&
                 in_flight.size() < config.batch_rows_max) {
            in_flight.push_back(std::move(queue.front()));
            queue.pop_front();
          }
        }
      }
      if (in_flight.front().is_load()) {
        load(std::get<section_load>(in_flight.front().what));
        in_flight.clear();
        continue;
      }
      if (inject_faults()) {
        in_flight.clear();
        continue;
      }
      purge_if_due();
      if (!conn && !connect()) {
        state = service_state::down;
        // No client waits on an unreachable database: fail the batch now,
        // the callers answer 503, and the next batch tries again.
        for (auto& write : in_flight)
          write.answer(make_error(errc::unavailable,
                                  std::string{"PostgreSQL is unreachable"}));
        in_flight.clear();
        std::unique_lock<std::mutex> lock{mutex};
        wake.wait_for(lock,
                      std::chrono::milliseconds(config.reconnect_delay_ms),
                      [this] { return stopping; });
        continue;
      }
      std::vector<const pending_write*> all;
      for (const auto& write : in_flight)
        all.push_back(&write);
      auto started = std::chrono::steady_clock::now();
      auto err = commit(all);
      if (shared.batch_rows != nullptr) {
        shared.batch_rows->Observe(static_cast<double>(all.size()));
        shared.commit_seconds->Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                          started)
                .count());
      }
      if (!err) {
        state = service_state::ok;
        for (auto& write : in_flight)
          write.answer({});
      } else if (PQstatus(conn.get()) != CONNECTION_OK) {
        state = service_state::down;
        spdlog::warn("PostgreSQL connection lost: {}", describe(err));
        conn.reset();
        for (auto& write : in_flight)
          write.answer(err);
      } else {
        if (code_of(err) == errc::fenced) shared.fenced(err);
        if (in_flight.size() == 1) {
          spdlog::warn("store write refused: {}", describe(err));
          in_flight.front().answer(err);
        } else {
          // One bad row must not fail its neighbours: write each alone (the
          // writes of a partition another node took are fenced again; those
          // of the others go through).
          for (auto& write : in_flight) {
            auto single = commit({&write});
            if (single)
              spdlog::warn("store write refused: {}", describe(single));
            write.answer(std::move(single));
          }
        }
      }
      in_flight.clear();
    }
  }
};

/// The writers, and which one a write goes to.
struct pg_store::impl {
  explicit impl(pg_store_config config) : shared(std::move(config)) {
    auto count = std::max<std::size_t>(1, shared.config.writers);
    for (std::size_t i = 0; i < count; ++i)
      writers.push_back(std::make_unique<writer>(shared, i));
  }

  /// A section's writes and loads: always the same writer, so in order.
  writer& for_section(uint32_t section_no) {
    return *writers[section_no % writers.size()];
  }

  /// Queues a load on its section's writer, after the writes before it. The
  /// queue's bound does not apply: a load replaces writes, it does not add to
  /// them, and a section must be able to recover.
  void load(section_load request) {
    auto& w = for_section(request.section_no);
    {
      std::lock_guard<std::mutex> guard{w.mutex};
      if (!w.stopping) {
        w.queue.push_back({std::move(request), {}});
        w.wake.notify_one();
        return;
      }
    }
    request.done(
        make_error(errc::unavailable, std::string{"the store is stopping"}));
  }

  shared_state shared;
  std::vector<std::unique_ptr<writer>> writers;
};

pg_store::pg_store(pg_store_config config)
    : impl_(std::make_unique<impl>(std::move(config))) {}

pg_store::~pg_store() = default;

void pg_store::create_event(const event_def& def,
                            std::vector<uint32_t> section_nos, store_ack done,
                            write_fence fence) {
  // Every writer may write this event's holds later: learn the layouts now.
  // The event's sections take requests only after this write is
  // acknowledged, so no hold comes before its event.
  for (std::size_t i = 0; i < def.sections.size(); ++i)
    impl_->shared.learn(
        section_layout::make(def.id, def.sections[i], section_nos[i]));
  impl_->writers[0]->push(
      {event_write{def, std::move(section_nos), fence}, std::move(done)});
}

void pg_store::create_customer(const customer_record& record, store_ack done) {
  impl_->writers[0]->push({record, std::move(done)});
}

void pg_store::append(const seat_change& change, store_ack done) {
  impl_->for_section(change.section_no).push({change, std::move(done)});
}

void pg_store::put_idempotency(const idempotency_record& record,
                               store_ack done) {
  impl_->writers[0]->push({record, std::move(done)});
}

void pg_store::load_section(uint32_t section_no, section_loaded done) {
  impl_->load(section_load{section_no, std::nullopt, std::move(done)});
}

void pg_store::load_hold(uint32_t section_no, uint32_t slot,
                         hold_loaded done) {
  impl_->load(section_load{
      section_no, slot,
      [done = std::move(done)](caf::expected<std::vector<recorded_hold>> read) {
        if (!read) {
          done(std::move(read.error()));
          return;
        }
        std::optional<recorded_hold> hold;
        if (!read->empty()) hold = std::move(read->front());
        done(std::move(hold));
      }});
}

void pg_store::learn(const std::vector<recovered_event>& events) {
  for (const auto& event : events)
    for (const auto& layout : event.layouts)
      impl_->shared.learn(layout);
}

void pg_store::close() {
  for (auto& w : impl_->writers)
    w->stop();
}

store_faults* pg_store::faults() {
  return &impl_->shared.faults;
}

service_state pg_store::health() const {
  // Down when any writer is: its sections cannot write.
  for (const auto& w : impl_->writers)
    if (w->state.load() != service_state::ok) return service_state::down;
  return service_state::ok;
}

} // namespace rsv
