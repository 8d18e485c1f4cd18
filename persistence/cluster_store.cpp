#include "persistence/cluster_store.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/cluster_queries.hpp"
#include "persistence/journal_projection.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/pg_tables.hpp"
#include "persistence/work_queue.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <exception>
#include <set>
#include <spdlog/spdlog.h>
#include <thread>
#include <utility>

namespace rsv::persistence {

namespace {

using pg::conn_ptr;
using pg::result_ptr;
using pg::work_queue;

caf::error unavailable(std::string what) {
  return make_error(errc::unavailable, std::move(what));
}

bool command_ok(PGconn* conn, const char* sql) {
  result_ptr result{PQexec(conn, sql)};
  return PQresultStatus(result.get()) == PGRES_COMMAND_OK;
}

} // namespace

/// The job queue and the thread that owns the connection.
struct cluster_store::impl {
  /// A queued request: exactly one of `run` (on the store's thread, with a
  /// working connection) and `fail` is called.
  struct job {
    std::function<void(PGconn*)> run;
    std::function<void(caf::error)> fail;
  };

  explicit impl(std::string dsn_text) : dsn(std::move(dsn_text)) {
    thread = std::thread([this] { loop(); });
  }

  ~impl() {
    queue.close();
    if (thread.joinable()) thread.join();
  }

  /// Queues a job whose body answers `done`; `done` is called once, by
  /// whichever of the body and the failure runs, and never again.
  template <class T>
  void submit(callback<T> done, std::function<caf::expected<T>(PGconn*)> body) {
    auto once = std::make_shared<callback<T>>(std::move(done));
    job next;
    next.run = [once, body = std::move(body)](PGconn* connection) {
      auto result = body(connection);
      if (*once) std::exchange(*once, nullptr)(std::move(result));
    };
    next.fail = [once](caf::error err) {
      if (*once) std::exchange(*once, nullptr)(std::move(err));
    };
    push(std::move(next));
  }

  /// As submit, for a read that must see every acknowledged write: the
  /// journal is projected into the tables first (journal_projection.hpp).
  template <class T>
  void submit_fresh(callback<T> done,
                    std::function<caf::expected<T>(PGconn*)> body) {
    submit<T>(std::move(done),
              [this, body = std::move(body)](PGconn* c) -> caf::expected<T> {
                if (auto drained = projection.drain(c); !drained)
                  return drained.error();
                return body(c);
              });
  }

  void push(job next) {
    auto pushed = queue.push(next, limits::cluster_store_queue_max);
    if (pushed == work_queue<job>::pushed::yes) return;
    next.fail(unavailable(pushed == work_queue<job>::pushed::closed
                              ? "the cluster store is closed"
                              : "the cluster store's queue is full"));
  }

  /// Connects and prepares the statements, at most once per reconnect
  /// delay; false (and the store down) when that fails.
  bool connect() {
    auto now = std::chrono::steady_clock::now();
    if (now < next_connect) return false;
    next_connect = now + std::chrono::milliseconds(
                             limits::cluster_store_reconnect_delay_ms);
    conn = pg::connect(dsn);
    auto give_up = [&](const char* what) {
      spdlog::warn("cluster store: {}: {}", what, PQerrorMessage(conn.get()));
      conn.reset();
      state = service_state::down;
      return false;
    };
    if (PQstatus(conn.get()) != CONNECTION_OK)
      return give_up("PostgreSQL unreachable");
    // No statement may hold the one thread for ever; a takeover's lock
    // waits are bounded more tightly by its own lock_timeout.
    if (!command_ok(conn.get(), "SET statement_timeout = 10000"))
      return give_up("setting statement_timeout");
    if (!pg::prepare_cluster_statements(conn.get()))
      return give_up("preparing the cluster's statements");
    // The reads that drain the journal first apply its rows with these.
    if (!pg::prepare_table_statements(conn.get()))
      return give_up("preparing the journal's projection");
    state = service_state::ok;
    return true;
  }

  /// While idle, once a second: keeps /health live and reconnects before
  /// a job needs the connection.
  void check_connection() {
    if (conn && pg::answers(conn.get())) {
      state = service_state::ok;
      return;
    }
    conn.reset();
    state = service_state::down;
    connect();
  }

  void execute(job& next) {
    if (!conn && !connect()) {
      next.fail(unavailable("PostgreSQL is unreachable"));
      return;
    }
    try {
      next.run(conn.get());
    } catch (const std::exception& e) {
      // The connection's state is unknown (a transaction may be open).
      spdlog::error("cluster store: a job threw: {}", e.what());
      next.fail(unavailable(std::string{"cluster store: "} + e.what()));
      conn.reset();
    }
    if (conn && PQstatus(conn.get()) != CONNECTION_OK) {
      spdlog::warn("cluster store: PostgreSQL connection lost");
      conn.reset();
      state = service_state::down;
    } else if (conn && PQtransactionStatus(conn.get()) != PQTRANS_IDLE) {
      // A job that failed half-way leaves nothing open for the next one.
      command_ok(conn.get(), "ROLLBACK");
    }
  }

  void loop() {
    connect();
    for (;;) {
      job next;
      bool closed = false;
      if (!queue.wait_take(std::chrono::seconds(1),
                           [&](std::deque<job>& waiting, bool is_closed) {
                             closed = is_closed;
                             if (closed) return;
                             next = std::move(waiting.front());
                             waiting.pop_front();
                           })) {
        check_connection();
        continue;
      }
      // Closed, what waits is failed, not run.
      if (closed) break;
      execute(next);
    }
    for (auto& each : queue.take_all())
      each.fail(unavailable("the cluster store is closed"));
    conn.reset();
  }

  const std::string dsn;
  work_queue<job> queue;
  std::atomic<service_state> state{service_state::down};
  // The store's thread only.
  conn_ptr conn;
  std::chrono::steady_clock::time_point next_connect{};
  pg::journal_projection projection;
  std::thread thread;
};

cluster_store::cluster_store(std::string dsn)
    : impl_(std::make_unique<impl>(std::move(dsn))) {}

cluster_store::~cluster_store() = default;

caf::error cluster_store::init(const std::string& dsn, uint32_t partitions) {
  if (partitions < 1 || partitions > limits::cluster_partitions_max)
    return make_error(errc::validation_failed,
                      "the partition count must be 1.." +
                          std::to_string(limits::cluster_partitions_max) +
                          ", not " + std::to_string(partitions));
  auto conn = pg::connect(dsn);
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return pg::failure(conn.get(), "connecting to PostgreSQL");
  return pg::init_cluster_tables(conn.get(), partitions);
}

void cluster_store::bump(std::vector<uint32_t> partitions, std::string address,
                         callback<std::map<uint32_t, uint64_t>> done) {
  std::sort(partitions.begin(), partitions.end());
  partitions.erase(std::unique(partitions.begin(), partitions.end()),
                   partitions.end());
  impl_->submit<std::map<uint32_t, uint64_t>>(
      std::move(done), [partitions = std::move(partitions),
                        address = std::move(address)](PGconn* conn) {
        return pg::raise_epochs_of(conn, partitions, address);
      });
}

void cluster_store::owners(callback<std::vector<partition_owner>> done) {
  impl_->submit<std::vector<partition_owner>>(std::move(done), pg::read_owners);
}

void cluster_store::load_partitions(std::vector<uint32_t> partitions,
                                    uint32_t partition_count,
                                    callback<recovered_state> done) {
  if (partition_count < 1 || partition_count > limits::cluster_partitions_max) {
    done(make_error(errc::validation_failed,
                    "a partition count of " + std::to_string(partition_count)));
    return;
  }
  impl_->submit_fresh<recovered_state>(
      std::move(done),
      [wanted = std::set<uint32_t>(partitions.begin(), partitions.end()),
       partition_count](PGconn* conn) {
        return pg::read_partitions(conn, wanted, partition_count);
      });
}

void cluster_store::reserve_section_nos(std::size_t n,
                                        callback<std::vector<uint32_t>> done) {
  if (n > limits::sections_per_event_max) {
    done(make_error(errc::validation_failed,
                    "at most " +
                        std::to_string(limits::sections_per_event_max) +
                        " section numbers at once, not " + std::to_string(n)));
    return;
  }
  impl_->submit<std::vector<uint32_t>>(std::move(done), [n](PGconn* conn) {
    return pg::take_section_nos(conn, n);
  });
}

void cluster_store::find_customer(
    std::string email, callback<std::optional<customer_record>> done) {
  impl_->submit<std::optional<customer_record>>(
      std::move(done), [email = std::move(email)](PGconn* conn) {
        return pg::find_customer(conn, email);
      });
}

void cluster_store::find_idempotency(
    std::string customer_id, std::string key,
    callback<std::optional<idempotency_record>> done) {
  impl_->submit_fresh<std::optional<idempotency_record>>(
      std::move(done), [customer_id = std::move(customer_id),
                        key = std::move(key)](PGconn* conn) {
        return pg::find_idempotency(conn, customer_id, key);
      });
}

void cluster_store::list_bookings(std::string customer_id,
                                  callback<std::vector<booking_view>> done) {
  impl_->submit_fresh<std::vector<booking_view>>(
      std::move(done), [customer_id = std::move(customer_id)](PGconn* conn) {
        return pg::read_bookings(conn, customer_id);
      });
}

void cluster_store::list_events(callback<std::vector<event_summary>> done) {
  impl_->submit_fresh<std::vector<event_summary>>(std::move(done),
                                                  pg::read_event_summaries);
}

service_state cluster_store::health() const {
  return impl_->state.load();
}

} // namespace rsv::persistence
