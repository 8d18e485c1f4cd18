#pragma once

// Private to persistence/: the background projector of a store with
// batch_encoding::journal (pg_store.hpp).

#include "core/service_state.hpp"
#include "persistence/journal_projection.hpp"
#include "persistence/store.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <prometheus/registry.h>
#include <string>
#include <thread>

namespace prometheus {
class Counter;
class Gauge;
} // namespace prometheus

namespace rsv::persistence::pg {

/// One thread with its own connection that applies journal rows to the
/// tables while the writers append them, so that the tables (what operators
/// query, what a restart reads) trail the acknowledged writes by no more
/// than its lag. It takes whatever rows are there in steps of up to
/// `rows_per_step`: the busier the writers, the larger its batches, as with
/// group commit. It wakes when a writer pokes it after a commit, and once a
/// second to measure the backlog (rsv_journal_backlog_rows,
/// rsv_journal_lag_seconds). Started by the store; `stop` drains what is
/// left and ends the thread.
class journal_projector {
public:
  struct options {
    std::string dsn;
    layout_lookup known;
    std::size_t rows_per_step = 256;
    /// At most one round of steps per this interval while rows keep coming.
    int64_t step_interval_ms = 0;
    std::shared_ptr<prometheus::Registry> registry;
  };

  explicit journal_projector(options opts);
  ~journal_projector();

  /// A journal row committed: project soon. Any thread; never blocks long.
  void poke();

  /// Snapshots were committed (any thread): rows they cover may go, and
  /// the next once-a-second measurement sweeps them (trim_snapshotted).
  /// Without new snapshots no row becomes deletable that the projector's
  /// step or the relay's trim would not delete themselves.
  void snapshots_committed() { snapshots_committed_ = true; }

  /// Projects what is left (while the database answers), then ends.
  void stop();

  /// Down while it cannot project: the database is unreachable, or a row
  /// does not decode (logged; nothing after it is projected).
  service_state health() const { return state_.load(); }

  /// The backlog as last measured (zero before the first measurement).
  projection_status backlog() const {
    return {backlog_rows_measured_.load(), lag_seconds_measured_.load()};
  }

private:
  void run();
  bool connect();
  void project_all();
  void measure_backlog();

  options options_;
  journal_projection projection_;
  conn_ptr conn_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool poked_ = false;    // guarded by mutex_
  bool stopping_ = false; // guarded by mutex_
  std::atomic<service_state> state_{service_state::ok};
  std::atomic<bool> snapshots_committed_{false};
  std::atomic<int64_t> backlog_rows_measured_{0};
  std::atomic<double> lag_seconds_measured_{0};
  std::chrono::steady_clock::time_point next_forget_{}; // its thread only
  prometheus::Counter* rows_projected_ = nullptr;
  prometheus::Counter* writes_projected_ = nullptr;
  prometheus::Gauge* backlog_rows_ = nullptr;
  prometheus::Gauge* lag_seconds_ = nullptr;
  std::thread thread_;
};

} // namespace rsv::persistence::pg
