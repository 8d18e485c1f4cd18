#include "persistence/pg_writer.hpp"

#include "core/assert.hpp"
#include "core/clock.hpp"
#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/journal_projection.hpp"
#include "persistence/pg_pipeline.hpp"
#include "persistence/pg_tables.hpp"
#include "persistence/pg_writer_statements.hpp"
#include "persistence/work_queue.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <random>
#include <spdlog/spdlog.h>
#include <string_view>
#include <thread>

namespace rsv::persistence::pg {

struct writer::impl {
  impl(shared_state& shared_state, std::size_t index)
      : shared(shared_state), config(shared_state.config), purges(index == 0),
        stream(config.outbox_node.empty() ||
                       config.encoding == batch_encoding::journal
                   ? std::string{}
                   : config.outbox_node + '/' + std::to_string(index)),
        journal_stream(shared_state.journal_streams + '/' +
                       std::to_string(index)),
        projection([&shared_state](uint32_t section_no) {
          return shared_state.layout(section_no);
        }) {
    thread = std::thread([this] { supervise(); });
  }

  ~impl() { stop(); }

  /// Commits what is queued, then ends the thread; later pushes fail.
  void stop() {
    queue.close();
    if (thread.joinable()) thread.join();
  }

  shared_state& shared;
  const pg_store_config& config;
  const bool purges; // this writer deletes old idempotency records
  // Its outbox stream; empty without Kafka, and with the journal (which
  // is the outbox then).
  const std::string stream;
  // Its journal stream, used with batch_encoding::journal: this process's
  // own, so numbering from 1 never meets another's rows.
  const std::string journal_stream;
  work_queue<pending_write> queue;
  std::atomic<service_state> state{service_state::down};
  // Writer thread only.
  conn_ptr conn;
  std::chrono::steady_clock::time_point next_purge{};
  // The next outbox row's number in this stream, and the newest row's
  // time: rows are numbered in commit order and their times never go back,
  // which is the order the relay reads them in.
  int64_t next_outbox_seq = 1;
  millis last_outbox_ms = 0;
  // The same for the journal stream: the relay reads journal rows in the
  // order of their times too.
  int64_t next_journal_seq = 1;
  millis last_journal_ms = 0;
  // The backend of the last connection, ended before the next one writes.
  backend_id backend;
  // Drains the journal before a section load reads the tables.
  pg::journal_projection projection;
  // The batch being written: a member, so that a restart can answer it.
  std::vector<pending_write> in_flight;
  std::minstd_rand dice{std::random_device{}()}; // injected failures
  std::thread thread;

  // Sections whose snapshots are not written until they reload.
  failed_sections failed;

  /// Fails `write` with `err`, noting a failed change of a section.
  void fail(pending_write& write, caf::error err) {
    failed.mark(write);
    write.answer(std::move(err));
  }

  void push(pending_write write) {
    auto pushed = queue.push(write, config.queue_max);
    if (pushed == work_queue<pending_write>::pushed::yes) return;
    failed.mark(write);
    write.answer(make_error(
        errc::unavailable,
        std::string{pushed == work_queue<pending_write>::pushed::closed
                        ? "the store is closed"
                        : "the store's write queue is full"}));
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
    if (!pg::prepare_table_statements(conn.get()) ||
        !std::all_of(
            std::begin(writer_statements), std::end(writer_statements),
            [&](const auto& s) { return pg::prepare(conn.get(), s); })) {
      conn.reset();
      return false;
    }
    // The former connection's last COMMIT, if it is still under way, must
    // land before this one writes (end_former_backend).
    if (!end_former_backend(conn.get(), backend)) {
      conn.reset();
      return false;
    }
    backend = backend_of(conn.get());
    if (!stream.empty()) {
      // A transaction whose connection died may have committed its row:
      // continue after whatever the stream has.
      const char* values[] = {stream.c_str()};
      result_ptr last{PQexecPrepared(conn.get(), select_outbox_end.name, 1,
                                     values, nullptr, nullptr, 0)};
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

  /// A transaction committed; `outbox_ms` is its outbox row's time, 0 when
  /// it had none. The stream's next row takes the next number, and the
  /// relay is woken.
  void outbox_committed(millis outbox_ms) {
    if (outbox_ms == 0) return;
    RSV_ASSERT(outbox_ms >= last_outbox_ms,
               "a stream's outbox rows are timed in commit order");
    ++next_outbox_seq;
    last_outbox_ms = outbox_ms;
    if (config.on_outbox_commit) config.on_outbox_commit();
  }

  /// Writes `batch` as one pipelined transaction (pg_pipeline.hpp): the
  /// fence, one execute per kind of row, the journal row and the outbox row.
  caf::error commit_pipeline(const std::vector<const pending_write*>& batch) {
    auto now_ms = system_clock_source{}.now_ms();
    batch_content content;
    if (!shared.gather(batch, now_ms, content))
      return make_error(errc::unavailable,
                        std::string{"write for an unknown section"});
    // Rows are timed in commit order within their stream.
    millis outbox_ms = content.outbox_records > 0
                           ? std::max(now_ms, last_outbox_ms)
                           : millis{0};
    millis journal_ms = std::max(now_ms, last_journal_ms);
    pg::pipeline_transaction transaction{conn.get()};
    if (!transaction.begin())
      return make_error(errc::unavailable,
                        "PostgreSQL: " +
                            std::string{PQerrorMessage(conn.get())});
    auto fences = fences_of(batch);
    int fence_at = -1; // the fence's place among the results
    if (fences.count > 0) {
      const char* values[] = {fences.partitions.c_str(), fences.epochs.c_str()};
      fence_at =
          transaction.send(config.fencing ? check_fence : check_stale, values);
    }
    if (transaction.queued()) content.rows.send(transaction);
    bool journaled = content.journal_row.size() > 0 &&
                     send_journal_row(transaction, content, journal_ms);
    for (const auto* snapshot : content.snapshots) {
      auto no = std::to_string(snapshot->section_no);
      auto holds = std::to_string(snapshot->holds);
      const char* values[] = {no.c_str(), holds.c_str(), snapshot->body.data()};
      const int lengths[] = {0, 0, static_cast<int>(snapshot->body.size())};
      const int formats[] = {0, 0, 1};
      transaction.send(upsert_snapshot, values, lengths, formats);
    }
    if (content.outbox_records > 0) {
      auto seq = std::to_string(next_outbox_seq);
      auto at = std::to_string(outbox_ms);
      auto count = std::to_string(content.outbox_records);
      const char* values[] = {stream.c_str(), seq.c_str(), at.c_str(),
                              count.c_str(), content.outbox_payload.c_str()};
      transaction.send(insert_outbox, values);
    }
    auto outcome = transaction.finish(fence_at);
    if (outcome.connection_lost) {
      conn.reset();
      return make_error(errc::unavailable, "PostgreSQL: " + outcome.message);
    }
    // Fencing off (a test): the check only told whether it would have
    // refused.
    if (outcome.watched_true && !config.fencing) shared.stale_batch();
    if (!outcome.committed)
      return shared.refused(outcome.refusal, outcome.message);
    outbox_committed(outbox_ms);
    if (journaled) journal_committed(journal_ms, content.journal_records);
    if (!content.snapshots.empty() && shared.on_snapshot_commit)
      shared.on_snapshot_commit();
    return {};
  }

  /// Queues the batch's journal row, numbered next in this writer's
  /// stream and timed at `at_ms`; its body travels in binary format.
  bool send_journal_row(pg::pipeline_transaction& transaction,
                        batch_content& content, millis at_ms) {
    auto seq = std::to_string(next_journal_seq++);
    auto at = std::to_string(at_ms);
    auto entries = std::to_string(content.journal_row.size());
    auto records = std::to_string(content.journal_records);
    auto body = content.journal_row.finish();
    const char* values[] = {journal_stream.c_str(),
                            seq.c_str(),
                            at.c_str(),
                            entries.c_str(),
                            records.c_str(),
                            body.data(),
                            content.journal_sections.c_str()};
    const int lengths[] = {0, 0, 0, 0, 0, static_cast<int>(body.size()), 0};
    const int formats[] = {0, 0, 0, 0, 0, 1, 0};
    return transaction.send(insert_journal, values, lengths, formats) >= 0;
  }

  /// A journal row committed: the projector is woken, and the relay when
  /// the row has records for it.
  void journal_committed(millis at_ms, int64_t records) {
    last_journal_ms = at_ms;
    if (shared.on_journal_commit) shared.on_journal_commit();
    if (records > 0 && config.on_outbox_commit) config.on_outbox_commit();
  }

  /// Writes `batch` in one transaction; answers the error, if any.
  caf::error commit(const std::vector<const pending_write*>& batch) {
    if (!conn)
      return make_error(errc::unavailable,
                        std::string{"PostgreSQL connection lost"});
    return commit_pipeline(batch);
  }

  /// While idle, once a second: is the database still there? Keeps
  /// /health true when no writes come, and reconnects before they do.
  void check_connection() {
    if (conn && answers(conn.get())) {
      state = service_state::ok;
      return;
    }
    conn.reset();
    state = connect() ? service_state::ok : service_state::down;
  }

  /// Answers a section load; while the database is unreachable, with the
  /// error (the section retries).
  void load(section_load& request) {
    if (!request.slot) failed.clear(request.section_no);
    if (!conn && !connect()) {
      state = service_state::down;
      request.done(make_error(errc::unavailable,
                              std::string{"PostgreSQL is unreachable"}));
      request.done = nullptr;
      return;
    }
    // What this node (or another, before it took the section over) left
    // in the journal goes to the tables first.
    if (auto drained = projection.drain(conn.get()); !drained) {
      spdlog::warn("a section load cannot read the tables: {}",
                   describe(drained.error()));
      if (PQstatus(conn.get()) != CONNECTION_OK) {
        state = service_state::down;
        conn.reset();
      }
      std::exchange(request.done, nullptr)(drained.error());
      return;
    }
    pg::layout_map layouts;
    if (auto layout = shared.layout(request.section_no))
      layouts[request.section_no] = layout;
    auto holds = request.slot
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
            fail(write,
                 make_error(errc::unavailable,
                            std::string{"the store's writer restarted"}));
          in_flight.clear();
        },
        [this](std::chrono::milliseconds delay) { queue.pause(delay); },
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
      throw thread_fault("chaos: injected writer crash");
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
      fail(write,
           make_error(errc::unavailable,
                      std::string{"chaos: injected commit failure (nothing "
                                  "written)"}));
    return true;
  }

  enum class next_step { write, idle, stop };

  /// Waits up to a second for writes and moves the next batch into
  /// `in_flight`: a section load alone, or up to batch_rows_max writes.
  next_step take_batch() {
    auto step = next_step::idle;
    queue.wait_take(std::chrono::seconds(1),
                    [&](std::deque<pending_write>& waiting, bool closed) {
                      // Closed, the queue is still committed to the end.
                      if (waiting.empty()) {
                        step = closed ? next_step::stop : next_step::idle;
                        return;
                      }
                      step = next_step::write;
                      // A section load is a barrier: it runs alone, after
                      // the writes before it, so that it reads what they
                      // left.
                      if (waiting.front().is_load()) {
                        in_flight.push_back(std::move(waiting.front()));
                        waiting.pop_front();
                        return;
                      }
                      // A section's snapshot ends the batch for the
                      // section's later writes: its mark covers the whole
                      // journal row (migration 0012).
                      std::vector<uint32_t> snapshotted;
                      while (!waiting.empty() && !waiting.front().is_load() &&
                             in_flight.size() < config.batch_rows_max) {
                        auto& next = waiting.front();
                        auto section = next.section();
                        if (section &&
                            std::find(snapshotted.begin(), snapshotted.end(),
                                      *section) != snapshotted.end())
                          break;
                        if (std::holds_alternative<snapshot_write>(next.what))
                          snapshotted.push_back(*section);
                        in_flight.push_back(std::move(next));
                        waiting.pop_front();
                      }
                    });
    return step;
  }

  /// The writer's loop: batches while there are writes, a connection check
  /// and the purge while idle, until stopped with an empty queue.
  void run() {
    state = connect() ? service_state::ok : service_state::down;
    for (;;) {
      auto step = take_batch();
      if (step == next_step::stop) return;
      if (step == next_step::idle) {
        check_connection();
        purge_if_due();
        continue;
      }
      RSV_ASSERT(!in_flight.empty() &&
                     in_flight.size() <= config.batch_rows_max,
                 "a batch holds one to batch_rows_max writes");
      write_batch();
      in_flight.clear();
    }
  }

  /// Loads, or writes and answers, what `take_batch` put in flight.
  void write_batch() {
    if (in_flight.front().is_load()) {
      load(std::get<section_load>(in_flight.front().what));
      return;
    }
    if (inject_faults()) return;
    purge_if_due();
    if (!conn && !connect()) {
      state = service_state::down;
      // No client waits on an unreachable database: fail the batch now,
      // the callers answer 503, and the next batch tries again.
      for (auto& write : in_flight)
        fail(write, make_error(errc::unavailable,
                               std::string{"PostgreSQL is unreachable"}));
      queue.pause(std::chrono::milliseconds(config.reconnect_delay_ms));
      return;
    }
    std::vector<const pending_write*> all;
    for (auto& write : in_flight)
      if (!failed.refuse_stale_snapshot(write)) all.push_back(&write);
    if (all.empty()) return;
    auto started = std::chrono::steady_clock::now();
    auto err = commit(all);
    if (shared.batch_rows != nullptr) {
      shared.batch_rows->Observe(static_cast<double>(all.size()));
      shared.commit_seconds->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                        started)
              .count());
    }
    answer_batch(err);
  }

  /// Answers the batch in flight after its commit: all at once, or, when
  /// PostgreSQL refused it, each write tried again alone.
  void answer_batch(const caf::error& err) {
    if (!err) {
      state = service_state::ok;
      for (auto& write : in_flight)
        write.answer({});
      return;
    }
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      state = service_state::down;
      spdlog::warn("PostgreSQL connection lost: {}", describe(err));
      conn.reset();
      for (auto& write : in_flight)
        fail(write, err);
      return;
    }
    if (code_of(err) == errc::fenced) shared.fenced(err);
    if (in_flight.size() == 1) {
      spdlog::warn("store write refused: {}", describe(err));
      fail(in_flight.front(), err);
      return;
    }
    // One bad row must not fail its neighbours: write each alone (the
    // writes of a partition another node took are fenced again; those of
    // the others go through).
    for (auto& write : in_flight) {
      if (failed.refuse_stale_snapshot(write)) continue;
      auto single = commit({&write});
      if (!single) {
        write.answer({});
        continue;
      }
      spdlog::warn("store write refused: {}", describe(single));
      fail(write, std::move(single));
    }
  }
};

/// The writers, and which one a write goes to.

writer::writer(shared_state& shared, std::size_t index)
    : impl_(std::make_unique<impl>(shared, index)) {}

writer::~writer() = default;

void writer::push(pending_write write) {
  impl_->push(std::move(write));
}

void writer::push_load(section_load load) {
  // A load is not bounded by queue_max: a section waits on it to serve.
  pending_write item{std::move(load), {}};
  if (impl_->queue.push(item, std::numeric_limits<std::size_t>::max()) ==
      work_queue<pending_write>::pushed::yes)
    return;
  std::get<section_load>(item.what).done(
      make_error(errc::unavailable, std::string{"the store is stopping"}));
}

void writer::stop() {
  impl_->stop();
}

service_state writer::state() const {
  return impl_->state.load();
}

} // namespace rsv::persistence::pg
