#include "messaging/rate_limiter.hpp"

#include "core/limits.hpp"
#include "messaging/redis_pipe.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <algorithm>
#include <climits>
#include <prometheus/counter.h>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rsv {

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

/// What every batcher of a limiter applies.
struct limit_rules {
  int64_t quotas[limit_count] = {};
  std::string window_ms;
  std::string policy;
  prometheus::Counter* fail_open = nullptr;
  prometheus::Counter* refused = nullptr;
  prometheus::Counter* allowed = nullptr;
  prometheus::Counter* script_calls = nullptr;
};

} // namespace

struct rate_limiter::batcher
    : std::enable_shared_from_this<rate_limiter::batcher> {
  struct waiting {
    std::string keys[limit_count]; // empty: that limit does not apply
    std::size_t slots[limit_count] = {};
    std::function<void(rate_decision)> done;
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
  std::vector<waiting> queue;  // guarded by mutex
  std::size_t calls = 0;       // in flight, guarded by mutex
  bool deferred = false;       // a kick is due, guarded by mutex

  void add(waiting w) {
    std::vector<waiting> batch;
    {
      std::lock_guard lock{mutex};
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
    if (defer)
      defer([self = shared_from_this()] { self->kick(); });
    else
      send(std::move(batch));
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

  // One script call for the batch; when it is answered, the next batch.
  void send(std::vector<waiting> batch) {
    std::unordered_map<std::string_view, std::size_t> index;
    std::vector<std::string> keys;
    std::vector<std::string> args{rules->window_ms};
    std::vector<int64_t> counts;
    for (auto& w : batch)
      for (std::size_t j = 0; j < limit_count; ++j) {
        if (w.keys[j].empty()) continue;
        auto [at, fresh] = index.try_emplace(w.keys[j], keys.size());
        if (fresh) {
          keys.push_back(w.keys[j]);
          counts.push_back(0);
        }
        w.slots[j] = at->second;
        ++counts[at->second];
      }
    args.reserve(1 + counts.size());
    for (auto n : counts) args.push_back(std::to_string(n));
    if (rules->script_calls) rules->script_calls->Increment();
    call(std::move(keys), std::move(args),
         [self = shared_from_this(), batch = std::move(batch),
          counts = std::move(counts)](
             caf::expected<redis_reply> reply) mutable {
           self->answer(batch, counts, reply);
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

  void answer(std::vector<waiting>& batch, const std::vector<int64_t>& counts,
              const caf::expected<redis_reply>& reply) {
    if (!reply || reply->kind != redis_reply::type::array ||
        reply->elements.size() != 2 * counts.size()) {
      if (rules->fail_open)
        rules->fail_open->Increment(static_cast<double>(batch.size()));
      for (auto& w : batch) w.done(rate_decision{});
      return;
    }
    // The number of each key's first request in this batch: the requests
    // are numbered in the order they came.
    std::vector<int64_t> numbers(counts.size());
    for (std::size_t i = 0; i < counts.size(); ++i)
      numbers[i] = reply->elements[2 * i].integer - counts[i] + 1;
    for (auto& w : batch) {
      rate_decision decision;
      decision.policy = rules->policy;
      // The limit with the least left is the one to report.
      int64_t least = INT64_MAX;
      int64_t left_ms = 0;
      const char* name = limit_names[0];
      for (std::size_t j = 0; j < limit_count; ++j) {
        if (w.keys[j].empty()) continue;
        auto slot = w.slots[j];
        auto left = rules->quotas[j] - numbers[slot]++;
        if (left < least) {
          least = left;
          name = limit_names[j];
          left_ms = reply->elements[2 * slot + 1].integer;
        }
      }
      auto left_s = std::max<int64_t>(1, (left_ms + 999) / 1000);
      decision.allowed = least >= 0;
      decision.remaining = "\"" + std::string{name} + "\";r=" +
                           std::to_string(std::max<int64_t>(0, least)) +
                           ";t=" + std::to_string(left_s);
      if (!decision.allowed) {
        decision.retry_after_seconds = left_s;
        if (rules->refused) rules->refused->Increment();
      } else if (rules->allowed) {
        rules->allowed->Increment();
      }
      w.done(std::move(decision));
    }
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
    : config_(std::move(config)), lanes_(std::make_shared<lanes>()) {
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
    rules->script_calls =
        &prometheus::BuildCounter()
             .Name("rsv_rate_limit_calls_total")
             .Help("Script calls that counted rate limits: requests checked "
                   "per call is the allowed and refused requests over this")
             .Register(*config_.registry)
             .Add({});
  }
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
  auto script = redis->add_script(count_script);
  batcher_->call = [redis = std::move(redis), script](
                       std::vector<std::string> keys,
                       std::vector<std::string> args, redis_callback done) {
    redis->eval(script, std::move(keys), std::move(args), std::move(done));
  };
}

rate_limiter::~rate_limiter() = default;

std::shared_ptr<void> rate_limiter::attach(boost::asio::io_context& io) {
  redis_pipe_config pipe_cfg;
  pipe_cfg.endpoint = config_.endpoint;
  pipe_cfg.connect_timeout_ms = config_.connect_timeout_ms;
  pipe_cfg.command_timeout_ms = config_.command_timeout_ms;
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
  return std::shared_ptr<void>(
      l.get(), [l, up, registry = lanes_](void*) mutable {
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

void rate_limiter::check(const std::string& customer_id,
                         const std::string& address,
                         std::function<void(rate_decision)> done) {
  batcher::waiting w;
  if (config_.customer_per_window > 0 && !customer_id.empty())
    w.keys[0] = "rsv:rl:c:" + customer_id;
  if (config_.address_per_window > 0 && !address.empty())
    w.keys[1] = "rsv:rl:a:" + address;
  if (w.keys[0].empty() && w.keys[1].empty()) {
    done(rate_decision{});
    return;
  }
  w.done = std::move(done);
  if (lane_owner == this)
    lane_of_thread->batch->add(std::move(w));
  else
    batcher_->add(std::move(w));
}

} // namespace rsv
