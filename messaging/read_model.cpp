#include "messaging/read_model.hpp"

#include "core/errc.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <set>
#include <spdlog/spdlog.h>
#include <thread>

namespace rsv {

namespace {

// One change: the seats' 2-bit statuses are set (BITFIELD SET answers the
// old value) and the counts move by the difference. -1 when the section has
// no counts yet (new, or Redis lost it): then it must be published whole.
constexpr const char* apply_script = R"lua(
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local new = tonumber(ARGV[1])
local delta = {0, 0, 0}
for i = 2, #ARGV do
  local old = redis.call('BITFIELD', KEYS[1], 'SET', 'u2', '#' .. ARGV[i], new)[1]
  if old ~= new then
    delta[old + 1] = delta[old + 1] - 1
    delta[new + 1] = delta[new + 1] + 1
  end
end
local names = {'free', 'held', 'booked'}
for s = 1, 3 do
  if delta[s] ~= 0 then redis.call('HINCRBY', KEYS[2], names[s], delta[s]) end
end
return 1
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

struct redis_read_model::impl {
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
  }

  void want_section(uint32_t section_no) {
    std::lock_guard lock{mutex};
    wanted.insert(section_no);
    wake.notify_one();
  }

  void run(const std::shared_ptr<impl>& self) {
    uint64_t seen_connections = 0;
    std::unique_lock lock{mutex};
    while (!stopping) {
      wake.wait_for(lock, std::chrono::milliseconds(100));
      if (stopping) break;
      auto now_connections = redis->connections();
      bool reconnected = now_connections != seen_connections &&
                         redis->health() == service_state::ok;
      std::set<uint32_t> sections;
      sections.swap(wanted);
      lock.unlock();
      if (reconnected) {
        // A new connection may be a new, empty Redis: publish everything.
        seen_connections = now_connections;
        if (every_section) every_section();
      } else if (one_section) {
        for (auto no : sections)
          one_section(no);
      }
      (void)self;
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
  snapshot_source one_section;
  std::function<void()> every_section;

  std::mutex mutex;
  std::condition_variable wake;
  std::set<uint32_t> wanted; // guarded by mutex
  bool stopping = false;     // guarded by mutex
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
  std::vector<std::string> args;
  args.reserve(change.seat_indexes.size() + 1);
  args.push_back(
      std::to_string(static_cast<unsigned>(status_after(change.kind))));
  for (auto index : change.seat_indexes)
    args.push_back(std::to_string(index));
  auto started = std::chrono::steady_clock::now();
  impl_->redis->eval(
      impl_->apply,
      {key(change.event_id, change.section_id, "seats"),
       key(change.event_id, change.section_id, "counts")},
      std::move(args),
      [self = impl_, started,
       section_no = change.section_no](caf::expected<redis_reply> reply) {
        if (!reply || reply->kind != redis_reply::type::integer) {
          // Missed: the next reconnection publishes every section whole.
          if (self->lost) self->lost->Increment();
          return;
        }
        if (reply->integer < 0) {
          self->want_section(section_no);
          return;
        }
        if (self->changes_published) self->changes_published->Increment();
        if (self->staleness)
          self->staleness->Observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                            started)
                  .count());
      });
}

void redis_read_model::publish_section(
    uint32_t section_no, const std::string& event_id,
    const std::string& section_id, const std::vector<seat_status>& statuses) {
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
      section_no);
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
  impl_->thread = std::thread([impl = impl_] { impl->run(impl); });
}

void redis_read_model::stop() {
  {
    std::lock_guard lock{impl_->mutex};
    impl_->stopping = true;
    impl_->wake.notify_all();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

} // namespace rsv
