#include "core/metrics.hpp"
#include "persistence/outbox.hpp"
#include "persistence/pg_writer.hpp"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <set>
#include <spdlog/spdlog.h>
#include <string_view>

namespace rsv::persistence::pg {

namespace {

/// This process's journal streams: `<node>/<start>`, where `<start>` is the
/// process's start in microseconds, in hex; writer n appends `/n`.
std::string journal_streams_of(const std::string& node) {
  return (node.empty() ? std::string{"node"} : node) + '/' +
         microseconds_now_hex();
}

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

bool shared_state::gather(const std::vector<const pending_write*>& batch,
                          millis now_ms, batch_content& out) {
  const bool journaled = config.encoding == batch_encoding::journal;
  const bool relayed = !config.outbox_node.empty();
  std::set<uint32_t> sections;
  for (const auto* write : batch) {
    if (const auto* snapshot = std::get_if<snapshot_write>(&write->what)) {
      if (journaled) out.snapshots.push_back(snapshot);
    } else if (const auto* event = std::get_if<event_write>(&write->what)) {
      out.rows.add(event->def, event->section_nos);
      if (relayed && journaled) {
        out.journal_row.add(journal::event_created{
            event->def, event->section_nos, event->fence, now_ms});
        ++out.journal_records;
      } else if (relayed) {
        render_outbox_record(event->def, now_ms, out.outbox_payload);
        ++out.outbox_records;
      }
    } else if (const auto* customer =
                   std::get_if<customer_record>(&write->what)) {
      out.rows.add(*customer);
    } else if (const auto* record =
                   std::get_if<idempotency_record>(&write->what)) {
      if (journaled)
        out.journal_row.add(*record);
      else
        out.rows.add(*record);
    } else if (journaled) {
      const auto& change = std::get<seat_change>(write->what);
      out.journal_row.add(change);
      out.journal_records += relayed ? 1 : 0;
      sections.insert(change.section_no);
    } else {
      const auto& change = std::get<seat_change>(write->what);
      auto section = layout(change.section_no);
      if (!section) return false;
      out.rows.add(change, *section);
      if (!relayed) continue;
      render_outbox_record(change, *section, out.outbox_payload);
      ++out.outbox_records;
    }
  }
  for (auto no : sections)
    out.journal_sections.add(static_cast<int64_t>(no));
  return true;
}

void failed_sections::mark(const pending_write& write) {
  auto section = write.section();
  if (!section || std::holds_alternative<snapshot_write>(write.what)) return;
  std::lock_guard lock{mutex_};
  sections_.insert(*section);
}

void failed_sections::clear(uint32_t section_no) {
  std::lock_guard lock{mutex_};
  sections_.erase(section_no);
}

bool failed_sections::refuse_stale_snapshot(pending_write& write) {
  const auto* snapshot = std::get_if<snapshot_write>(&write.what);
  if (snapshot == nullptr) return false;
  {
    std::lock_guard lock{mutex_};
    if (sections_.count(snapshot->section_no) == 0) return false;
  }
  write.answer(make_error(errc::unavailable,
                          std::string{"a snapshot taken before a failed "
                                      "write of its section is not written"}));
  return true;
}

batch_fences fences_of(const std::vector<const pending_write*>& batch) {
  std::set<write_fence> distinct;
  for (const auto* write : batch) {
    if (const auto* change = std::get_if<seat_change>(&write->what))
      distinct.insert(change->fence);
    else if (const auto* event = std::get_if<event_write>(&write->what))
      distinct.insert(event->fence);
    else if (const auto* snapshot = std::get_if<snapshot_write>(&write->what))
      distinct.insert(snapshot->fence);
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

backend_id backend_of(PGconn* conn) {
  result_ptr result{PQexec(conn, "SELECT pg_backend_pid(), backend_start::text "
                                 "FROM pg_stat_activity WHERE pid = "
                                 "pg_backend_pid()")};
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK ||
      PQntuples(result.get()) != 1)
    return {};
  return {static_cast<int>(int_at(result.get(), 0, 0)),
          text_at(result.get(), 0, 1)};
}

bool end_former_backend(PGconn* conn, const backend_id& former) {
  if (former.pid == 0) return true;
  // pg_terminate_backend waits for the backend to exit, at most 5 s. A
  // COMMIT under way finishes first (it cannot be interrupted); one not
  // begun never happens.
  auto ended = exec_params(
      conn,
      "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
      "pid = $1::int AND backend_start::text = $2",
      {std::to_string(former.pid), former.started});
  // A server that cannot (no such function before PostgreSQL 14, a role
  // without the right) leaves the writer as it was before this fence: it
  // must not stop writing for good.
  if (PQresultStatus(ended.get()) != PGRES_TUPLES_OK) {
    spdlog::warn("PostgreSQL: cannot end the writer's former backend {} "
                 "(writing anyway): {}",
                 former.pid, PQerrorMessage(conn));
    return PQstatus(conn) == CONNECTION_OK;
  }
  // Still there after the wait: a COMMIT under way there is stuck; write
  // nothing until it is over.
  if (PQntuples(ended.get()) != 0 &&
      std::string_view{PQgetvalue(ended.get(), 0, 0)} != "t") {
    spdlog::warn("PostgreSQL: the writer's former backend {} is still there",
                 former.pid);
    return false;
  }
  return true;
}

} // namespace rsv::persistence::pg
