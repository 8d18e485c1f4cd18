#include "actors/runtime.hpp"
#include "core/ids.hpp"
#include "core/partition.hpp"
#include "persistence/cluster_store.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <spdlog/spdlog.h>
#include <unordered_set>

namespace rsv::actors {

namespace {

/// An event whose store write has finished (well or not).
struct event_written {
  std::shared_ptr<event_entry> entry;
  caf::error err;
  reply_fn<std::shared_ptr<const event_entry>> reply;
};

using steady = std::chrono::steady_clock;

/// A section actor under the registry's supervision: what it takes to
/// start its next incarnation, and its recent restarts.
struct supervised_section {
  std::shared_ptr<section_entry> entry;
  std::shared_ptr<section_memory> memory; // the incarnations' one memory
  int64_t hold_ttl_ms = 0;
  bool customer_limit = false;
  steady::time_point started{};            // of the current incarnation
  std::deque<steady::time_point> restarts; // within the storm window
  millis backoff_ms = 0;                   // of the last restart
  bool failed = false;                     // a restart storm stopped it
};

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

/// Removes an event from a new directory snapshot.
void remove_event(directory_snapshot& next, const std::string& id) {
  auto found = next.events.find(id);
  if (found == next.events.end()) return;
  for (const auto& section : found->second->sections)
    next.sections_by_no[section->layout->section_no] = nullptr;
  std::erase_if(next.events_ordered,
                [&](const auto& entry) { return entry->def.id == id; });
  next.events.erase(found);
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

} // namespace rsv::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::event_written)

namespace rsv::actors {

namespace {

/// The one writer of the directory: makes event ids unique, spawns an
/// event's section actors, writes the event through the store, and
/// publishes it; in a cluster it also serves and drops partitions' events.
///
/// It supervises every section actor it spawns (it monitors them). One
/// that dies for any reason but a shutdown is restarted after a bounded
/// exponential backoff, from its memory and reloading from the store
/// (section_actor.hpp); requests that were in its mailbox, and those sent
/// to it until the restart, are dropped, and their reply_fn answers 503
/// `unavailable` with Retry-After: safe to retry with their Idempotency-Key.
/// Past limits::section_restarts_max restarts within
/// limits::section_restart_window_ms it starts the section failed instead.
class registry : public caf::event_based_actor {
public:
  registry(caf::actor_config& cfg, const runtime_deps& deps,
           std::shared_ptr<directory> dir,
           std::shared_ptr<const customer_shards> shards)
      : caf::event_based_actor(cfg), deps_(deps), dir_(std::move(dir)),
        shards_(std::move(shards)) {}

  const char* name() const override { return "registry"; }

  caf::behavior make_behavior() override {
    // Stops every section it supervises: one it restarted after the node
    // began to stop would otherwise outlive it.
    attach_functor([sections = sections_](const caf::error&) {
      for (const auto& [no, sup] : *sections)
        caf::anon_send_exit(sup.entry->actor(),
                            caf::exit_reason::user_shutdown);
    });
    set_down_handler([this](caf::down_msg& msg) { section_down(msg); });
    return {
        [this](restart_atom, uint32_t no) { restart(no); },
        [this](create_event_request& req) { create_event(req); },
        [this](section_nos_reserved& msg) { numbers_reserved(msg); },
        [this](recover_events_request& req) {
          add_events(req.events, req.holds);
          next_section_no_ = std::max(next_section_no_, req.next_section_no);
          req.reply(req.events.size());
        },
        [this](load_events_request& req) {
          add_events(req.events, req.holds);
          req.reply(req.events.size());
        },
        [this](drop_partitions_request& req) { drop_partitions(req); },
        [this](event_written& msg) { written(msg); },
    };
  }

private:
  using sections_map = std::unordered_map<uint32_t, supervised_section>;

  /// Spawns an incarnation of a supervised section, monitored, and routes
  /// its section's requests to it.
  void start_section(supervised_section& sup, section_start start) {
    auto actor =
        spawn_section(system(), sup.entry, deps_, shards_, sup.hold_ttl_ms,
                      sup.customer_limit, sup.memory, start);
    monitor(actor);
    section_of_[actor.id()] = sup.entry->layout->section_no;
    sup.started = steady::now();
    // Requests counted for the dead incarnation died with its mailbox: the
    // count starts again for this one (a request counted at this very
    // moment may be off by one, until the next restart).
    sup.entry->restart_count();
    sup.entry->set_actor(std::move(actor));
  }

  void section_down(caf::down_msg& msg) {
    auto found = section_of_.find(msg.source.id());
    if (found == section_of_.end()) return;
    auto no = found->second;
    section_of_.erase(found);
    auto sup = sections_->find(no);
    if (sup == sections_->end()) return;
    // A shutdown (the node stops, or the store refused the event) is meant:
    // no restart.
    if (msg.reason == caf::exit_reason::user_shutdown ||
        msg.reason == caf::exit_reason::normal) {
      sections_->erase(sup);
      return;
    }
    if (auto delay = restart_delay(sup->second, msg.reason))
      delayed_send(this, std::chrono::milliseconds(*delay), restart_atom::value,
                   no);
  }

  /// A supervised section's actor died for `reason`: the delay of its
  /// restart, or nullopt when it was started failed at once (after a storm).
  std::optional<millis> restart_delay(supervised_section& sup,
                                      const caf::error& reason) {
    const auto& layout = *sup.entry->layout;
    auto now = steady::now();
    auto window = std::chrono::milliseconds(limits::section_restart_window_ms);
    while (!sup.restarts.empty() && now - sup.restarts.front() > window)
      sup.restarts.pop_front();
    if (sup.failed) {
      // A failed section's stand-in was killed: it stays failed, uncounted.
      start_section(sup, section_start::failed);
      return std::nullopt;
    }
    if (sup.restarts.size() >= limits::section_restarts_max) {
      sup.failed = true;
      deps_.metrics->sections_failed.Increment();
      spdlog::error("section {} of event {} died ({}) after {} restarts "
                    "within {} s: it is failed and answers 503 until the node "
                    "restarts",
                    layout.section_id, layout.event_id, to_string(reason),
                    sup.restarts.size(),
                    limits::section_restart_window_ms / 1000);
      start_section(sup, section_start::failed);
      return std::nullopt;
    }
    auto stable = std::chrono::milliseconds(limits::section_restart_stable_ms);
    if (now - sup.started >= stable) sup.backoff_ms = 0;
    sup.backoff_ms = std::clamp<millis>(
        sup.backoff_ms * 2, limits::section_restart_backoff_first_ms,
        limits::section_restart_backoff_max_ms);
    sup.restarts.push_back(now);
    spdlog::warn("section {} of event {} died ({}): restart {} within {} s "
                 "(at most {}) in {} ms",
                 layout.section_id, layout.event_id, to_string(reason),
                 sup.restarts.size(), limits::section_restart_window_ms / 1000,
                 limits::section_restarts_max, sup.backoff_ms);
    return sup.backoff_ms;
  }

  void restart(uint32_t no) {
    auto sup = sections_->find(no);
    if (sup == sections_->end() || sup->second.failed) return;
    deps_.metrics->section_restarts.Increment();
    start_section(sup->second, section_start::restarted);
  }

  /// Builds an event's directory entry and spawns its section actors, with
  /// their recorded holds when recovering.
  std::shared_ptr<event_entry> build_entry(
      const event_def& def,
      const std::vector<std::shared_ptr<const section_layout>>& layouts,
      std::unordered_map<uint32_t, std::vector<recorded_hold>>* recorded) {
    auto entry = std::make_shared<event_entry>();
    for (std::size_t i = 0; i < def.sections.size(); ++i) {
      std::vector<recorded_hold> holds;
      if (recorded != nullptr) {
        if (auto it = recorded->find(layouts[i]->section_no);
            it != recorded->end())
          holds = std::move(it->second);
      }
      entry->section_index.emplace(def.sections[i].id, i);
      entry->sections.push_back(
          build_section(def, layouts[i], std::move(holds)));
    }
    // Rows live in the section layouts; the entry keeps the rest.
    entry->def = def;
    for (auto& section_def : entry->def.sections)
      section_def.rows.clear();
    return entry;
  }

  std::shared_ptr<section_entry>
  build_section(const event_def& def,
                const std::shared_ptr<const section_layout>& layout,
                std::vector<recorded_hold> holds) {
    auto section = std::make_shared<section_entry>();
    section->layout = layout;
    // The counts are right before the event is visible, without waiting for
    // the section actor to start.
    seat_counts counts{layout->seat_count(), 0, 0};
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
    auto ttl_ms = def.hold_ttl_seconds * 1000;
    auto& sup = (*sections_)[layout->section_no];
    sup.entry = section;
    sup.memory = make_section_memory(layout, ttl_ms, std::move(holds), deps_);
    sup.hold_ttl_ms = ttl_ms;
    sup.customer_limit = def.max_seats_per_customer.has_value();
    start_section(sup, section_start::fresh);
    return section;
  }

  bool id_taken(const std::string& id) const {
    return dir_->find_event(id) || pending_ids_.count(id) > 0;
  }

  void create_event(create_event_request& req) {
    auto& def = req.def;
    if (def.id.empty()) {
      do
        def.id = make_event_id();
      while (id_taken(def.id));
    }
    if (id_taken(def.id)) {
      req.reply(make_error(errc::event_exists));
      return;
    }
    pending_ids_.insert(def.id);
    if (deps_.cluster) {
      // Nodes create events concurrently: section numbers come from the
      // database's sequence, and the event is written under its partition's
      // epoch. The front end sent it to the owner.
      if (!local_fence(def.id)) {
        pending_ids_.erase(def.id);
        req.reply(make_error(errc::not_owner));
        return;
      }
      caf::actor me = caf::actor_cast<caf::actor>(this);
      auto count = def.sections.size();
      deps_.cluster_db->reserve_section_nos(
          count, [me, req = std::move(req)](
                     caf::expected<std::vector<uint32_t>> nos) mutable {
            caf::anon_send(
                me, section_nos_reserved{std::move(req), std::move(nos)});
          });
      return;
    }
    std::vector<uint32_t> section_nos;
    for (std::size_t i = 0; i < def.sections.size(); ++i)
      section_nos.push_back(next_section_no_++);
    start_event(std::move(req), std::move(section_nos), {});
  }

  /// The fence of the event's partition when this node serves it.
  std::optional<write_fence> local_fence(const std::string& event_id) const {
    auto partition = partition_of(event_id, deps_.cluster->partitions());
    auto info = deps_.cluster->get(partition);
    if (info.state != partition_state::local) return std::nullopt;
    return write_fence{partition, info.epoch};
  }

  void numbers_reserved(section_nos_reserved& msg) {
    auto& def = msg.request.def;
    if (!msg.section_nos) {
      pending_ids_.erase(def.id);
      msg.request.reply(std::move(msg.section_nos.error()));
      return;
    }
    auto fence = local_fence(def.id);
    if (!fence) {
      pending_ids_.erase(def.id);
      msg.request.reply(make_error(errc::not_owner));
      return;
    }
    start_event(std::move(msg.request), std::move(*msg.section_nos), *fence);
  }

  /// Builds a new event's sections and writes it; it is published when the
  /// store acknowledged it (event_written).
  void start_event(create_event_request req, std::vector<uint32_t> section_nos,
                   write_fence fence) {
    auto& def = req.def;
    std::vector<std::shared_ptr<const section_layout>> layouts;
    for (std::size_t i = 0; i < def.sections.size(); ++i)
      layouts.push_back(
          section_layout::make(def.id, def.sections[i], section_nos[i], fence));
    auto entry = build_entry(def, layouts, nullptr);
    caf::actor me = caf::actor_cast<caf::actor>(this);
    deps_.store->create_event(
        def, std::move(section_nos),
        [me, entry, reply = req.reply](caf::error err) {
          caf::anon_send(me, event_written{entry, std::move(err), reply});
        },
        fence);
  }

  /// Serves recorded events: at recovery, or when a cluster node takes
  /// their partitions over.
  void
  add_events(std::vector<persistence::recovered_event>& events,
             std::unordered_map<uint32_t, std::vector<recorded_hold>>& holds) {
    auto next = std::make_shared<directory_snapshot>(*dir_->snapshot());
    for (auto& event : events)
      add_event(*next, build_entry(event.def, event.layouts, &holds));
    dir_->publish(std::move(next));
    deps_.metrics->events.Increment(static_cast<double>(events.size()));
  }

  void drop_partitions(drop_partitions_request& req) {
    auto current = dir_->snapshot();
    auto next = std::make_shared<directory_snapshot>(*current);
    std::vector<std::string> dropped;
    for (const auto& [id, entry] : current->events) {
      auto p = partition_of(id, req.partition_count);
      if (std::find(req.partitions.begin(), req.partitions.end(), p) ==
          req.partitions.end())
        continue;
      dropped.push_back(id);
      for (const auto& section : entry->sections) {
        // Erased first: its down message then restarts nothing.
        sections_->erase(section->layout->section_no);
        send_exit(section->actor(), caf::exit_reason::user_shutdown);
      }
      remove_event(*next, id);
    }
    dir_->publish(std::move(next));
    deps_.metrics->events.Decrement(static_cast<double>(dropped.size()));
    for (const auto& shard : shards_->actors)
      send(shard, forget_events{dropped});
    req.reply(dropped.size());
  }

  void written(event_written& msg) {
    auto& entry = msg.entry;
    pending_ids_.erase(entry->def.id);
    if (msg.err) {
      spdlog::warn("event {} not created: the store refused it: {}",
                   entry->def.id, describe(msg.err));
      for (auto& section : entry->sections)
        send_exit(section->actor(), caf::exit_reason::user_shutdown);
      msg.reply(std::move(msg.err));
      return;
    }
    auto next = std::make_shared<directory_snapshot>(*dir_->snapshot());
    std::shared_ptr<const event_entry> published = entry;
    add_event(*next, published);
    dir_->publish(std::move(next));
    deps_.metrics->events.Increment();
    spdlog::info("event {} created: {} sections, {} seats", entry->def.id,
                 entry->sections.size(), entry->seat_count());
    msg.reply(std::move(published));
  }

  const runtime_deps deps_;
  const std::shared_ptr<directory> dir_;
  const std::shared_ptr<const customer_shards> shards_;
  std::unordered_set<std::string> pending_ids_; // being written
  uint32_t next_section_no_ = 0;
  // By number. Shared with the exit functor (make_behavior).
  std::shared_ptr<sections_map> sections_ = std::make_shared<sections_map>();
  std::unordered_map<caf::actor_id, uint32_t> section_of_; // live actors
};

} // namespace

caf::actor spawn_registry(caf::actor_system& system, const runtime_deps& deps,
                          std::shared_ptr<directory> dir,
                          std::shared_ptr<const customer_shards> shards) {
  return system.spawn<registry>(deps, std::move(dir), std::move(shards));
}

} // namespace rsv::actors
