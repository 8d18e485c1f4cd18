#include "messaging/rate_limiter.hpp"

#include "core/limits.hpp"

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

} // namespace

struct rate_limiter::batcher
    : std::enable_shared_from_this<rate_limiter::batcher> {
  struct waiting {
    std::string keys[limit_count]; // empty: that limit does not apply
    std::size_t slots[limit_count] = {};
    std::function<void(rate_decision)> done;
  };

  std::shared_ptr<redis_client> redis;
  std::size_t script = 0;
  int64_t quotas[limit_count] = {};
  std::string window_ms;
  std::string policy;
  prometheus::Counter* fail_open = nullptr;
  prometheus::Counter* refused = nullptr;

  std::mutex mutex;
  std::vector<waiting> queue; // guarded by mutex
  std::size_t calls = 0;      // in flight, guarded by mutex

  void add(waiting w) {
    std::vector<waiting> batch;
    {
      std::lock_guard lock{mutex};
      queue.push_back(std::move(w));
      if (calls >= limits::rate_limit_calls_max) return;
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
    std::vector<std::string> args{window_ms};
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
    redis->eval(script, std::move(keys), std::move(args),
                [self = shared_from_this(), batch = std::move(batch),
                 counts = std::move(counts)](
                    caf::expected<redis_reply> reply) mutable {
                  self->answer(batch, counts, reply);
                  self->next();
                });
  }

  void next() {
    std::vector<waiting> batch;
    {
      std::lock_guard lock{mutex};
      if (queue.empty()) {
        --calls;
        return;
      }
      take(batch);
    }
    send(std::move(batch));
  }

  void answer(std::vector<waiting>& batch, const std::vector<int64_t>& counts,
              const caf::expected<redis_reply>& reply) {
    if (!reply || reply->kind != redis_reply::type::array ||
        reply->elements.size() != 2 * counts.size()) {
      if (fail_open) fail_open->Increment(static_cast<double>(batch.size()));
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
      decision.policy = policy;
      // The limit with the least left is the one to report.
      int64_t least = INT64_MAX;
      int64_t left_ms = 0;
      const char* name = limit_names[0];
      for (std::size_t j = 0; j < limit_count; ++j) {
        if (w.keys[j].empty()) continue;
        auto slot = w.slots[j];
        auto left = quotas[j] - numbers[slot]++;
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
        if (refused) refused->Increment();
      }
      w.done(std::move(decision));
    }
  }
};

rate_limiter::rate_limiter(std::shared_ptr<redis_client> redis,
                           rate_limit_config config)
    : config_(std::move(config)), batcher_(std::make_shared<batcher>()) {
  if (config_.window_seconds < 1) config_.window_seconds = 1;
  auto& b = *batcher_;
  b.redis = std::move(redis);
  b.script = b.redis->add_script(count_script);
  b.quotas[0] = config_.customer_per_window;
  b.quotas[1] = config_.address_per_window;
  b.window_ms = std::to_string(config_.window_seconds * 1000);
  auto w = std::to_string(config_.window_seconds);
  for (std::size_t j = 0; j < limit_count; ++j) {
    if (b.quotas[j] <= 0) continue;
    b.policy += (b.policy.empty() ? "\"" : ", \"") +
                std::string{limit_names[j]} +
                "\";q=" + std::to_string(b.quotas[j]) + ";w=" + w;
  }
  if (config_.registry) {
    auto& family = prometheus::BuildCounter()
                       .Name("rsv_rate_limit_requests_total")
                       .Help("Write requests checked against the shared rate "
                             "limits, by outcome: refused (429), or "
                             "fail_open (allowed because Redis could not be "
                             "asked)")
                       .Register(*config_.registry);
    b.refused = &family.Add({{"outcome", "refused"}});
    b.fail_open = &family.Add({{"outcome", "fail_open"}});
  }
}

rate_limiter::~rate_limiter() = default;

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
  batcher_->add(std::move(w));
}

} // namespace rsv
