#include "messaging/read_model.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <set>
#include <spdlog/spdlog.h>
#include <thread>
#include <unordered_map>

namespace rsv::messaging {

namespace {

// A batch of changes to sections of one event (their keys share a hash
// tag). KEYS are seats, counts of each section in turn; ARGV holds, per
// section, its number of changes and then per change its new status, its
// number of seats and their indexes. BITFIELD SET answers the old values, so
// the counts move by what the bits were and always agree with the bitmap.
// Answers the (1-based) sections that have no counts yet (new, or Redis lost
// them): their changes are skipped and they must be published whole.
constexpr const char* apply_script = R"lua(
local missing = {}
local names = {'free', 'held', 'booked'}
local a = 1
for s = 1, #KEYS / 2 do
  local seats, counts = KEYS[2 * s - 1], KEYS[2 * s]
  local changes = tonumber(ARGV[a])
  a = a + 1
  local present = redis.call('EXISTS', counts) == 1
  if not present then missing[#missing + 1] = s end
  local delta = {0, 0, 0}
  for c = 1, changes do
    local new = tonumber(ARGV[a])
    local n = tonumber(ARGV[a + 1])
    a = a + 2
    if present and n > 0 then
      local ops = {}
      for i = a, a + n - 1 do
        ops[#ops + 1] = 'SET'
        ops[#ops + 1] = 'u2'
        ops[#ops + 1] = '#' .. ARGV[i]
        ops[#ops + 1] = new
      end
      local olds = redis.call('BITFIELD', seats, unpack(ops))
      for _, old in ipairs(olds) do
        if old ~= new then
          delta[old + 1] = delta[old + 1] - 1
          delta[new + 1] = delta[new + 1] + 1
        end
      end
    end
    a = a + n
  end
  for k = 1, 3 do
    if delta[k] ~= 0 then redis.call('HINCRBY', counts, names[k], delta[k]) end
  end
end
return missing
)lua";

// A whole section: the bitmap and its counts together.
constexpr const char* snapshot_script = R"lua(
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'free', ARGV[2], 'held', ARGV[3], 'booked', ARGV[4])
return 1
)lua";

// Counts of several sections of one event (one hash tag, one slot).
constexpr const char* counts_script = R"lua(
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], 'free', 'held', 'booked')
end
return out
)lua";

// One section's bitmap and counts.
constexpr const char* seats_script = R"lua(
local bits = redis.call('GET', KEYS[1])
local counts = redis.call('HMGET', KEYS[2], 'free', 'held', 'booked')
return {bits, counts[1], counts[2], counts[3]}
)lua";

seat_status status_after(change_kind kind) {
  switch (kind) {
  case change_kind::hold_created:
    return seat_status::held;
  case change_kind::booking_confirmed:
    return seat_status::booked;
  case change_kind::hold_released:
  case change_kind::hold_expired:
  case change_kind::booking_cancelled:
    break;
  }
  return seat_status::free;
}

/// BITFIELD's u2 at #i: bits 2i and 2i+1 counted from the most significant
/// bit of byte 0.
std::string encode(const std::vector<seat_status>& statuses, seat_counts& c) {
  std::string bytes((statuses.size() + 3) / 4, '\0');
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    auto value = static_cast<unsigned>(statuses[i]);
    bytes[i / 4] = static_cast<char>(static_cast<unsigned char>(bytes[i / 4]) |
                                     (value << (6 - 2 * (i % 4))));
    if (statuses[i] == seat_status::free)
      ++c.free;
    else if (statuses[i] == seat_status::held)
      ++c.held;
    else
      ++c.booked;
  }
  return bytes;
}

std::optional<uint32_t> count_of(const redis_reply& reply) {
  if (reply.kind != redis_reply::type::string) return std::nullopt;
  try {
    auto value = std::stoll(reply.text);
    if (value < 0) return std::nullopt;
    return static_cast<uint32_t>(value);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<seat_counts> counts_of(const redis_reply* elements) {
  auto free = count_of(elements[0]);
  auto held = count_of(elements[1]);
  auto booked = count_of(elements[2]);
  if (!free || !held || !booked) return std::nullopt;
  return seat_counts{*free, *held, *booked};
}

caf::error no_copy() {
  return make_error(errc::unavailable,
                    std::string{"the read model has no copy of this section"});
}

} // namespace

struct redis_read_model::impl
    : std::enable_shared_from_this<redis_read_model::impl> {
  impl(std::shared_ptr<redis_client> client, std::shared_ptr<change_sink> n,
       read_model_config cfg)
      : redis(std::move(client)), next(std::move(n)), config(std::move(cfg)) {
    apply = redis->add_script(apply_script);
    snapshot = redis->add_script(snapshot_script);
    counts = redis->add_script(counts_script);
    seats = redis->add_script(seats_script);
    if (!config.registry) return;
    staleness = &prometheus::BuildHistogram()
                     .Name("rsv_read_model_staleness_seconds")
                     .Help("From a change's acknowledgement by the store to "
                           "its publication in the Redis read model")
                     .Register(*config.registry)
                     .Add({}, prometheus::Histogram::BucketBoundaries{
                                  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05, 0.1, 0.25, 0.5, 1, 2.5});
    auto& published = prometheus::BuildCounter()
                          .Name("rsv_read_model_publications_total")
                          .Help("Publications to the Redis read model, by "
                                "kind: change, section (whole), or lost "
                                "(Redis could not be asked)")
                          .Register(*config.registry);
    changes_published = &published.Add({{"kind", "change"}});
    sections_published = &published.Add({{"kind", "section"}});
    lost = &published.Add({{"kind", "lost"}});
    restarts = &actor_restarts(*config.registry, "read_model");
    crashes_injected = &chaos_faults(*config.registry, "read_model_crash");
  }

  /// A committed change waiting to be published.
  struct pending_change {
    std::string event_id;
    std::string section_id;
    uint32_t section_no = 0;
    unsigned status = 0;
    std::vector<uint32_t> seats;
    std::chrono::steady_clock::time_point acknowledged;
  };

  void want_section(uint32_t section_no) {
    std::lock_guard lock{mutex};
    wanted.insert(section_no);
    wake.notify_one();
  }

  /// Every write of an event goes through one connection, in the order it
  /// was made: a change published after a whole section (or after another
  /// change to the same seats) must land after it.
  static uint64_t shard_of(const std::string& event_id) {
    return std::hash<std::string>{}(event_id);
  }

  void add(pending_change change) {
    std::lock_guard lock{mutex};
    if (pending.size() >= limits::read_model_pending_max) {
      // Redis is far behind: drop the change and publish its section whole
      // later, which includes it.
      if (lost) lost->Increment();
      wanted.insert(change.section_no);
      return;
    }
    pending.push_back(std::move(change));
    if (pending.size() == 1) wake.notify_one();
  }

  /// Publishes `batch` (in acknowledgement order) as one script call per
  /// event and at most limits::read_model_batch_max changes.
  void flush(std::vector<pending_change>& batch) {
    std::vector<std::string> events; // in order of their first change
    std::unordered_map<std::string, std::vector<const pending_change*>>
        of_event;
    for (const auto& change : batch) {
      auto& changes = of_event[change.event_id];
      if (changes.empty()) events.push_back(change.event_id);
      changes.push_back(&change);
    }
    for (const auto& event : events) {
      const auto& changes = of_event[event];
      for (std::size_t from = 0; from < changes.size();
           from += limits::read_model_batch_max)
        send(event, changes, from,
             std::min(changes.size(), from + limits::read_model_batch_max));
    }
  }

  void send(const std::string& event,
            const std::vector<const pending_change*>& changes, std::size_t from,
            std::size_t to) {
    // The sections in order of their first change; each section's changes
    // in their order.
    std::vector<const pending_change*> firsts;
    std::vector<std::vector<const pending_change*>> per_section;
    std::unordered_map<uint32_t, std::size_t> index_of; // section_no -> s
    for (auto i = from; i < to; ++i) {
      const auto* change = changes[i];
      auto [it, fresh] = index_of.emplace(change->section_no, firsts.size());
      if (fresh) {
        firsts.push_back(change);
        per_section.emplace_back();
      }
      per_section[it->second].push_back(change);
    }
    std::vector<std::string> keys;
    std::vector<std::string> args;
    std::vector<uint32_t> section_nos;
    std::vector<std::chrono::steady_clock::time_point> acknowledged;
    for (std::size_t s = 0; s < firsts.size(); ++s) {
      keys.push_back(key(event, firsts[s]->section_id, "seats"));
      keys.push_back(key(event, firsts[s]->section_id, "counts"));
      section_nos.push_back(firsts[s]->section_no);
      args.push_back(std::to_string(per_section[s].size()));
      for (const auto* change : per_section[s]) {
        args.push_back(std::to_string(change->status));
        args.push_back(std::to_string(change->seats.size()));
        for (auto index : change->seats)
          args.push_back(std::to_string(index));
        acknowledged.push_back(change->acknowledged);
      }
    }
    redis->eval(
        apply, std::move(keys), std::move(args),
        [self = shared_from_this(), section_nos = std::move(section_nos),
         acknowledged =
             std::move(acknowledged)](caf::expected<redis_reply> reply) {
          if (!reply || reply->kind != redis_reply::type::array) {
            // Missed: the next reconnection publishes every section whole.
            if (self->lost)
              self->lost->Increment(static_cast<double>(acknowledged.size()));
            return;
          }
          for (const auto& missing : reply->elements)
            if (missing.kind == redis_reply::type::integer &&
                missing.integer >= 1 &&
                static_cast<std::size_t>(missing.integer) <= section_nos.size())
              self->want_section(
                  section_nos[static_cast<std::size_t>(missing.integer - 1)]);
          auto now = std::chrono::steady_clock::now();
          if (self->changes_published)
            self->changes_published->Increment(
                static_cast<double>(acknowledged.size()));
          if (self->staleness)
            for (auto at : acknowledged)
              self->staleness->Observe(
                  std::chrono::duration<double>(now - at).count());
        },
        shard_of(event));
  }

  /// The thread: its loop, restarted should it throw (core/supervised.hpp).
  /// Changes that were being published may be lost then, so every section
  /// is published whole once it runs again.
  void run() {
    run_supervised([this] { loop(); },
                   [this](const char* what) {
                     spdlog::error(
                         "read model: its thread died: {}; it restarts and "
                         "publishes every section whole",
                         what);
                     republish_all = true;
                   },
                   [this](std::chrono::milliseconds delay) {
                     std::unique_lock lock{mutex};
                     wake.wait_for(lock, delay, [this] { return stopping; });
                   },
                   restarts);
  }

  void loop() {
    uint64_t seen_connections = 0;
    auto next_check = std::chrono::steady_clock::now();
    std::unique_lock lock{mutex};
    while (!stopping) {
      wake.wait_until(lock, next_check,
                      [this] { return stopping || !pending.empty(); });
      if (stopping) break;
      crash_if_due(config.crashes.get(), crashes_injected, "read model");
      if (!pending.empty()) {
        // Let the changes of a few milliseconds gather into one script
        // call per event: one call per change held Redis's CPU (and the
        // staleness) hostage at 20,000 changes a second.
        lock.unlock();
        std::this_thread::sleep_for(limits::read_model_gather);
        lock.lock();
        std::vector<pending_change> batch;
        batch.swap(pending);
        lock.unlock();
        flush(batch);
        lock.lock();
        if (std::chrono::steady_clock::now() < next_check) continue;
      }
      next_check =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
      auto now_connections = redis->connections();
      bool reconnected =
          (now_connections != seen_connections || republish_all) &&
          redis->health() == service_state::ok;
      std::set<uint32_t> sections;
      sections.swap(wanted);
      lock.unlock();
      if (reconnected) {
        // A new connection may be a new, empty Redis: publish everything.
        seen_connections = now_connections;
        republish_all = false;
        if (every_section) every_section();
      } else if (one_section) {
        for (auto no : sections)
          one_section(no);
      }
      lock.lock();
    }
  }

  std::shared_ptr<redis_client> redis;
  std::shared_ptr<change_sink> next;
  read_model_config config;
  std::size_t apply = 0, snapshot = 0, counts = 0, seats = 0;
  prometheus::Histogram* staleness = nullptr;
  prometheus::Counter* changes_published = nullptr;
  prometheus::Counter* sections_published = nullptr;
  prometheus::Counter* lost = nullptr;
  prometheus::Counter* restarts = nullptr;
  prometheus::Counter* crashes_injected = nullptr;
  bool republish_all = false; // its thread only
  snapshot_source one_section;
  std::function<void()> every_section;

  std::mutex mutex;
  std::condition_variable wake;
  std::set<uint32_t> wanted;           // guarded by mutex
  std::vector<pending_change> pending; // guarded by mutex
  bool stopping = false;               // guarded by mutex
  std::thread thread;
};

redis_read_model::redis_read_model(std::shared_ptr<redis_client> redis,
                                   std::shared_ptr<change_sink> next,
                                   read_model_config config)
    : impl_(std::make_shared<impl>(std::move(redis), std::move(next),
                                   std::move(config))) {}

redis_read_model::~redis_read_model() {
  stop();
}

std::string redis_read_model::key(const std::string& event_id,
                                  const std::string& section_id,
                                  const char* part) {
  return "rsv:rm:{" + event_id + "}:" + section_id + ":" + part;
}

void redis_read_model::set_snapshot_source(
    snapshot_source one, std::function<void()> every_section) {
  impl_->one_section = std::move(one);
  impl_->every_section = std::move(every_section);
}

void redis_read_model::publish(const seat_change& change) {
  if (impl_->next) impl_->next->publish(change);
  impl_->add({change.event_id, change.section_id, change.section_no,
              static_cast<unsigned>(status_after(change.kind)),
              change.seat_indexes, std::chrono::steady_clock::now()});
}

void redis_read_model::publish_section(
    const std::string& event_id, const std::string& section_id,
    const std::vector<seat_status>& statuses) {
  seat_counts c;
  auto bytes = encode(statuses, c);
  impl_->redis->eval(
      impl_->snapshot,
      {key(event_id, section_id, "seats"), key(event_id, section_id, "counts")},
      {std::move(bytes), std::to_string(c.free), std::to_string(c.held),
       std::to_string(c.booked)},
      [self = impl_](caf::expected<redis_reply> reply) {
        if (reply && reply->kind == redis_reply::type::integer) {
          if (self->sections_published) self->sections_published->Increment();
        } else if (self->lost) {
          self->lost->Increment();
        }
      },
      impl::shard_of(event_id));
}

void redis_read_model::read_counts(
    const std::string& event_id, const std::vector<std::string>& section_ids,
    std::function<void(caf::expected<std::vector<seat_counts>>)> done) {
  std::vector<std::string> keys;
  keys.reserve(section_ids.size());
  for (const auto& id : section_ids)
    keys.push_back(key(event_id, id, "counts"));
  auto expected = section_ids.size();
  impl_->redis->eval(
      impl_->counts, std::move(keys), {},
      [expected, done = std::move(done)](caf::expected<redis_reply> reply) {
        if (!reply) {
          done(reply.error());
          return;
        }
        if (reply->kind != redis_reply::type::array ||
            reply->elements.size() != expected) {
          done(no_copy());
          return;
        }
        std::vector<seat_counts> out;
        out.reserve(expected);
        for (const auto& section : reply->elements) {
          if (section.kind != redis_reply::type::array ||
              section.elements.size() != 3) {
            done(no_copy());
            return;
          }
          auto c = counts_of(section.elements.data());
          if (!c) {
            done(no_copy());
            return;
          }
          out.push_back(*c);
        }
        done(std::move(out));
      });
}

void redis_read_model::read_seats(
    const std::string& event_id, const std::string& section_id,
    uint32_t seat_count,
    std::function<void(caf::expected<section_availability>)> done) {
  impl_->redis->eval(
      impl_->seats,
      {key(event_id, section_id, "seats"), key(event_id, section_id, "counts")},
      {},
      [seat_count, done = std::move(done)](caf::expected<redis_reply> reply) {
        if (!reply) {
          done(reply.error());
          return;
        }
        if (reply->kind != redis_reply::type::array ||
            reply->elements.size() != 4 ||
            reply->elements[0].kind != redis_reply::type::string) {
          done(no_copy());
          return;
        }
        auto c = counts_of(reply->elements.data() + 1);
        if (!c || c->free + c->held + c->booked != seat_count) {
          done(no_copy());
          return;
        }
        const auto& bytes = reply->elements[0].text;
        section_availability out;
        out.counts = *c;
        out.statuses.resize(seat_count, seat_status::free);
        for (uint32_t i = 0; i < seat_count && i / 4 < bytes.size(); ++i) {
          auto value =
              (static_cast<unsigned char>(bytes[i / 4]) >> (6 - 2 * (i % 4))) &
              3u;
          if (value > 2) {
            done(no_copy());
            return;
          }
          out.statuses[i] = static_cast<seat_status>(value);
        }
        done(std::move(out));
      });
}

void redis_read_model::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([impl = impl_] { impl->run(); });
}

void redis_read_model::stop() {
  stop_worker(impl_->mutex, impl_->wake, impl_->stopping, impl_->thread);
}

} // namespace rsv::messaging
