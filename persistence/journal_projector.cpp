#include "persistence/journal_projector.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/supervised.hpp"
#include "persistence/pg_tables.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

namespace rsv::persistence::pg {

namespace {

/// How long a projector waits after a failure before it tries again.
constexpr auto retry_delay = std::chrono::milliseconds(200);

} // namespace

journal_projector::journal_projector(options opts)
    : options_(std::move(opts)), projection_(options_.known) {
  if (options_.registry) {
    auto& registry = *options_.registry;
    rows_projected_ = &prometheus::BuildCounter()
                           .Name("rsv_journal_rows_projected_total")
                           .Help("Journal rows this node applied to the "
                                 "tables and deleted")
                           .Register(registry)
                           .Add({});
    writes_projected_ = &prometheus::BuildCounter()
                             .Name("rsv_journal_writes_projected_total")
                             .Help("Writes (seat changes, idempotency "
                                   "records) in the journal rows this node "
                                   "projected")
                             .Register(registry)
                             .Add({});
    backlog_rows_ = &prometheus::BuildGauge()
                         .Name("rsv_journal_backlog_rows")
                         .Help("Journal rows not yet projected into the "
                               "tables (all nodes), measured once a second")
                         .Register(registry)
                         .Add({});
    lag_seconds_ = &prometheus::BuildGauge()
                        .Name("rsv_journal_lag_seconds")
                        .Help("Age of the oldest journal row not yet "
                              "projected: how far the tables trail the "
                              "acknowledged writes")
                        .Register(registry)
                        .Add({});
  }
  thread_ = std::thread([this] { run(); });
}

journal_projector::~journal_projector() {
  stop();
}

// Every commit pokes, and most find the projector already poked, waiting
// out its step interval: only the first poke after a step wakes it. A wake
// that changes nothing still costs a context switch (on a paravirtual
// guest, hypercalls), a thousand and more a second at full speed.
void journal_projector::poke() {
  bool first = false;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    first = !poked_;
    poked_ = true;
  }
  if (first) wake_.notify_one();
}

void journal_projector::stop() {
  stop_worker(mutex_, wake_, stopping_, thread_);
}

bool journal_projector::connect() {
  if (conn_) return true;
  conn_ = pg::connect(options_.dsn);
  // A projection that a crash loses is lost whole, its deletes with its
  // inserts, and projected again: it need not wait for the disk.
  result_ptr set{PQexec(conn_.get(), "SET synchronous_commit = off")};
  if (PQresultStatus(set.get()) == PGRES_COMMAND_OK &&
      prepare_table_statements(conn_.get()))
    return true;
  conn_.reset();
  state_ = service_state::down;
  return false;
}

void journal_projector::project_all() {
  if (!connect()) return;
  auto drained = projection_.drain(
      conn_.get(), options_.rows_per_step, [this](const projected& step) {
        if (rows_projected_ == nullptr) return;
        rows_projected_->Increment(static_cast<double>(step.rows));
        writes_projected_->Increment(static_cast<double>(step.entries));
      });
  if (!drained) {
    if (state_.exchange(service_state::down) == service_state::ok)
      spdlog::error("the journal projector stopped: {}",
                    describe(drained.error()));
    if (PQstatus(conn_.get()) != CONNECTION_OK) conn_.reset();
    return;
  }
  if (state_.exchange(service_state::ok) == service_state::down)
    spdlog::info("the journal projector projects again");
}

void journal_projector::measure_backlog() {
  if (!conn_) return;
  if (auto now = std::chrono::steady_clock::now(); now >= next_forget_) {
    next_forget_ = now + std::chrono::minutes(1);
    if (auto err = forget_idle_cursors(conn_.get()))
      spdlog::warn("the journal projector: {}", describe(err));
  }
  // Rows that waited only for their sections' snapshots (migration 0012),
  // once new ones came; a whole window deleted, the next second goes on.
  if (snapshots_committed_.exchange(false)) {
    auto trimmed = trim_snapshotted(conn_.get(), limits::journal_sweep_rows);
    if (!trimmed)
      spdlog::warn("the journal projector: {}", describe(trimmed.error()));
    if (!trimmed || *trimmed == limits::journal_sweep_rows)
      snapshots_committed_ = true;
  }
  if (PQstatus(conn_.get()) != CONNECTION_OK) return;
  // Only rows beyond the projector's cursor wait for it.
  result_ptr backlog{PQexec(
      conn_.get(),
      "SELECT count(*), coalesce(extract(epoch FROM now() - "
      "min(j.created_at)), 0) FROM journal j LEFT JOIN journal_cursors c ON "
      "c.reader = 'projector' AND c.stream = j.stream WHERE j.seq > "
      "coalesce(c.seq, 0)")};
  if (PQresultStatus(backlog.get()) != PGRES_TUPLES_OK) return;
  auto rows = std::atoll(PQgetvalue(backlog.get(), 0, 0));
  auto lag = std::max(0.0, std::atof(PQgetvalue(backlog.get(), 0, 1)));
  backlog_rows_measured_ = rows;
  lag_seconds_measured_ = lag;
  if (backlog_rows_ == nullptr) return;
  backlog_rows_->Set(static_cast<double>(rows));
  lag_seconds_->Set(lag);
}

void journal_projector::run() {
  using clock = std::chrono::steady_clock;
  auto next_measure = clock::now();
  // The restart's recovery projected what was left: the first interval
  // starts now.
  auto next_step =
      next_measure + std::chrono::milliseconds(options_.step_interval_ms);
  // The backlog is measured once a second on its own, also while the
  // projector waits for its interval to pass: measured only after steps,
  // it read as empty however long the rows had waited.
  auto measure_if_due = [&] {
    if (auto now = clock::now(); now >= next_measure) {
      if (connect()) measure_backlog();
      next_measure = now + std::chrono::seconds(1);
    }
  };
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock{mutex_};
      auto delay = state_ == service_state::ok ? std::chrono::milliseconds(1000)
                                               : retry_delay;
      wake_.wait_for(lock, delay, [this] { return poked_ || stopping_; });
      // Rows gather for a while after the last step: one step of many rows
      // costs PostgreSQL less per write than many steps of a few.
      while (!stopping_ && clock::now() < next_step) {
        wake_.wait_until(lock, std::min(next_step, next_measure),
                         [this] { return stopping_; });
        lock.unlock();
        measure_if_due();
        lock.lock();
      }
      poked_ = false;
      stopping = stopping_;
    }
    measure_if_due();
    next_step =
        clock::now() + std::chrono::milliseconds(options_.step_interval_ms);
    project_all();
    if (stopping) {
      // A clean stop leaves only rows that wait for the relay or for
      // snapshots not taken yet (at most journal_sweeps_at_stop windows).
      for (int i = 0; conn_ && i < limits::journal_sweeps_at_stop; ++i) {
        auto trimmed =
            trim_snapshotted(conn_.get(), limits::journal_sweep_rows);
        if (!trimmed || *trimmed < limits::journal_sweep_rows) break;
      }
      return;
    }
  }
}

} // namespace rsv::persistence::pg
