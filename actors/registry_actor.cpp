#include "actors/runtime.hpp"
#include "core/ids.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <unordered_set>

namespace rsv {

namespace {

/// An event whose store write has finished (well or not).
struct event_written {
  std::shared_ptr<event_entry> entry;
  caf::error err;
  reply_fn<std::shared_ptr<const event_entry>> reply;
};

struct registry_state {
  std::unordered_set<std::string> pending_ids; // being written
  uint32_t next_section_no = 0;
  static inline const char* name = "registry";
};

using registry_self = caf::stateful_actor<registry_state>;

std::string make_event_id() {
  // make_random_id uses '_', which event ids may not contain.
  auto id = make_random_id("evt");
  id[3] = '-';
  return id;
}

bool starts_before(const std::shared_ptr<const event_entry>& a,
                   const std::shared_ptr<const event_entry>& b) {
  if (a->def.starts_at_ms != b->def.starts_at_ms)
    return a->def.starts_at_ms < b->def.starts_at_ms;
  return a->def.id < b->def.id;
}

/// Builds an event's directory entry and spawns its section actors, with
/// their recorded holds when recovering.
std::shared_ptr<event_entry> build_entry(
    caf::actor_system& system, const event_def& def,
    const std::vector<std::shared_ptr<const section_layout>>& layouts,
    const runtime_deps& deps,
    const std::shared_ptr<const customer_shards>& shards,
    std::unordered_map<uint32_t, std::vector<recorded_hold>>* recorded) {
  auto entry = std::make_shared<event_entry>();
  auto ttl_ms = def.hold_ttl_seconds * 1000;
  bool limit = def.max_seats_per_customer.has_value();
  for (std::size_t i = 0; i < def.sections.size(); ++i) {
    auto no = layouts[i]->section_no;
    auto section = std::make_shared<section_entry>();
    section->layout = layouts[i];
    std::vector<recorded_hold> holds;
    if (recorded != nullptr) {
      if (auto it = recorded->find(no); it != recorded->end())
        holds = std::move(it->second);
    }
    // The counts are right before the event is visible, without waiting
    // for the section actor to start.
    seat_counts counts{section->layout->seat_count(), 0, 0};
    for (const auto& hold : holds) {
      auto n = static_cast<uint32_t>(hold.seats.size());
      if (hold.status == hold_status::active) {
        counts.held += n;
        counts.free -= n;
      } else if (hold.status == hold_status::booked && !hold.cancelled) {
        counts.booked += n;
        counts.free -= n;
      }
    }
    section->publish(counts);
    section->actor = spawn_section(system, section, deps, shards, ttl_ms, limit,
                                   std::move(holds));
    entry->section_index.emplace(def.sections[i].id, i);
    entry->sections.push_back(std::move(section));
  }
  // Rows live in the section layouts; the entry keeps the rest.
  entry->def = def;
  for (auto& section_def : entry->def.sections)
    section_def.rows.clear();
  return entry;
}

/// Adds a published event to a new directory snapshot.
void add_event(directory_snapshot& next,
               const std::shared_ptr<const event_entry>& entry) {
  next.events.emplace(entry->def.id, entry);
  auto pos = std::upper_bound(next.events_ordered.begin(),
                              next.events_ordered.end(), entry, starts_before);
  next.events_ordered.insert(pos, entry);
  for (const auto& section : entry->sections) {
    auto no = section->layout->section_no;
    if (next.sections_by_no.size() <= no) next.sections_by_no.resize(no + 1);
    next.sections_by_no[no] = section;
  }
}

} // namespace

} // namespace rsv

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::event_written)

namespace rsv {

caf::actor spawn_registry(caf::actor_system& system, const runtime_deps& deps,
                          std::shared_ptr<directory> dir,
                          std::shared_ptr<const customer_shards> shards) {
  auto behavior = [deps, dir, shards](registry_self* self) -> caf::behavior {
    return {
        [=](create_event_request& req) {
          auto& def = req.def;
          if (def.id.empty()) {
            do
              def.id = make_event_id();
            while (dir->find_event(def.id) ||
                   self->state.pending_ids.count(def.id) > 0);
          }
          if (dir->find_event(def.id) ||
              self->state.pending_ids.count(def.id)) {
            req.reply(make_error(errc::event_exists));
            return;
          }
          self->state.pending_ids.insert(def.id);
          std::vector<uint32_t> section_nos;
          for (std::size_t i = 0; i < def.sections.size(); ++i)
            section_nos.push_back(self->state.next_section_no++);
          std::vector<std::shared_ptr<const section_layout>> layouts;
          for (std::size_t i = 0; i < def.sections.size(); ++i)
            layouts.push_back(
                section_layout::make(def.id, def.sections[i], section_nos[i]));
          auto entry =
              build_entry(self->system(), def, layouts, deps, shards, nullptr);
          caf::actor me = caf::actor_cast<caf::actor>(self);
          deps.store->create_event(
              def, std::move(section_nos),
              [me, entry, reply = req.reply](caf::error err) {
                caf::anon_send(me, event_written{entry, std::move(err), reply});
              });
        },
        [=](recover_events_request& req) {
          auto next = std::make_shared<directory_snapshot>(*dir->snapshot());
          for (std::size_t i = 0; i < req.events.size(); ++i)
            add_event(*next, build_entry(self->system(), req.events[i].def,
                                         req.events[i].layouts, deps, shards,
                                         &req.holds));
          self->state.next_section_no =
              std::max(self->state.next_section_no, req.next_section_no);
          dir->publish(std::move(next));
          deps.metrics->events.Increment(
              static_cast<double>(req.events.size()));
          req.reply(req.events.size());
        },
        [=](event_written& msg) {
          auto& entry = msg.entry;
          self->state.pending_ids.erase(entry->def.id);
          if (msg.err) {
            spdlog::warn("event {} not created: the store refused it: {}",
                         entry->def.id, describe(msg.err));
            for (auto& section : entry->sections)
              self->send_exit(section->actor, caf::exit_reason::user_shutdown);
            msg.reply(std::move(msg.err));
            return;
          }
          auto next = std::make_shared<directory_snapshot>(*dir->snapshot());
          std::shared_ptr<const event_entry> published = entry;
          add_event(*next, published);
          dir->publish(std::move(next));
          deps.metrics->events.Increment();
          spdlog::info("event {} created: {} sections, {} seats", entry->def.id,
                       entry->sections.size(), entry->seat_count());
          msg.reply(std::move(published));
        },
    };
  };
  return system.spawn(behavior);
}

} // namespace rsv
