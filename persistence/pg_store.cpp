#include "persistence/pg_store.hpp"

#include "core/errc.hpp"
#include "persistence/pg_handles.hpp"

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>
#include <thread>
#include <unordered_map>
#include <variant>

namespace rsv {

namespace {

struct event_write {
  event_def def;
  std::vector<uint32_t> section_nos;
};

struct pending_write {
  std::variant<event_write, customer_record, seat_change> what;
  store_ack done;
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

} // namespace

/// The writer thread and what it shares with callers.
struct pg_store::impl {
  pg_store_config config;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<pending_write> queue; // guarded by mutex
  bool stopping = false;           // guarded by mutex
  std::atomic<service_state> state{service_state::down};
  // Writer thread only: the connection, and the layouts that turn seat
  // indexes into seat ids.
  conn_ptr conn;
  std::unordered_map<uint32_t, std::shared_ptr<const section_layout>> layouts;
  std::thread writer;

  // Group commit at work: rows per transaction and the time COMMIT takes.
  prometheus::Histogram* batch_rows = nullptr;
  prometheus::Histogram* commit_seconds = nullptr;

  explicit impl(pg_store_config cfg) : config(std::move(cfg)) {
    if (config.registry) {
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
    }
    writer = std::thread([this] { run(); });
  }

  ~impl() {
    {
      std::lock_guard<std::mutex> guard{mutex};
      stopping = true;
    }
    wake.notify_all();
    writer.join();
  }

  void push(pending_write write) {
    {
      std::lock_guard<std::mutex> guard{mutex};
      if (queue.size() < config.queue_max && !stopping) {
        queue.push_back(std::move(write));
        wake.notify_one();
        return;
      }
    }
    write.done(make_error(errc::unavailable,
                          std::string{"the store's write queue is full"}));
  }

  std::string literal(const std::string& text) {
    char* escaped = PQescapeLiteral(conn.get(), text.data(), text.size());
    std::string out = escaped != nullptr ? escaped : "NULL";
    PQfreemem(escaped);
    return out;
  }

  bool connect() {
    conn.reset(PQconnectdb(config.dsn.c_str()));
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
    return true;
  }

  /// Appends the SQL of one write; false when it cannot be written at all.
  bool render(const pending_write& write, std::string& sql) {
    if (const auto* event = std::get_if<event_write>(&write.what)) {
      const auto& def = event->def;
      sql += "INSERT INTO events (id, name, starts_at, hold_ttl_seconds, "
             "max_seats_per_customer) VALUES (";
      sql += literal(def.id) + ", " + literal(def.name) + ", " +
             timestamp(def.starts_at_ms) + ", " +
             std::to_string(def.hold_ttl_seconds) + ", " +
             (def.max_seats_per_customer
                  ? std::to_string(*def.max_seats_per_customer)
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
      auto layout = layouts.find(change.section_no);
      if (layout == layouts.end()) return false;
      std::string seats = "{";
      for (auto index : change.seat_indexes) {
        if (seats.size() > 1) seats += ',';
        seats += layout->second->seat_id(index);
      }
      seats += "}";
      sql += "INSERT INTO holds VALUES (" + key + ", " +
             literal(change.customer_id) + ", " + literal(seats) +
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

  /// Writes `batch` in one transaction; answers the error, if any.
  caf::error commit(const std::vector<const pending_write*>& batch) {
    std::string sql = "BEGIN;\n";
    for (const auto* write : batch)
      if (!render(*write, sql))
        return make_error(errc::unavailable,
                          std::string{"write for an unknown section"});
    sql += "COMMIT;";
    result_ptr result{PQexec(conn.get(), sql.c_str())};
    if (PQresultStatus(result.get()) == PGRES_COMMAND_OK) return {};
    std::string message = PQerrorMessage(conn.get());
    // The transaction is aborted; end it so the connection can go on.
    result_ptr rollback{PQexec(conn.get(), "ROLLBACK")};
    return make_error(errc::unavailable, "PostgreSQL: " + message);
  }

  /// Remembers the layouts of events this batch wrote, for later holds.
  void learn_layouts(const pending_write& write) {
    if (const auto* event = std::get_if<event_write>(&write.what))
      for (std::size_t i = 0; i < event->def.sections.size(); ++i)
        layouts[event->section_nos[i]] = section_layout::make(
            event->def.id, event->def.sections[i], event->section_nos[i]);
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

  void run() {
    state = connect() ? service_state::ok : service_state::down;
    std::vector<pending_write> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock{mutex};
        if (!wake.wait_for(lock, std::chrono::seconds(1),
                           [this] { return stopping || !queue.empty(); })) {
          lock.unlock();
          check_connection();
          continue;
        }
        if (queue.empty() && stopping) return;
        while (!queue.empty() && batch.size() < config.batch_rows_max) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      if (!conn && !connect()) {
        state = service_state::down;
        // No client waits on an unreachable database: fail the batch now,
        // the callers answer 503, and the next batch tries again.
        for (auto& write : batch)
          write.done(make_error(errc::unavailable,
                                std::string{"PostgreSQL is unreachable"}));
        batch.clear();
        std::unique_lock<std::mutex> lock{mutex};
        wake.wait_for(lock,
                      std::chrono::milliseconds(config.reconnect_delay_ms),
                      [this] { return stopping; });
        continue;
      }
      for (auto& write : batch)
        learn_layouts(write);
      std::vector<const pending_write*> all;
      for (const auto& write : batch)
        all.push_back(&write);
      auto started = std::chrono::steady_clock::now();
      auto err = commit(all);
      if (batch_rows != nullptr) {
        batch_rows->Observe(static_cast<double>(all.size()));
        commit_seconds->Observe(std::chrono::duration<double>(
                                    std::chrono::steady_clock::now() - started)
                                    .count());
      }
      if (!err) {
        state = service_state::ok;
        for (auto& write : batch)
          write.done({});
      } else if (PQstatus(conn.get()) != CONNECTION_OK) {
        state = service_state::down;
        spdlog::warn("PostgreSQL connection lost: {}", describe(err));
        conn.reset();
        for (auto& write : batch)
          write.done(err);
      } else {
        // One bad row must not fail its neighbours: write each alone.
        for (auto& write : batch) {
          auto single = commit({&write});
          if (single) spdlog::warn("store write refused: {}", describe(single));
          write.done(std::move(single));
        }
      }
      batch.clear();
    }
  }
};

pg_store::pg_store(pg_store_config config)
    : impl_(std::make_unique<impl>(std::move(config))) {}

pg_store::~pg_store() = default;

void pg_store::create_event(const event_def& def,
                            std::vector<uint32_t> section_nos, store_ack done) {
  impl_->push({event_write{def, std::move(section_nos)}, std::move(done)});
}

void pg_store::create_customer(const customer_record& record, store_ack done) {
  impl_->push({record, std::move(done)});
}

void pg_store::append(const seat_change& change, store_ack done) {
  impl_->push({change, std::move(done)});
}

void pg_store::learn(const std::vector<recovered_event>& events) {
  // The writer reads layouts only after taking a batch under the mutex, so
  // holding it here orders these writes before any use.
  std::lock_guard<std::mutex> guard{impl_->mutex};
  for (const auto& event : events)
    for (const auto& layout : event.layouts)
      impl_->layouts[layout->section_no] = layout;
}

service_state pg_store::health() const {
  return impl_->state.load();
}

} // namespace rsv
