#include "messaging/waiting_room.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <prometheus/counter.h>
#include <spdlog/spdlog.h>
#include <thread>

namespace rsv::messaging {

namespace {

// Keys of an event live long after its last join, then Redis drops them.
constexpr int64_t keys_keep_ms = 7LL * 24 * 3600 * 1000;

// Join (ARGV[3] == "1") or poll. Answers {0, 0} absent, {1, position}
// waiting, {2, admitted_at_ms} admitted. The join number comes from INCR in
// the same script, so join order and rank agree exactly; the newest joiner
// has the highest score, so its position is the queue's size.
constexpr const char* standing_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = redis.call('HGET', KEYS[3], ARGV[1])
if at then
  at = tonumber(at)
  if now < at + tonumber(ARGV[2]) then return {2, at} end
  if ARGV[3] ~= '1' then return {0, 0} end
  redis.call('HDEL', KEYS[3], ARGV[1])
end
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if rank then return {1, rank + 1} end
if ARGV[3] ~= '1' then return {0, 0} end
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], n, ARGV[1])
local keep = tonumber(ARGV[4])
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return {1, redis.call('ZCARD', KEYS[1])}
)lua";

// One admission tick for one event. Only the lease holder admits (a lease
// nobody holds is taken); a new holder starts counting from now, so a gap
// while nobody admitted is not made up in one burst. Answers {0, 0} when
// another node holds the lease, else {1, admitted}.
constexpr const char* admit_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return {0, 0} end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
local rate = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[4], 'last') or '')
local carry = tonumber(redis.call('HGET', KEYS[4], 'carry') or '') or 0
if not owner or not last or last > now then
  last = now
  carry = 0
end
local elapsed = now - last
if elapsed > 1000 then elapsed = 1000 end
local budget = carry + elapsed * rate / 1000
local n = math.floor(budget)
local count = 0
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  for i = 1, #popped, 2 do
    redis.call('HSET', KEYS[2], popped[i], now)
  end
  count = #popped / 2
end
redis.call('HSET', KEYS[4], 'last', now, 'carry', tostring(budget - n))
local keep = tonumber(ARGV[4])
redis.call('PEXPIRE', KEYS[4], keep)
if count > 0 then redis.call('PEXPIRE', KEYS[2], keep) end
return {1, count}
)lua";

bool two_integers(const redis_reply& reply) {
  return reply.kind == redis_reply::type::array && reply.elements.size() == 2 &&
         reply.elements[0].kind == redis_reply::type::integer &&
         reply.elements[1].kind == redis_reply::type::integer;
}

} // namespace

struct waiting_room::impl {
  impl(std::shared_ptr<redis_client> client, waiting_room_config cfg)
      : redis(std::move(client)), config(std::move(cfg)) {
    standing = redis->add_script(standing_script);
    admit = redis->add_script(admit_script);
    if (config.registry)
      admitted = &prometheus::BuildCounter()
                      .Name("rsv_waiting_room_admitted_total")
                      .Help("Customers this node's admission loop admitted")
                      .Register(*config.registry)
                      .Add({});
    if (config.registry) {
      restarts = &actor_restarts(*config.registry, "waiting_room");
      crashes_injected = &chaos_faults(*config.registry, "waiting_room_crash");
    }
  }

  void ask(const std::string& event_id, const std::string& customer_id,
           bool join, answer_fn done) {
    redis->eval(
        standing,
        {key(event_id, "q"), key(event_id, "seq"), key(event_id, "adm")},
        {customer_id, std::to_string(config.admission_ttl_ms), join ? "1" : "0",
         std::to_string(keys_keep_ms)},
        [done = std::move(done)](caf::expected<redis_reply> reply) {
          if (!reply) {
            done(reply.error());
            return;
          }
          if (!two_integers(*reply)) {
            spdlog::error("redis: the waiting-room script answered "
                          "{}",
                          reply->kind == redis_reply::type::error
                              ? reply->text
                              : std::string{"an unexpected reply"});
            done(make_error(errc::unavailable,
                            std::string{"Redis answered an error"}));
            return;
          }
          queue_standing out;
          auto what = reply->elements[0].integer;
          auto value = reply->elements[1].integer;
          if (what == 1) {
            out.what = queue_standing::kind::waiting;
            out.position = value;
          } else if (what == 2) {
            out.what = queue_standing::kind::admitted;
            out.admitted_at_ms = value;
          }
          done(out);
        });
  }

  void tick(const std::shared_ptr<impl>& self) {
    if (in_flight.load() > 0) return; // the last tick is still out
    auto events =
        config.events ? config.events() : std::vector<waiting_room_event>{};
    if (events.size() > limits::waiting_rooms_max)
      events.resize(limits::waiting_rooms_max);
    for (const auto& event : events) {
      in_flight.fetch_add(1);
      redis->eval(admit,
                  {key(event.event_id, "q"), key(event.event_id, "adm"),
                   key(event.event_id, "lease"), key(event.event_id, "st")},
                  {config.node_id, std::to_string(event.admit_per_second),
                   std::to_string(config.lease_ms),
                   std::to_string(keys_keep_ms)},
                  [self](caf::expected<redis_reply> reply) {
                    self->in_flight.fetch_sub(1);
                    if (reply && two_integers(*reply) && self->admitted)
                      self->admitted->Increment(
                          static_cast<double>(reply->elements[1].integer));
                    else if (reply && !two_integers(*reply))
                      spdlog::error("redis: the admission script answered "
                                    "{}",
                                    reply->text);
                  });
    }
  }

  /// The admission thread, restarted should it throw (core/supervised.hpp):
  /// a tick lost only admits later; the lease makes sure no other node
  /// admits for the event meanwhile twice.
  void run(const std::shared_ptr<impl>& self) {
    run_supervised([this, &self] { loop(self); },
                   [](const char* what) {
                     spdlog::error(
                         "waiting room: the admission thread died: {}; it "
                         "restarts",
                         what);
                   },
                   [this](std::chrono::milliseconds delay) {
                     std::unique_lock lock{mutex};
                     wake.wait_for(lock, delay, [this] { return stopping; });
                   },
                   restarts);
  }

  void loop(const std::shared_ptr<impl>& self) {
    std::unique_lock lock{mutex};
    while (!stopping) {
      wake.wait_for(lock, std::chrono::milliseconds(config.tick_ms),
                    [this] { return stopping; });
      if (stopping) break;
      crash_if_due(config.crashes.get(), crashes_injected, "admission");
      lock.unlock();
      tick(self);
      lock.lock();
    }
  }

  std::shared_ptr<redis_client> redis;
  waiting_room_config config;
  std::size_t standing = 0;
  std::size_t admit = 0;
  prometheus::Counter* admitted = nullptr;
  prometheus::Counter* restarts = nullptr;
  prometheus::Counter* crashes_injected = nullptr;
  std::atomic<int> in_flight{0};
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false; // guarded by mutex
  std::thread thread;
};

waiting_room::waiting_room(std::shared_ptr<redis_client> redis,
                           waiting_room_config config)
    : impl_(std::make_shared<impl>(std::move(redis), std::move(config))) {}

waiting_room::~waiting_room() {
  stop();
}

std::string waiting_room::key(const std::string& event_id, const char* part) {
  // The braces are a Redis Cluster hash tag: an event's keys share a slot,
  // as a script that touches several of them needs.
  return "rsv:wr:{" + event_id + "}:" + part;
}

void waiting_room::join(const std::string& event_id,
                        const std::string& customer_id, answer_fn done) {
  impl_->ask(event_id, customer_id, true, std::move(done));
}

void waiting_room::poll(const std::string& event_id,
                        const std::string& customer_id, answer_fn done) {
  impl_->ask(event_id, customer_id, false, std::move(done));
}

void waiting_room::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([impl = impl_] { impl->run(impl); });
}

void waiting_room::stop() {
  stop_worker(impl_->mutex, impl_->wake, impl_->stopping, impl_->thread);
}

} // namespace rsv::messaging
