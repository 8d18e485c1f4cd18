#include "actors/cluster_coordinator.hpp"

#include "actors/runtime.hpp"
#include "core/errc.hpp"
#include "core/partition.hpp"
#include "persistence/cluster_store.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <chrono>
#include <map>
#include <spdlog/spdlog.h>
#include <unordered_set>

namespace rsv {

namespace {

using steady = std::chrono::steady_clock;

/// Partitions with the generation each had when a step began: a step whose
/// partition changed hands meanwhile (a later generation) is dropped.
struct claim {
  std::vector<uint32_t> partitions;
  std::vector<uint64_t> generations;
  steady::time_point started{};
};

struct assign_msg {
  std::vector<uint32_t> partitions;
};
struct revoke_msg {
  std::vector<uint32_t> partitions;
  std::shared_ptr<std::promise<void>> done; // may be null
};
struct fenced_msg {
  uint32_t partition = 0;
};
struct lost_msg {
  std::vector<uint32_t> partitions;
};
struct bumped_msg {
  claim what;
  caf::expected<std::map<uint32_t, uint64_t>> epochs;
};
struct loaded_msg {
  claim what;
  std::map<uint32_t, uint64_t> epochs;
  caf::expected<recovered_state> state;
};
struct serving_msg {
  claim what;
  std::map<uint32_t, uint64_t> epochs;
  std::size_t events = 0;
};
struct retry_bump_msg {
  claim what;
};
struct retry_load_msg {
  claim what;
  std::map<uint32_t, uint64_t> epochs;
};
struct refresh_msg {
  std::function<void()> then; // may be empty
};
struct owners_msg {
  caf::expected<std::vector<partition_owner>> owners;
};

using refresh_tick_atom = caf::atom_constant<caf::atom("c_refresh")>;

struct coordinator_state {
  std::vector<uint64_t> generation; // per partition, raised on every change
  bool refreshing = false;
  std::vector<std::function<void()>> after_refresh;
  static inline const char* name = "cluster_coordinator";
};

using coordinator_self = caf::stateful_actor<coordinator_state>;

std::string list(const std::vector<uint32_t>& partitions) {
  std::string out;
  for (auto p : partitions)
    out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

} // namespace

} // namespace rsv

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::assign_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::revoke_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::fenced_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::lost_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::bumped_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::loaded_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::serving_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::retry_bump_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::retry_load_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::refresh_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::owners_msg)

namespace rsv {

namespace {

caf::behavior coordinator(coordinator_self* self, runtime* rt,
                          std::shared_ptr<ownership> owners,
                          std::shared_ptr<cluster_store> db,
                          coordinator_config config) {
  auto count = owners->partitions();
  self->state.generation.assign(count, 0);
  auto me = caf::actor_cast<caf::actor>(self);
  auto registry = rt->registry();

  // The partitions of `c` that are still where the step left them.
  auto current = [self](const claim& c) {
    claim out;
    out.started = c.started;
    for (std::size_t i = 0; i < c.partitions.size(); ++i)
      if (self->state.generation[c.partitions[i]] == c.generations[i]) {
        out.partitions.push_back(c.partitions[i]);
        out.generations.push_back(c.generations[i]);
      }
    return out;
  };
  auto bump = [me, db, owners](claim c) {
    auto partitions = c.partitions;
    db->bump(std::move(partitions), owners->self(),
             [me, c = std::move(c)](
                 caf::expected<std::map<uint32_t, uint64_t>> epochs) mutable {
               caf::anon_send(me, bumped_msg{std::move(c), std::move(epochs)});
             });
  };
  auto load = [me, db, count](claim c, std::map<uint32_t, uint64_t> epochs) {
    auto partitions = c.partitions;
    db->load_partitions(std::move(partitions), count,
                        [me, c = std::move(c), epochs = std::move(epochs)](
                            caf::expected<recovered_state> state) mutable {
                          caf::anon_send(me, loaded_msg{std::move(c),
                                                        std::move(epochs),
                                                        std::move(state)});
                        });
  };
  // Stops serving: marks the partitions remote and drops their events.
  auto give_up = [self, owners, registry,
                  count](const std::vector<uint32_t>& partitions,
                         std::shared_ptr<std::promise<void>> done) {
    for (auto p : partitions) {
      ++self->state.generation[p];
      auto before = owners->get(p);
      owners->set_remote(p, before.epoch, std::string{});
    }
    self->send(registry,
               drop_partitions_request{
                   partitions, count,
                   reply_fn<std::size_t>{[done, partitions](
                                             caf::expected<std::size_t> n) {
                     if (n)
                       spdlog::info("cluster: partitions {} no longer served "
                                    "here ({} events dropped)",
                                    list(partitions), *n);
                     if (done) done->set_value();
                   }}});
  };
  auto read_owners = [self, me, db] {
    if (self->state.refreshing) return;
    self->state.refreshing = true;
    db->owners([me](caf::expected<std::vector<partition_owner>> rows) {
      caf::anon_send(me, owners_msg{std::move(rows)});
    });
  };

  self->send(self, refresh_tick_atom::value);
  return {
      [=](assign_msg& msg) {
        claim c;
        c.started = steady::now();
        // Partitions still served from before (kept through a lost
        // assignment) are loaded afresh under the new epoch.
        std::vector<uint32_t> reloaded;
        for (auto p : msg.partitions)
          if (p < count && owners->get(p).state != partition_state::remote)
            reloaded.push_back(p);
        if (!reloaded.empty())
          self->send(registry, drop_partitions_request{
                                   reloaded, count, reply_fn<std::size_t>{}});
        for (auto p : msg.partitions) {
          if (p >= count) continue;
          auto generation = ++self->state.generation[p];
          owners->set_local(p, partition_state::loading, 0);
          c.partitions.push_back(p);
          c.generations.push_back(generation);
        }
        if (c.partitions.empty()) return;
        spdlog::info("cluster: assigned partitions {}: raising their epochs",
                     list(c.partitions));
        bump(std::move(c));
      },
      [=](bumped_msg& msg) {
        auto c = current(msg.what);
        if (c.partitions.empty()) return;
        if (!msg.epochs) {
          spdlog::warn("cluster: raising the epochs of partitions {} failed, "
                       "again in {} ms: {}",
                       list(c.partitions), config.retry_ms,
                       describe(msg.epochs.error()));
          self->delayed_send(self, std::chrono::milliseconds(config.retry_ms),
                             retry_bump_msg{std::move(c)});
          return;
        }
        for (auto p : c.partitions)
          owners->set_local(p, partition_state::loading, (*msg.epochs)[p]);
        load(std::move(c), std::move(*msg.epochs));
      },
      [=](retry_bump_msg& msg) {
        auto c = current(msg.what);
        if (!c.partitions.empty()) bump(std::move(c));
      },
      [=](loaded_msg& msg) {
        auto c = current(msg.what);
        if (c.partitions.empty()) return;
        if (!msg.state) {
          spdlog::warn("cluster: loading partitions {} failed, again in {} "
                       "ms: {}",
                       list(c.partitions), config.retry_ms,
                       describe(msg.state.error()));
          self->delayed_send(self, std::chrono::milliseconds(config.retry_ms),
                             retry_load_msg{std::move(c), msg.epochs});
          return;
        }
        // Only the events of partitions still being taken, each section
        // laid out under its partition's new epoch: every change it makes
        // carries that fence.
        std::unordered_set<uint32_t> wanted(c.partitions.begin(),
                                            c.partitions.end());
        load_events_request request;
        for (auto& event : msg.state->events) {
          auto p = partition_of(event.def.id, count);
          if (!wanted.count(p)) continue;
          write_fence fence{p, msg.epochs[p]};
          event.layouts.clear();
          for (std::size_t i = 0; i < event.def.sections.size(); ++i)
            event.layouts.push_back(
                section_layout::make(event.def.id, event.def.sections[i],
                                     event.section_nos[i], fence));
          for (auto no : event.section_nos)
            if (auto holds = msg.state->holds.find(no);
                holds != msg.state->holds.end())
              request.holds.emplace(no, std::move(holds->second));
          request.events.push_back(std::move(event));
        }
        if (config.learn_layouts) config.learn_layouts(request.events);
        // The customers' seats in these events, for the limits, before the
        // events take requests.
        auto seats = seats_by_event_and_customer(request.events, request.holds);
        for (auto& [event_id, by_customer] : seats) {
          std::unordered_map<const caf::actor*, event_seats> per_shard;
          for (auto& [customer, n] : by_customer) {
            auto& out = per_shard[&rt->shard_for(customer)];
            out.event_id = event_id;
            out.seats_by_customer.emplace(customer, n);
          }
          for (auto& [shard, message] : per_shard)
            self->send(*shard, std::move(message));
        }
        auto events = request.events.size();
        request.reply =
            reply_fn<std::size_t>{[me, c, epochs = msg.epochs, events](
                                      caf::expected<std::size_t> n) mutable {
              caf::anon_send(me, serving_msg{std::move(c), std::move(epochs),
                                             n ? *n : events});
            }};
        self->send(registry, std::move(request));
      },
      [=](retry_load_msg& msg) {
        auto c = current(msg.what);
        if (!c.partitions.empty()) load(std::move(c), std::move(msg.epochs));
      },
      [=](serving_msg& msg) {
        auto c = current(msg.what);
        for (auto p : c.partitions)
          owners->set_local(p, partition_state::local, msg.epochs[p]);
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      steady::now() - msg.what.started)
                      .count();
        // A partition revoked after its events went to the registry was
        // dropped there by the drop request that followed them.
        if (!c.partitions.empty())
          spdlog::info("cluster: serving partitions {} ({} events) {} ms after "
                       "their assignment",
                       list(c.partitions), msg.events, ms);
      },
      [=](revoke_msg& msg) {
        std::vector<uint32_t> partitions;
        for (auto p : msg.partitions)
          if (p < count) partitions.push_back(p);
        spdlog::info("cluster: partitions {} revoked", list(partitions));
        give_up(partitions, msg.done);
      },
      [=](const lost_msg& msg) {
        // Lost, not revoked: the group may have given them to another node
        // (this one was frozen, or cut off from Kafka). Serving on is safe:
        // a node that takes them raises their epochs, which fences this
        // node's next write and shows in the next reading of the owners.
        // So an outage of Kafka alone stops nothing.
        spdlog::warn("cluster: assignment of partitions {} lost; served on "
                     "under their epochs until another node takes them",
                     list(msg.partitions));
        read_owners();
      },
      [=](const fenced_msg& msg) {
        if (msg.partition >= count ||
            owners->get(msg.partition).state == partition_state::remote)
          return;
        spdlog::warn("cluster: a write of partition {} was fenced: another "
                     "node raised its epoch; it is no longer served here",
                     msg.partition);
        give_up({msg.partition}, nullptr);
        read_owners();
      },
      [=](refresh_msg& msg) {
        if (msg.then) self->state.after_refresh.push_back(std::move(msg.then));
        read_owners();
      },
      [=](refresh_tick_atom) {
        read_owners();
        self->delayed_send(
            self, std::chrono::milliseconds(config.refresh_interval_ms),
            refresh_tick_atom::value);
      },
      [=](owners_msg& msg) {
        self->state.refreshing = false;
        if (msg.owners) {
          std::vector<partition_info> recorded(count);
          std::vector<uint32_t> superseded;
          for (const auto& row : *msg.owners) {
            if (row.partition >= count) continue;
            recorded[row.partition] = {partition_state::remote, row.epoch,
                                       row.owner};
            // Another node raised the epoch since this one took the
            // partition: it is that node's now.
            auto mine = owners->get(row.partition);
            if (mine.state == partition_state::local && row.epoch > mine.epoch)
              superseded.push_back(row.partition);
          }
          if (!superseded.empty()) {
            spdlog::warn("cluster: partitions {} were taken over by other "
                         "nodes (higher epochs in PostgreSQL)",
                         list(superseded));
            give_up(superseded, nullptr);
          }
          owners->learn_owners(recorded);
        }
        for (auto& then : std::exchange(self->state.after_refresh, {}))
          then();
      },
  };
}

} // namespace

cluster_coordinator::cluster_coordinator(caf::actor_system& system, runtime& rt,
                                         std::shared_ptr<ownership> owners,
                                         std::shared_ptr<cluster_store> db,
                                         coordinator_config config)
    : owners_(owners) {
  actor_ = system.spawn(coordinator, &rt, std::move(owners), std::move(db),
                        std::move(config));
}

cluster_coordinator::~cluster_coordinator() {
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
}

void cluster_coordinator::assigned(std::vector<uint32_t> partitions) {
  caf::anon_send(actor_, assign_msg{std::move(partitions)});
}

bool cluster_coordinator::revoked(std::vector<uint32_t> partitions,
                                  millis wait_ms) {
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  caf::anon_send(actor_, revoke_msg{std::move(partitions), std::move(done)});
  return future.wait_for(std::chrono::milliseconds(wait_ms)) ==
         std::future_status::ready;
}

void cluster_coordinator::lost(std::vector<uint32_t> partitions) {
  caf::anon_send(actor_, lost_msg{std::move(partitions)});
}

void cluster_coordinator::fenced(uint32_t partition) {
  caf::anon_send(actor_, fenced_msg{partition});
}

void cluster_coordinator::refresh(std::function<void()> then) {
  caf::anon_send(actor_, refresh_msg{std::move(then)});
}

} // namespace rsv
