#include "persistence/pg_store.hpp"

#include "core/errc.hpp"
#include "persistence/journal_projector.hpp"
#include "persistence/pg_writer.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace rsv::persistence {

using pg::event_write;
using pg::section_load;

struct pg_store::impl {
  explicit impl(pg_store_config config) : shared(std::move(config)) {
    if (shared.config.encoding == batch_encoding::journal) {
      projector = std::make_unique<pg::journal_projector>(
          pg::journal_projector::options{
              shared.config.dsn,
              [this](uint32_t section_no) { return shared.layout(section_no); },
              256, shared.config.journal_step_interval_ms,
              shared.config.registry});
      shared.on_journal_commit = [this] { projector->poke(); };
      shared.on_snapshot_commit = [this] { projector->snapshots_committed(); };
    }
    auto count = std::max<std::size_t>(1, shared.config.writers);
    for (std::size_t i = 0; i < count; ++i)
      writers.push_back(std::make_unique<pg::writer>(shared, i));
  }

  /// A section's writes and loads: always the same writer, so in order.
  pg::writer& for_section(uint32_t section_no) {
    return *writers[section_no % writers.size()];
  }

  /// Queues a load on its section's writer, after the writes before it.
  void load(section_load request) {
    for_section(request.section_no).push_load(std::move(request));
  }

  pg::shared_state shared;
  // Declared before the writers, so destroyed after them: they poke it.
  std::unique_ptr<pg::journal_projector> projector;
  std::vector<std::unique_ptr<pg::writer>> writers;
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

bool pg_store::keeps_snapshots() const {
  return impl_->shared.config.encoding == batch_encoding::journal;
}

void pg_store::put_snapshot(uint32_t section_no, std::string body,
                            uint32_t holds, write_fence fence, store_ack done) {
  impl_->for_section(section_no)
      .push({pg::snapshot_write{section_no, std::move(body), holds, fence},
             std::move(done)});
}

void pg_store::load_section(uint32_t section_no, section_loaded done) {
  impl_->load(section_load{section_no, std::nullopt, std::move(done)});
}

void pg_store::load_hold(uint32_t section_no, uint32_t slot, hold_loaded done) {
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
  // What the writers committed last goes to the tables before the process
  // ends (a restart would project it anyway).
  if (impl_->projector) impl_->projector->stop();
}

store_faults* pg_store::faults() {
  return &impl_->shared.faults;
}

service_state pg_store::health() const {
  // Down when any writer is: its sections cannot write.
  for (const auto& w : impl_->writers)
    if (w->state() != service_state::ok) return service_state::down;
  // The tables no longer follow the writes: a restart or a section's
  // reload could not read them.
  if (impl_->projector && impl_->projector->health() != service_state::ok)
    return service_state::down;
  return service_state::ok;
}

std::optional<projection_status> pg_store::projection() const {
  if (!impl_->projector) return std::nullopt;
  return impl_->projector->backlog();
}

} // namespace rsv::persistence
