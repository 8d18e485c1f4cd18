#include "messaging/rate_limiter.hpp"

#include <algorithm>
#include <climits>
#include <prometheus/counter.h>
#include <vector>

namespace rsv {

namespace {

// INCR every key; the first count of a window starts it (the expiry), so
// a window begins with a caller's first request, the same for every node.
// Answers count and milliseconds left per key, in key order.
constexpr const char* count_script = R"lua(
local out = {}
for i = 1, #KEYS do
  local n = redis.call('INCR', KEYS[i])
  local left = redis.call('PTTL', KEYS[i])
  if n == 1 or left < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    left = tonumber(ARGV[1])
  end
  out[2 * i - 1] = n
  out[2 * i] = left
end
return out
)lua";

} // namespace

rate_limiter::rate_limiter(std::shared_ptr<redis_client> redis,
                           rate_limit_config config)
    : redis_(std::move(redis)), config_(std::move(config)) {
  if (config_.window_seconds < 1) config_.window_seconds = 1;
  script_ = redis_->add_script(count_script);
  auto w = std::to_string(config_.window_seconds);
  if (config_.customer_per_window > 0)
    policy_ = "\"customer\";q=" + std::to_string(config_.customer_per_window) +
              ";w=" + w;
  if (config_.address_per_window > 0)
    policy_ += (policy_.empty() ? "" : ", ") + std::string{"\"address\";q="} +
               std::to_string(config_.address_per_window) + ";w=" + w;
  if (config_.registry) {
    auto& family = prometheus::BuildCounter()
                       .Name("rsv_rate_limit_requests_total")
                       .Help("Write requests checked against the shared rate "
                             "limits, by outcome: refused (429), or "
                             "fail_open (allowed because Redis could not be "
                             "asked)")
                       .Register(*config_.registry);
    refused_ = &family.Add({{"outcome", "refused"}});
    fail_open_ = &family.Add({{"outcome", "fail_open"}});
  }
}

void rate_limiter::check(const std::string& customer_id,
                         const std::string& address,
                         std::function<void(rate_decision)> done) {
  auto window_ms = config_.window_seconds * 1000;
  // Which limits apply to this request, in key order.
  struct limit {
    const char* name;
    int64_t quota;
  };
  std::vector<limit> limits;
  std::vector<std::string> keys;
  if (config_.customer_per_window > 0 && !customer_id.empty()) {
    limits.push_back({"customer", config_.customer_per_window});
    keys.push_back("rsv:rl:c:" + customer_id);
  }
  if (config_.address_per_window > 0 && !address.empty()) {
    limits.push_back({"address", config_.address_per_window});
    keys.push_back("rsv:rl:a:" + address);
  }
  if (keys.empty()) {
    done(rate_decision{});
    return;
  }
  redis_->eval(script_, std::move(keys), {std::to_string(window_ms)},
               // No `this`: an answer may come after the limiter is gone.
               [policy = policy_, fail_open = fail_open_, refused = refused_,
                limits,
                done = std::move(done)](caf::expected<redis_reply> reply) {
                 rate_decision decision;
                 if (!reply || reply->kind != redis_reply::type::array ||
                     reply->elements.size() != 2 * limits.size()) {
                   if (fail_open) fail_open->Increment();
                   done(decision);
                   return;
                 }
                 decision.policy = policy;
                 // The limit with the least left is the one to report.
                 int64_t least = INT64_MAX;
                 int64_t left_ms = 0;
                 const char* name = limits.front().name;
                 for (std::size_t i = 0; i < limits.size(); ++i) {
                   auto left = limits[i].quota - reply->elements[2 * i].integer;
                   if (left < least) {
                     least = left;
                     name = limits[i].name;
                     left_ms = reply->elements[2 * i + 1].integer;
                   }
                 }
                 auto left_s = std::max<int64_t>(1, (left_ms + 999) / 1000);
                 decision.allowed = least >= 0;
                 decision.remaining =
                     "\"" + std::string{name} +
                     "\";r=" + std::to_string(std::max<int64_t>(0, least)) +
                     ";t=" + std::to_string(left_s);
                 if (!decision.allowed) {
                   decision.retry_after_seconds = left_s;
                   if (refused) refused->Increment();
                 }
                 done(std::move(decision));
               });
}

} // namespace rsv
