#include "core/metrics.hpp"
#include "persistence/outbox.hpp"
#include "persistence/pg_writer.hpp"

#include <chrono>
#include <cstdio>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

namespace rsv::persistence::pg {

namespace {

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
                          table_rows& rows, journal::encoder& journal_row) {
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
      auto section = layout(change.section_no);
      if (!section) return false;
      rows.add(change, *section);
    }
  }
  return true;
}

bool shared_state::render_outbox(const std::vector<const pending_write*>& batch,
                                 millis now_ms, std::string& payload,
                                 int64_t& records) {
  for (const auto* write : batch) {
    if (const auto* event = std::get_if<event_write>(&write->what)) {
      render_outbox_record(event->def, now_ms, payload);
      ++records;
    } else if (const auto* change = std::get_if<seat_change>(&write->what)) {
      auto section = layout(change->section_no);
      if (!section) return false;
      render_outbox_record(*change, *section, payload);
      ++records;
    }
  }
  return true;
}

} // namespace rsv::persistence::pg
