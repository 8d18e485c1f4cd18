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

namespace rsv::actors {

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
  caf::expected<persistence::recovered_state> state;
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
  caf::expected<std::vector<persistence::partition_owner>> owners;
};

using refresh_tick_atom = caf::atom_constant<caf::atom("c_refresh")>;

std::string list(const std::vector<uint32_t>& partitions) {
  std::string out;
  for (auto p : partitions)
    out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

} // namespace

} // namespace rsv::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::assign_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::revoke_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::fenced_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::lost_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::bumped_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::loaded_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::serving_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::retry_bump_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::retry_load_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::refresh_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::owners_msg)

namespace rsv::actors {

namespace {

/// The actor behind cluster_coordinator (cluster_coordinator.hpp): the one
/// that changes this node's ownership table. A takeover is a chain of steps
/// (raise the epochs, load the partitions, hand their events to the
/// registry), each answered by a message to itself; a step whose partitions
/// changed hands meanwhile is dropped (claim, generation).
class coordinator_actor : public caf::event_based_actor {
public:
  coordinator_actor(caf::actor_config& cfg, runtime* rt,
                    std::shared_ptr<ownership> owners,
                    std::shared_ptr<persistence::cluster_store> db,
                    coordinator_config config)
      : caf::event_based_actor(cfg), rt_(rt), owners_(std::move(owners)),
        db_(std::move(db)), config_(std::move(config)),
        count_(owners_->partitions()), generation_(count_, 0) {}

  const char* name() const override { return "cluster_coordinator"; }

  caf::behavior make_behavior() override {
    send(this, refresh_tick_atom::value);
    return {
        [this](assign_msg& msg) { assign(msg.partitions); },
        [this](bumped_msg& msg) { bumped(msg); },
        [this](retry_bump_msg& msg) {
          auto c = current(msg.what);
          if (!c.partitions.empty()) bump(std::move(c));
        },
        [this](loaded_msg& msg) { loaded(msg); },
        [this](retry_load_msg& msg) {
          auto c = current(msg.what);
          if (!c.partitions.empty()) load(std::move(c), std::move(msg.epochs));
        },
        [this](serving_msg& msg) { serving(msg); },
        [this](revoke_msg& msg) {
          std::vector<uint32_t> partitions;
          for (auto p : msg.partitions)
            if (p < count_) partitions.push_back(p);
          spdlog::info("cluster: partitions {} revoked", list(partitions));
          give_up(partitions, msg.done);
        },
        [this](const lost_msg& msg) {
          // Lost, not revoked: the group may have given them to another
          // node (this one was frozen, or cut off from Kafka). Serving on is
          // safe: a node that takes them raises their epochs, which fences
          // this node's next write and shows in the next reading of the
          // owners. So an outage of Kafka alone stops nothing.
          spdlog::warn("cluster: assignment of partitions {} lost; served on "
                       "under their epochs until another node takes them",
                       list(msg.partitions));
          read_owners();
        },
        [this](const fenced_msg& msg) { fenced(msg.partition); },
        [this](refresh_msg& msg) {
          if (msg.then) after_refresh_.push_back(std::move(msg.then));
          read_owners();
        },
        [this](refresh_tick_atom) {
          read_owners();
          delayed_send(this,
                       std::chrono::milliseconds(config_.refresh_interval_ms),
                       refresh_tick_atom::value);
        },
        [this](owners_msg& msg) { owners_read(msg); },
    };
  }

private:
  caf::actor me() { return caf::actor_cast<caf::actor>(this); }

  /// The partitions of `c` that are still where the step left them.
  claim current(const claim& c) const {
    claim out;
    out.started = c.started;
    for (std::size_t i = 0; i < c.partitions.size(); ++i)
      if (generation_[c.partitions[i]] == c.generations[i]) {
        out.partitions.push_back(c.partitions[i]);
        out.generations.push_back(c.generations[i]);
      }
    return out;
  }

  void assign(const std::vector<uint32_t>& assigned) {
    claim c;
    c.started = steady::now();
    // Partitions still served from before (kept through a lost assignment)
    // are loaded afresh under the new epoch.
    std::vector<uint32_t> reloaded;
    for (auto p : assigned)
      if (p < count_ && owners_->get(p).state != partition_state::remote)
        reloaded.push_back(p);
    if (!reloaded.empty())
      send(rt_->registry(),
           drop_partitions_request{reloaded, count_, reply_fn<std::size_t>{}});
    for (auto p : assigned) {
      if (p >= count_) continue;
      auto generation = ++generation_[p];
      owners_->set_local(p, partition_state::loading, 0);
      c.partitions.push_back(p);
      c.generations.push_back(generation);
    }
    if (c.partitions.empty()) return;
    spdlog::info("cluster: assigned partitions {}: raising their epochs",
                 list(c.partitions));
    bump(std::move(c));
  }

  void bump(claim c) {
    auto partitions = c.partitions;
    db_->bump(std::move(partitions), owners_->self(),
              [me = me(), c = std::move(c)](
                  caf::expected<std::map<uint32_t, uint64_t>> epochs) mutable {
                caf::anon_send(me, bumped_msg{std::move(c), std::move(epochs)});
              });
  }

  void bumped(bumped_msg& msg) {
    auto c = current(msg.what);
    if (c.partitions.empty()) return;
    if (!msg.epochs) {
      spdlog::warn("cluster: raising the epochs of partitions {} failed, "
                   "again in {} ms: {}",
                   list(c.partitions), config_.retry_ms,
                   describe(msg.epochs.error()));
      delayed_send(this, std::chrono::milliseconds(config_.retry_ms),
                   retry_bump_msg{std::move(c)});
      return;
    }
    for (auto p : c.partitions)
      owners_->set_local(p, partition_state::loading, (*msg.epochs)[p]);
    load(std::move(c), std::move(*msg.epochs));
  }

  void load(claim c, std::map<uint32_t, uint64_t> epochs) {
    auto partitions = c.partitions;
    db_->load_partitions(
        std::move(partitions), count_,
        [me = me(), c = std::move(c), epochs = std::move(epochs)](
            caf::expected<persistence::recovered_state> state) mutable {
          caf::anon_send(me, loaded_msg{std::move(c), std::move(epochs),
                                        std::move(state)});
        });
  }

  void loaded(loaded_msg& msg) {
    auto c = current(msg.what);
    if (c.partitions.empty()) return;
    if (!msg.state) {
      spdlog::warn("cluster: loading partitions {} failed, again in {} ms: {}",
                   list(c.partitions), config_.retry_ms,
                   describe(msg.state.error()));
      delayed_send(this, std::chrono::milliseconds(config_.retry_ms),
                   retry_load_msg{std::move(c), msg.epochs});
      return;
    }
    auto request = events_to_serve(c, msg.epochs, *msg.state);
    if (config_.learn_layouts) config_.learn_layouts(request.events);
    tell_shards(request);
    auto events = request.events.size();
    request.reply =
        reply_fn<std::size_t>{[me = me(), c, epochs = msg.epochs,
                               events](caf::expected<std::size_t> n) mutable {
          caf::anon_send(me, serving_msg{std::move(c), std::move(epochs),
                                         n ? *n : events});
        }};
    send(rt_->registry(), std::move(request));
  }

  /// Only the events of partitions still being taken, each section laid out
  /// under its partition's new epoch: every change it makes carries that
  /// fence.
  load_events_request events_to_serve(const claim& c,
                                      std::map<uint32_t, uint64_t>& epochs,
                                      persistence::recovered_state& state) {
    std::unordered_set<uint32_t> wanted(c.partitions.begin(),
                                        c.partitions.end());
    load_events_request request;
    for (auto& event : state.events) {
      auto p = partition_of(event.def.id, count_);
      if (!wanted.count(p)) continue;
      write_fence fence{p, epochs[p]};
      event.layouts.clear();
      for (std::size_t i = 0; i < event.def.sections.size(); ++i)
        event.layouts.push_back(section_layout::make(
            event.def.id, event.def.sections[i], event.section_nos[i], fence));
      for (auto no : event.section_nos)
        if (auto holds = state.holds.find(no); holds != state.holds.end())
          request.holds.emplace(no, std::move(holds->second));
      request.events.push_back(std::move(event));
    }
    return request;
  }

  /// The customers' seats in these events, for the limits, before the
  /// events take requests.
  void tell_shards(const load_events_request& request) {
    auto seats = seats_by_event_and_customer(request.events, request.holds);
    for (auto& [event_id, by_customer] : seats) {
      std::unordered_map<const caf::actor*, event_seats> per_shard;
      for (auto& [customer, n] : by_customer) {
        auto& out = per_shard[&rt_->shard_for(customer)];
        out.event_id = event_id;
        out.seats_by_customer.emplace(customer, n);
      }
      for (auto& [shard, message] : per_shard)
        send(*shard, std::move(message));
    }
  }

  void serving(serving_msg& msg) {
    auto c = current(msg.what);
    for (auto p : c.partitions)
      owners_->set_local(p, partition_state::local, msg.epochs[p]);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  steady::now() - msg.what.started)
                  .count();
    // A partition revoked after its events went to the registry was dropped
    // there by the drop request that followed them.
    if (!c.partitions.empty())
      spdlog::info("cluster: serving partitions {} ({} events) {} ms after "
                   "their assignment",
                   list(c.partitions), msg.events, ms);
  }

  void fenced(uint32_t partition) {
    if (partition >= count_ ||
        owners_->get(partition).state == partition_state::remote)
      return;
    spdlog::warn("cluster: a write of partition {} was fenced: another node "
                 "raised its epoch; it is no longer served here",
                 partition);
    give_up({partition}, nullptr);
    read_owners();
  }

  /// Stops serving: marks the partitions remote and drops their events.
  void give_up(const std::vector<uint32_t>& partitions,
               std::shared_ptr<std::promise<void>> given_up) {
    for (auto p : partitions) {
      ++generation_[p];
      auto before = owners_->get(p);
      owners_->set_remote(p, before.epoch, std::string{});
    }
    send(rt_->registry(),
         drop_partitions_request{
             partitions, count_,
             reply_fn<std::size_t>{
                 [given_up, partitions](caf::expected<std::size_t> n) {
                   if (n)
                     spdlog::info("cluster: partitions {} no longer served "
                                  "here ({} events dropped)",
                                  list(partitions), *n);
                   if (given_up) given_up->set_value();
                 }}});
  }

  void read_owners() {
    if (refreshing_) return;
    refreshing_ = true;
    db_->owners(
        [me = me()](
            caf::expected<std::vector<persistence::partition_owner>> rows) {
          caf::anon_send(me, owners_msg{std::move(rows)});
        });
  }

  void owners_read(owners_msg& msg) {
    refreshing_ = false;
    if (msg.owners) {
      std::vector<partition_info> recorded(count_);
      std::vector<uint32_t> superseded;
      for (const auto& row : *msg.owners) {
        if (row.partition >= count_) continue;
        recorded[row.partition] = {partition_state::remote, row.epoch,
                                   row.owner};
        // Another node raised the epoch since this one took the partition:
        // it is that node's now.
        auto mine = owners_->get(row.partition);
        if (mine.state == partition_state::local && row.epoch > mine.epoch)
          superseded.push_back(row.partition);
      }
      if (!superseded.empty()) {
        spdlog::warn("cluster: partitions {} were taken over by other nodes "
                     "(higher epochs in PostgreSQL)",
                     list(superseded));
        give_up(superseded, nullptr);
      }
      owners_->learn_owners(recorded);
    }
    for (auto& then : std::exchange(after_refresh_, {}))
      then();
  }

  runtime* const rt_;
  const std::shared_ptr<ownership> owners_;
  const std::shared_ptr<persistence::cluster_store> db_;
  const coordinator_config config_;
  const uint32_t count_;
  std::vector<uint64_t> generation_; // per partition, raised on every change
  bool refreshing_ = false;
  std::vector<std::function<void()>> after_refresh_;
};

} // namespace

cluster_coordinator::cluster_coordinator(
    caf::actor_system& system, runtime& rt, std::shared_ptr<ownership> owners,
    std::shared_ptr<persistence::cluster_store> db, coordinator_config config)
    : owners_(owners) {
  actor_ = system.spawn<coordinator_actor>(&rt, std::move(owners),
                                           std::move(db), std::move(config));
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

} // namespace rsv::actors
