#include "http/auth_throttle.hpp"

#include "core/assert.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <functional>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

namespace rsv::http {

key_throttle::key_throttle(throttle_rate rate, std::size_t keys_max)
    : keys_per_shard_max_(std::max<std::size_t>(1, keys_max / shard_count)) {
  if (rate.per_minute <= 0) return; // no limit
  RSV_ASSERT(rate.burst >= 1, "a throttle's burst is at least 1");
  // Rounded up: never faster than configured.
  interval_ms_ = (60'000 + rate.per_minute - 1) / rate.per_minute;
  tolerance_ms_ = interval_ms_ * (rate.burst - 1);
}

int64_t key_throttle::take(std::string_view key, millis now_ms,
                           bool* untracked) {
  if (!enabled()) return 0;
  auto& s = shards_[std::hash<std::string_view>{}(key) % shard_count];
  std::lock_guard lock{s.mutex};
  auto found = s.next_ms.find(std::string{key});
  if (found == s.next_ms.end()) {
    if (s.next_ms.size() >= keys_per_shard_max_)
      std::erase_if(s.next_ms, [now_ms](const auto& entry) {
        return entry.second <= now_ms;
      });
    if (s.next_ms.size() >= keys_per_shard_max_) {
      if (untracked) *untracked = true;
      return 0;
    }
    s.next_ms.emplace(std::string{key}, now_ms + interval_ms_);
    return 0;
  }
  auto next = std::max(found->second, now_ms);
  if (next - now_ms > tolerance_ms_) return next - tolerance_ms_ - now_ms;
  found->second = next + interval_ms_;
  return 0;
}

std::size_t key_throttle::keys() const {
  std::size_t total = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock{s.mutex};
    total += s.next_ms.size();
  }
  return total;
}

auth_throttle::auth_throttle(const config& cfg)
    : address_(cfg.per_address, cfg.keys_max),
      email_(cfg.per_email, cfg.keys_max) {
  if (cfg.registry) {
    auto& family = prometheus::BuildCounter()
                       .Name("rsv_auth_throttle_total")
                       .Help("Logins and registrations refused 429 by the "
                             "per-address or per-email throttle, and those "
                             "let through untracked because its table was "
                             "full")
                       .Register(*cfg.registry);
    refused_address_ = &family.Add({{"outcome", "refused_address"}});
    refused_email_ = &family.Add({{"outcome", "refused_email"}});
    untracked_ = &family.Add({{"outcome", "untracked"}});
  }
}

auth_throttle::decision auth_throttle::admit(std::string_view address,
                                             std::string_view email,
                                             millis now_ms) {
  auto refuse = [](int64_t wait_ms, const char* by,
                   prometheus::Counter* counter) {
    if (counter) counter->Increment();
    return decision{false, std::max<int64_t>(1, (wait_ms + 999) / 1000), by};
  };
  bool untracked = false;
  if (!address.empty()) {
    if (auto wait = address_.take(address_key(address), now_ms, &untracked))
      return refuse(wait, "address", refused_address_);
  }
  // The address has paid for this attempt even when the email refuses it:
  // it was made.
  if (auto wait = email_.take(email, now_ms, &untracked))
    return refuse(wait, "email", refused_email_);
  if (untracked && untracked_) untracked_->Increment();
  return {};
}

std::string address_key(std::string_view address) {
  boost::system::error_code ec;
  auto parsed = boost::asio::ip::make_address(std::string{address}, ec);
  if (ec) return std::string{address};
  if (parsed.is_v4()) return parsed.to_string();
  auto v6 = parsed.to_v6();
  if (v6.is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6)
        .to_string();
  auto bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6{bytes}.to_string() + "/64";
}

} // namespace rsv::http
