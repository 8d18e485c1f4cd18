#include "messaging/rate_limiter.hpp"

#include "core/limits.hpp"
#include "messaging/redis_pipe.hpp"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <climits>
#include <mutex>
#include <optional>
#include <prometheus/counter.h>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rsv::messaging {

namespace {

// Moves every key by its ARGV increment; the first count of a window starts
// it (the expiry), so a window begins with a caller's first request, the
// same for every node. Answers the count after the increment and the
// milliseconds left per key, in key order.
constexpr const char* count_script = R"lua(
local out = {}
for i = 1, #KEYS do
  local n = redis.call('INCRBY', KEYS[i], ARGV[i + 1])
  local left = redis.call('PTTL', KEYS[i])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    left = tonumber(ARGV[1])
  end
  out[2 * i - 1] = n
  out[2 * i] = left
end
return out
)lua";

// The two limits, in key order: the customer's, the address's.
constexpr std::size_t limit_count = 2;
constexpr const char* limit_names[limit_count] = {"customer", "address"};
constexpr const char* key_prefixes[limit_count] = {"rsv:rl:c:", "rsv:rl:a:"};

/// Hashes std::string and std::string_view alike, so that a lease is found
/// without building a string.
struct text_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const {
    return std::hash<std::string_view>{}(text);
  }
};

/// What every batcher of a limiter applies.
struct limit_rules {
  int64_t quotas[limit_count] = {};
  int64_t lease_max = 0;
  std::string window_ms;
  std::string policy;
  prometheus::Counter* fail_open = nullptr;
  prometheus::Counter* refused = nullptr;
  prometheus::Counter* allowed = nullptr;
  prometheus::Counter* script_calls = nullptr;
  prometheus::Counter* leased = nullptr;
};

using steady = std::chrono::steady_clock;

} // namespace

/// Counts checks in Redis, batched, and keeps the request numbers it
/// reserved ahead (leases, see rate_limiter) for the keys that come often.
struct rate_limiter::batcher
    : std::enable_shared_from_this<rate_limiter::batcher> {
  struct waiting {
    std::string ids[limit_count]; // customer, address; empty: no limit
    // Per key: its number when it came from a lease (0: asked of Redis),
    // and then when the lease's window ends.
    int64_t numbers[limit_count] = {};
    steady::time_point ends[limit_count];
    std::size_t slots[limit_count] = {}; // the key's place in the call
    std::function<void(rate_decision)> done;
  };

  /// Request numbers of one key reserved in Redis and not used yet
  /// ([next, end)), until its window ends; `count` is the key's count in
  /// Redis when last asked, `grant` how many were reserved ahead then.
  struct lease {
    int64_t next = 0;
    int64_t end = 0;
    int64_t count = 0;
    int64_t grant = 0;
    steady::time_point expires;
  };

  /// Sends one script call: the shared client's, or a lane's pipe.
  std::function<void(std::vector<std::string> keys,
                     std::vector<std::string> args, redis_callback done)>
      call;
  std::shared_ptr<const limit_rules> rules;
  /// Set (a lane's): runs its argument after the work already due on the
  /// thread, so that the checks of every request that came in one turn of
  /// its event loop go out in one call. Unset: a call goes out at once.
  std::function<void(std::function<void()>)> defer;

  std::mutex mutex;
  std::vector<waiting> queue; // guarded by mutex
  std::size_t calls = 0;      // in flight, guarded by mutex
  bool deferred = false;      // a kick is due, guarded by mutex
  /// Per limit, by customer or address; guarded by mutex.
  std::unordered_map<std::string, lease, text_hash, std::equal_to<>>
      leases[limit_count];
  steady::time_point swept; // guarded by mutex

  /// Gives the request's keys that have none a number from their lease
  /// where there is one; true when every key has its number. Under mutex.
  bool from_leases(waiting& w, steady::time_point now) {
    bool all = true;
    for (std::size_t j = 0; j < limit_count; ++j) {
      if (w.ids[j].empty() || w.numbers[j] != 0) continue;
      if (auto* l = usable(j, w.ids[j], now)) {
        w.numbers[j] = l->next++;
        w.ends[j] = l->expires;
      } else {
        all = false;
      }
    }
    return all;
  }

  /// The lease of `id` under limit `j` when it has a number left in its
  /// window; null otherwise. Under mutex.
  lease* usable(std::size_t j, std::string_view id, steady::time_point now) {
    auto it = leases[j].find(id);
    if (it == leases[j].end() || now >= it->second.expires ||
        it->second.next >= it->second.end)
      return nullptr;
    return &it->second;
  }

  /// A decision from leases alone, when every key has a number left there;
  /// nothing is taken otherwise.
  std::optional<rate_decision> now_or_never(const std::string_view ids[]) {
    waiting w;
    steady::time_point now;
    {
      std::lock_guard lock{mutex};
      now = steady::now();
      lease* found[limit_count] = {};
      for (std::size_t j = 0; j < limit_count; ++j)
        if (!ids[j].empty() && !(found[j] = usable(j, ids[j], now)))
          return std::nullopt;
      for (std::size_t j = 0; j < limit_count; ++j) {
        if (!found[j]) continue;
        w.numbers[j] = found[j]->next++;
        w.ends[j] = found[j]->expires;
      }
    }
    if (rules->leased) rules->leased->Increment();
    bool applies[limit_count];
    for (std::size_t j = 0; j < limit_count; ++j)
      applies[j] = !ids[j].empty();
    return decide(applies, w.numbers, w.ends, now);
  }

  void add(waiting w) {
    std::vector<waiting> batch;
    bool local;
    {
      std::lock_guard lock{mutex};
      auto now = steady::now();
      sweep(now);
      local = from_leases(w, now);
      if (!local) {
        queue.push_back(std::move(w));
        if (calls >= limits::rate_limit_calls_max) return;
        if (defer) {
          if (deferred) return;
          deferred = true;
        } else {
          ++calls;
          take(batch);
        }
      }
    }
    if (local) {
      if (rules->leased) rules->leased->Increment();
      decide(w, steady::now());
    } else if (defer) {
      defer([self = shared_from_this()] { self->kick(); });
    } else {
      send(std::move(batch));
    }
  }

  void kick() {
    std::vector<waiting> batch;
    {
      std::lock_guard lock{mutex};
      deferred = false;
      if (calls >= limits::rate_limit_calls_max || queue.empty()) return;
      ++calls;
      take(batch);
    }
    send(std::move(batch));
  }

  // Up to a batch of the queue, oldest first. Under mutex.
  void take(std::vector<waiting>& batch) {
    if (queue.size() <= limits::rate_limit_batch_max) {
      batch.swap(queue);
      return;
    }
    auto end = queue.begin() + limits::rate_limit_batch_max;
    batch.assign(std::make_move_iterator(queue.begin()),
                 std::make_move_iterator(end));
    queue.erase(queue.begin(), end);
  }

  // Drops the leases of windows that ended, once a second. Under mutex.
  void sweep(steady::time_point now) {
    if (now - swept < std::chrono::seconds(1)) return;
    swept = now;
    for (auto& map : leases)
      std::erase_if(map, [now](const auto& entry) {
        return entry.second.expires <= now;
      });
  }

  /// How many numbers to reserve ahead for a key asked of Redis again:
  /// none the first time in a window; then twice as many as last time, at
  /// most rules->lease_max and at most 1/limits::rate_limit_lease_share of
  /// what the window has left. Under mutex.
  int64_t ahead(std::size_t j, const std::string& id,
                steady::time_point now) const {
    if (rules->lease_max <= 0) return 0;
    auto it = leases[j].find(id);
    if (it == leases[j].end() || it->second.expires <= now) return 0;
    auto quota = rules->quotas[j];
    auto left = (quota - it->second.count) /
                static_cast<int64_t>(limits::rate_limit_lease_share);
    auto grow = std::max<int64_t>(1, it->second.grant * 2);
    return std::max<int64_t>(0, std::min({grow, rules->lease_max, left}));
  }

  // One script call for the batch's keys without a lease; when it is
  // answered, the next batch.
  void send(std::vector<waiting> batch) {
    // What waited may have a lease by now (the call before this one
    // brought it): those numbers go first, and only what is still missing
    // is asked of Redis. A lease is thus used up before its key is asked
    // again, and an answer never replaces one with numbers left.
    std::vector<waiting> leased;
    {
      std::lock_guard lock{mutex};
      auto now = steady::now();
      std::vector<waiting> asked;
      for (auto& w : batch)
        (from_leases(w, now) ? leased : asked).push_back(std::move(w));
      batch.swap(asked);
    }
    if (!leased.empty()) {
      if (rules->leased)
        rules->leased->Increment(static_cast<double>(leased.size()));
      auto now = steady::now();
      for (auto& w : leased)
        decide(w, now);
    }
    if (batch.empty()) {
      next();
      return;
    }
    // Each distinct (limit, id) once, in the order they came.
    std::unordered_map<std::string_view, std::size_t> index[limit_count];
    std::vector<std::string> keys;
    std::vector<std::string> args{rules->window_ms};
    std::vector<int64_t> counts;
    std::vector<std::pair<std::size_t, std::string>> names; // limit, id
    for (auto& w : batch)
      for (std::size_t j = 0; j < limit_count; ++j) {
        if (w.ids[j].empty() || w.numbers[j] != 0) continue;
        auto [at, fresh] = index[j].try_emplace(w.ids[j], keys.size());
        if (fresh) {
          keys.push_back(key_prefixes[j] + w.ids[j]);
          counts.push_back(0);
          names.emplace_back(j, w.ids[j]);
        }
        w.slots[j] = at->second;
        ++counts[at->second];
      }
    std::vector<int64_t> extra(keys.size());
    {
      std::lock_guard lock{mutex};
      auto now = steady::now();
      for (std::size_t i = 0; i < keys.size(); ++i)
        extra[i] = ahead(names[i].first, names[i].second, now);
    }
    args.reserve(1 + counts.size());
    for (std::size_t i = 0; i < counts.size(); ++i)
      args.push_back(std::to_string(counts[i] + extra[i]));
    if (rules->script_calls) rules->script_calls->Increment();
    call(std::move(keys), std::move(args),
         [self = shared_from_this(), batch = std::move(batch),
          names = std::move(names), counts = std::move(counts),
          extra = std::move(extra)](caf::expected<redis_reply> reply) mutable {
           self->answer(batch, names, counts, extra, reply);
           self->next();
         });
  }

  // A call was answered: what queued meanwhile goes next (deferred, with
  // what else comes in this turn, when the batcher defers).
  void next() {
    std::vector<waiting> batch;
    {
      std::lock_guard lock{mutex};
      if (queue.empty() || defer) {
        --calls;
        if (queue.empty() || deferred) return;
        deferred = true;
      } else {
        take(batch);
      }
    }
    if (batch.empty())
      defer([self = shared_from_this()] { self->kick(); });
    else
      send(std::move(batch));
  }

  void answer(std::vector<waiting>& batch,
              const std::vector<std::pair<std::size_t, std::string>>& names,
              const std::vector<int64_t>& counts,
              const std::vector<int64_t>& extra,
              const caf::expected<redis_reply>& reply) {
    if (!reply || reply->kind != redis_reply::type::array ||
        reply->elements.size() != 2 * counts.size()) {
      if (rules->fail_open)
        rules->fail_open->Increment(static_cast<double>(batch.size()));
      for (auto& w : batch)
        w.done(rate_decision{});
      return;
    }
    auto now = steady::now();
    // The number of each key's first request in this batch: the requests
    // are numbered in the order they came, and what was reserved ahead
    // follows them.
    std::vector<int64_t> numbers(counts.size());
    std::vector<steady::time_point> ends(counts.size());
    {
      std::lock_guard lock{mutex};
      for (std::size_t i = 0; i < counts.size(); ++i) {
        auto count = reply->elements[2 * i].integer;
        numbers[i] = count - counts[i] - extra[i] + 1;
        ends[i] = now + std::chrono::milliseconds(std::max<long long>(
                            0, reply->elements[2 * i + 1].integer));
        if (rules->lease_max <= 0) continue;
        auto& map = leases[names[i].first];
        auto it = map.find(names[i].second);
        if (it == map.end()) {
          // Remembered for the next time it comes in this window, room
          // permitting.
          if (map.size() >= limits::rate_limit_leases_max) continue;
          it = map.try_emplace(names[i].second).first;
        }
        auto& l = it->second;
        l.next = count - extra[i] + 1;
        l.end = count + 1;
        l.count = count;
        l.grant = extra[i];
        l.expires = ends[i];
      }
    }
    for (auto& w : batch) {
      for (std::size_t j = 0; j < limit_count; ++j) {
        if (w.ids[j].empty() || w.numbers[j] != 0) continue;
        w.numbers[j] = numbers[w.slots[j]]++;
        w.ends[j] = ends[w.slots[j]];
      }
      decide(w, now);
    }
  }

  /// Answers a request whose every key has its number.
  void decide(waiting& w, steady::time_point now) {
    bool applies[limit_count];
    for (std::size_t j = 0; j < limit_count; ++j)
      applies[j] = !w.ids[j].empty();
    w.done(decide(applies, w.numbers, w.ends, now));
  }

  /// The decision for the numbers of the limits that apply.
  rate_decision decide(const bool applies[], const int64_t numbers[],
                       const steady::time_point ends[],
                       steady::time_point now) const {
    rate_decision decision;
    decision.policy = rules->policy;
    // The limit with the least left is the one to report.
    int64_t least = INT64_MAX;
    steady::time_point end = now;
    const char* name = limit_names[0];
    for (std::size_t j = 0; j < limit_count; ++j) {
      if (!applies[j]) continue;
      auto left = rules->quotas[j] - numbers[j];
      if (left < least) {
        least = left;
        name = limit_names[j];
        end = ends[j];
      }
    }
    auto left_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(end - now)
            .count();
    auto left_s = std::max<int64_t>(1, (left_ms + 999) / 1000);
    decision.allowed = least >= 0;
    decision.remaining = "\"" + std::string{name} +
                         "\";r=" + std::to_string(std::max<int64_t>(0, least)) +
                         ";t=" + std::to_string(left_s);
    if (!decision.allowed) {
      decision.retry_after_seconds = left_s;
      if (rules->refused) rules->refused->Increment();
    } else if (rules->allowed) {
      rules->allowed->Increment();
    }
    return decision;
  }
};

/// One attached I/O thread's connection and batcher.
struct rate_limiter::lane {
  std::shared_ptr<redis_pipe> pipe;
  std::shared_ptr<batcher> batch;
};

/// The attached threads' connections, for `health`.
struct rate_limiter::lanes {
  mutable std::mutex mutex;
  std::vector<std::shared_ptr<const std::atomic<bool>>> up; // guarded
};

namespace {

/// The lane of the calling thread, and whose it is.
thread_local const rate_limiter* lane_owner = nullptr;
thread_local rate_limiter::lane* lane_of_thread = nullptr;

} // namespace

rate_limiter::rate_limiter(std::shared_ptr<redis_client> redis,
                           rate_limit_config config)
    : config_(std::move(config)), lanes_(std::make_shared<lanes>()),
      redis_(std::move(redis)) {
  if (config_.window_seconds < 1) config_.window_seconds = 1;
  auto rules = std::make_shared<limit_rules>();
  if (config_.registry) {
    auto& family = prometheus::BuildCounter()
                       .Name("rsv_rate_limit_requests_total")
                       .Help("Write requests checked against the shared rate "
                             "limits, by outcome: allowed, refused (429), or "
                             "fail_open (allowed because Redis could not be "
                             "asked)")
                       .Register(*config_.registry);
    rules->allowed = &family.Add({{"outcome", "allowed"}});
    rules->refused = &family.Add({{"outcome", "refused"}});
    rules->fail_open = &family.Add({{"outcome", "fail_open"}});
    rules->leased =
        &prometheus::BuildCounter()
             .Name("rsv_rate_limit_leased_total")
             .Help("Requests checked against request numbers reserved "
                   "ahead in Redis (no round trip of their own)")
             .Register(*config_.registry)
             .Add({});
    rules->script_calls =
        &prometheus::BuildCounter()
             .Name("rsv_rate_limit_calls_total")
             .Help("Script calls that counted rate limits: requests checked "
                   "per call is the allowed and refused requests over this")
             .Register(*config_.registry)
             .Add({});
  }
  rules->lease_max = std::max<int64_t>(0, config_.lease_max);
  rules->quotas[0] = config_.customer_per_window;
  rules->quotas[1] = config_.address_per_window;
  rules->window_ms = std::to_string(config_.window_seconds * 1000);
  auto w = std::to_string(config_.window_seconds);
  for (std::size_t j = 0; j < limit_count; ++j) {
    if (rules->quotas[j] <= 0) continue;
    rules->policy += (rules->policy.empty() ? "\"" : ", \"") +
                     std::string{limit_names[j]} +
                     "\";q=" + std::to_string(rules->quotas[j]) + ";w=" + w;
  }
  batcher_ = std::make_shared<batcher>();
  batcher_->rules = std::move(rules);
  auto script = redis_->add_script(count_script);
  batcher_->call = [redis = redis_, script](std::vector<std::string> keys,
                                            std::vector<std::string> args,
                                            redis_callback done) {
    redis->eval(script, std::move(keys), std::move(args), std::move(done));
  };
}

rate_limiter::~rate_limiter() = default;

std::shared_ptr<void> rate_limiter::attach(boost::asio::io_context& io) {
  redis_pipe_config pipe_cfg;
  const auto& shared = redis_->config();
  pipe_cfg.endpoint = shared.endpoint;
  pipe_cfg.connect_timeout_ms = shared.connect_timeout_ms;
  pipe_cfg.command_timeout_ms = shared.command_timeout_ms;
  pipe_cfg.scripts = {count_script};
  auto l = std::make_shared<lane>();
  l->pipe = std::make_shared<redis_pipe>(io, std::move(pipe_cfg));
  l->batch = std::make_shared<batcher>();
  l->batch->rules = batcher_->rules;
  l->batch->defer = [&io](std::function<void()> work) {
    boost::asio::post(io, std::move(work));
  };
  // The pipe outlives every call: the lane stops it (answering what waits)
  // before it goes.
  l->batch->call = [pipe = l->pipe.get()](std::vector<std::string> keys,
                                          std::vector<std::string> args,
                                          redis_callback done) {
    pipe->eval(0, keys, args, std::move(done));
  };
  auto up = l->pipe->up();
  {
    std::lock_guard lock{lanes_->mutex};
    lanes_->up.push_back(up);
  }
  l->pipe->start();
  lane_owner = this;
  lane_of_thread = l.get();
  // What the caller holds: dropping it detaches the thread.
  return std::shared_ptr<void>(l.get(),
                               [l, up, registry = lanes_](void*) mutable {
                                 if (lane_of_thread == l.get()) {
                                   lane_owner = nullptr;
                                   lane_of_thread = nullptr;
                                 }
                                 l->pipe->stop();
                                 std::lock_guard lock{registry->mutex};
                                 std::erase(registry->up, up);
                               });
}

service_state rate_limiter::health() const {
  std::lock_guard lock{lanes_->mutex};
  for (const auto& up : lanes_->up)
    if (!up->load(std::memory_order_acquire)) return service_state::down;
  return service_state::ok;
}

std::optional<rate_decision>
rate_limiter::check_now(const std::string& customer_id,
                        const std::string& address) {
  if (lane_owner != this) return std::nullopt;
  std::string_view ids[limit_count];
  if (config_.customer_per_window > 0) ids[0] = customer_id;
  if (config_.address_per_window > 0) ids[1] = address;
  if (ids[0].empty() && ids[1].empty()) return rate_decision{};
  return lane_of_thread->batch->now_or_never(ids);
}

void rate_limiter::check(const std::string& customer_id,
                         const std::string& address,
                         std::function<void(rate_decision)> done) {
  batcher::waiting w;
  if (config_.customer_per_window > 0) w.ids[0] = customer_id;
  if (config_.address_per_window > 0) w.ids[1] = address;
  if (w.ids[0].empty() && w.ids[1].empty()) {
    done(rate_decision{});
    return;
  }
  w.done = std::move(done);
  if (lane_owner == this)
    lane_of_thread->batch->add(std::move(w));
  else
    batcher_->add(std::move(w));
}

} // namespace rsv::messaging
