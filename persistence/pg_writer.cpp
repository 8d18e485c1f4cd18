#include "persistence/pg_writer.hpp"

#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/journal_projection.hpp"
#include "persistence/outbox.hpp"
#include "persistence/pg_tables.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <random>
#include <set>
#include <spdlog/spdlog.h>
#include <string_view>
#include <thread>

namespace rsv::pg {

namespace {

millis wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// This process's journal streams: `<node>/<start>`, where `<start>` is the
/// process's start in microseconds, in hex; writer n appends `/n`.
std::string journal_streams_of(const std::string& node) {
  char start[24];
  std::snprintf(start, sizeof(start), "%llx",
                static_cast<unsigned long long>(
                    std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()));
  return (node.empty() ? std::string{"node"} : node) + '/' + start;
}

// The writer's own statements; the tables' are in pg_tables.cpp.

constexpr prepared_statement insert_outbox{
    "rsv_insert_outbox", 5,
    "INSERT INTO outbox (stream, seq, created_at, records, payload) VALUES "
    "($1, $2::int8, to_timestamp($3::int8 / 1000.0), $4::int, $5)"};
constexpr prepared_statement select_outbox_end{
    "rsv_select_outbox_end", 1,
    "SELECT coalesce(max(seq), 0) FROM outbox WHERE stream = $1"};

// The cluster's fence (migration 0006, docs/cluster.md): the first statement
// of a transaction whose writes were made under an ownership epoch. It fails
// with SQLSTATE RSV01 when any of them is no longer current. The test-only
// switch that turns fencing off asks the second instead, which only tells.
constexpr prepared_statement check_fence{
    "rsv_check_fence", 2, "SELECT rsv_fence($1::int[], $2::int8[])"};
constexpr prepared_statement check_stale{
    "rsv_check_stale", 2, "SELECT rsv_stale_epochs($1::int[], $2::int8[])"};
constexpr const char* fenced_sqlstate = "RSV01";

// The journal's row (migration 0008): its body is sent in binary format.
constexpr prepared_statement insert_journal{
    "rsv_insert_journal", 5,
    "INSERT INTO journal (stream, seq, created_at, entries, body) VALUES "
    "($1, $2::int8, to_timestamp($3::int8 / 1000.0), $4::int, $5::bytea)"};

constexpr prepared_statement writer_statements[] = {
    insert_outbox, select_outbox_end, insert_journal, check_fence, check_stale};

/// The distinct ownership fences a batch's writes were made under, as the
/// two array parameters of rsv_fence; empty when none was (a single node).
struct batch_fences {
  pg::array_param partitions;
  pg::array_param epochs;
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

} // namespace

shared_state::shared_state(pg_store_config cfg)
    : config(std::move(cfg)), journal_streams(journal_streams_of(config.node)) {
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
    commit_seconds = &prometheus::BuildHistogram()
                          .Name("rsv_store_commit_seconds")
                          .Help("Time to write and commit one batch")
                          .Register(*config.registry)
                          .Add({}, prometheus::Histogram::BucketBoundaries{
                                       0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                       0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
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

caf::error shared_state::refused(errc refusal, const std::string& message) {
  return make_error(refusal, "PostgreSQL: " + message);
}

void shared_state::fenced(const caf::error& err) {
  if (fenced_batches != nullptr) fenced_batches->Increment();
  spdlog::warn("a batch was fenced: {}", describe(err));
}

void shared_state::stale_batch() {
  if (stale_batches != nullptr) stale_batches->Increment();
  spdlog::error("fencing is OFF (test switch) and a batch was written under "
                "a stale epoch");
}

std::shared_ptr<const section_layout>
shared_state::layout(uint32_t section_no) {
  std::shared_lock<std::shared_mutex> guard{layouts_mutex};
  auto it = layouts.find(section_no);
  return it == layouts.end() ? nullptr : it->second;
}

void shared_state::learn(std::shared_ptr<const section_layout> layout) {
  std::unique_lock<std::shared_mutex> guard{layouts_mutex};
  layouts[layout->section_no] = std::move(layout);
}

struct writer::impl {
  impl(shared_state& shared_state, std::size_t index)
      : shared(shared_state), config(shared_state.config), purges(index == 0),
        stream(config.outbox_node.empty()
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
  // Its journal stream, used with batch_encoding::journal: this process's
  // own, so numbering from 1 never meets another's rows.
  const std::string journal_stream;
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
  int64_t next_journal_seq = 1;
  // Drains the journal before a section load reads the tables.
  pg::journal_projection projection;
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

  /// The records of a batch's outbox row and its time; no records when it
  /// has none. False when a change's section is unknown.
  bool outbox_payload(const std::vector<const pending_write*>& batch,
                      std::string& payload, int64_t& records,
                      millis& created_ms) {
    auto now_ms = wall_clock_ms();
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

  /// Sorts a batch's writes into the tables' statements (pg_tables.hpp).
  /// False when a change's section is unknown.
  /// With the journal, seat changes and idempotency records go to its row
  /// instead; events and customers, rare and checked by unique indexes,
  /// always go to their tables.
  bool gather(const std::vector<const pending_write*>& batch,
              pg::table_rows& rows, journal::encoder& journal_row) {
    const bool journaled = config.encoding == batch_encoding::journal;
    for (const auto* write : batch) {
      if (const auto* event = std::get_if<event_write>(&write->what)) {
        rows.add(event->def, event->section_nos);
      } else if (const auto* customer =
                     std::get_if<customer_record>(&write->what)) {
        rows.add(*customer);
      } else if (const auto* record =
                     std::get_if<idempotency_record>(&write->what)) {
        if (journaled)
          journal_row.add(*record);
        else
          rows.add(*record);
      } else if (journaled) {
        journal_row.add(std::get<seat_change>(write->what));
      } else {
        const auto& change = std::get<seat_change>(write->what);
        auto layout = shared.layout(change.section_no);
        if (!layout) return false;
        rows.add(change, *layout);
      }
    }
    return true;
  }

  /// Writes `batch` as prepared statements in libpq's pipeline mode: BEGIN,
  /// one execute per kind of row, the outbox row, COMMIT and a sync go out
  /// together, and the results come back in one round trip. Parameters
  /// travel as parameters, so nothing is escaped into SQL text.
  caf::error commit_pipeline(const std::vector<const pending_write*>& batch) {
    pg::table_rows rows;
    journal::encoder journal_row;
    std::string payload;
    int64_t records = 0;
    millis outbox_ms = 0;
    if (!gather(batch, rows, journal_row) ||
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
    if (queued) {
      auto tables = rows.send(c);
      queued = tables >= 0;
      sent += queued ? tables : 0;
    }
    bool journaled = false;
    if (journal_row.size() > 0 && queued) {
      auto seq = std::to_string(next_journal_seq++);
      auto at = std::to_string(wall_clock_ms());
      auto entries = std::to_string(journal_row.size());
      auto body = journal_row.finish();
      const char* values[] = {journal_stream.c_str(), seq.c_str(), at.c_str(),
                              entries.c_str(), body.data()};
      const int lengths[] = {0, 0, 0, 0, static_cast<int>(body.size())};
      const int formats[] = {0, 0, 0, 0, 1};
      queued =
          PQsendQueryPrepared(c, insert_journal.name, insert_journal.params,
                              values, lengths, formats, 0) == 1;
      sent += queued ? 1 : 0;
      journaled = queued;
    }
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
      if (journaled && shared.on_journal_commit) shared.on_journal_commit();
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
    return commit_pipeline(batch);
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
      RSV_ASSERT(!in_flight.empty() &&
                     in_flight.size() <= config.batch_rows_max,
                 "a batch holds one to batch_rows_max writes");
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

writer::writer(shared_state& shared, std::size_t index)
    : impl_(std::make_unique<impl>(shared, index)) {}

writer::~writer() = default;

void writer::push(pending_write write) {
  impl_->push(std::move(write));
}

void writer::push_load(section_load load) {
  auto& w = *impl_;
  {
    std::lock_guard<std::mutex> guard{w.mutex};
    if (!w.stopping) {
      w.queue.push_back({std::move(load), {}});
      w.wake.notify_one();
      return;
    }
  }
  load.done(
      make_error(errc::unavailable, std::string{"the store is stopping"}));
}

void writer::stop() {
  impl_->stop();
}

service_state writer::state() const {
  return impl_->state.load();
}

} // namespace rsv::pg
