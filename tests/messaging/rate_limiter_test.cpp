// The shared rate limits (messaging/rate_limiter) against a real
// redis-server of the test, below the HTTP front end: a customer and an
// address are counted apart, the window's end is what a refused client is
// told to wait for, two limiters (two nodes) share one count, and a Redis
// that cannot be asked never stands in the way of a booking.

#include "messaging/rate_limiter.hpp"
#include "redis_support.hpp"

#include <chrono>
#include <future>
#include <gtest/gtest.h>

namespace rsv::messaging {
namespace {

using namespace std::chrono_literals;

class rate_limiter_test : public ::testing::Test {
protected:
  /// A limiter on the test's Redis, as a node makes one (its own client).
  std::unique_ptr<rate_limiter> make(rate_limit_config config) {
    redis_config redis_cfg;
    redis_cfg.endpoint = *parse_redis_url(redis_.url());
    redis_cfg.connect_timeout_ms = 200;
    redis_cfg.command_timeout_ms = 500;
    auto client = std::make_shared<redis_client>(std::move(redis_cfg));
    auto limiter = std::make_unique<rate_limiter>(client, config);
    client->start();
    clients_.push_back(client);
    return limiter;
  }

  static rate_decision check(rate_limiter& limiter, const std::string& customer,
                             const std::string& address) {
    auto decided = std::make_shared<std::promise<rate_decision>>();
    auto future = decided->get_future();
    limiter.check(customer, address,
                  [decided](rate_decision d) { decided->set_value(d); });
    EXPECT_EQ(future.wait_for(10s), std::future_status::ready)
        << "a check was not answered within 10 s";
    return future.get();
  }

  /// Waits, with a deadline, until the limiter's client is connected.
  void wait_connected() {
    auto until = std::chrono::steady_clock::now() + 10s;
    for (const auto& client : clients_)
      while (client->health() != service_state::ok) {
        ASSERT_LT(std::chrono::steady_clock::now(), until)
            << "Redis never answered";
        std::unique_lock<std::mutex> lock{mutex_};
        woken_.wait_for(lock, 10ms);
      }
  }

  void TearDown() override {
    for (auto& client : clients_)
      client->stop();
  }

  e2e::redis_server redis_;
  std::vector<std::shared_ptr<redis_client>> clients_;
  std::mutex mutex_;
  std::condition_variable woken_; // never notified: a bounded poll
};

TEST_F(rate_limiter_test,
       a_customer_past_the_limit_is_refused_until_the_window_ends) {
  rate_limit_config config;
  config.customer_per_window = 5;
  config.window_seconds = 30;
  auto limiter = make(config);
  wait_connected();
  for (int i = 0; i < 5; ++i) {
    auto d = check(*limiter, "cus_a", "");
    EXPECT_TRUE(d.allowed) << "request " << i + 1 << " of 5";
    EXPECT_NE(d.policy.find("5;w=30"), std::string::npos) << d.policy;
  }
  auto refused = check(*limiter, "cus_a", "");
  EXPECT_FALSE(refused.allowed);
  EXPECT_GE(refused.retry_after_seconds, 1);
  EXPECT_LE(refused.retry_after_seconds, 30);
  // Another customer has a count of its own.
  EXPECT_TRUE(check(*limiter, "cus_b", "").allowed);
  // The window is Redis's key with its expiry: what the refusal said.
  auto ttl = std::stoll(redis_.cli({"TTL", "rsv:rl:c:cus_a"}));
  EXPECT_GE(ttl, 1);
  EXPECT_LE(ttl, 30);
}

TEST_F(rate_limiter_test, an_address_is_counted_apart_from_its_customers) {
  rate_limit_config config;
  config.customer_per_window = 100;
  config.address_per_window = 3;
  config.window_seconds = 30;
  auto limiter = make(config);
  wait_connected();
  // Three customers behind one address: the address runs out first.
  EXPECT_TRUE(check(*limiter, "cus_1", "203.0.113.7").allowed);
  EXPECT_TRUE(check(*limiter, "cus_2", "203.0.113.7").allowed);
  EXPECT_TRUE(check(*limiter, "cus_3", "203.0.113.7").allowed);
  EXPECT_FALSE(check(*limiter, "cus_4", "203.0.113.7").allowed);
  // The same customer from another address is fine.
  EXPECT_TRUE(check(*limiter, "cus_4", "198.51.100.1").allowed);
}

TEST_F(rate_limiter_test, two_nodes_share_one_count) {
  rate_limit_config config;
  config.customer_per_window = 4;
  config.window_seconds = 30;
  auto node_a = make(config);
  auto node_b = make(config);
  wait_connected();
  EXPECT_TRUE(check(*node_a, "cus_a", "").allowed);
  EXPECT_TRUE(check(*node_b, "cus_a", "").allowed);
  EXPECT_TRUE(check(*node_a, "cus_a", "").allowed);
  EXPECT_TRUE(check(*node_b, "cus_a", "").allowed);
  EXPECT_FALSE(check(*node_a, "cus_a", "").allowed);
  EXPECT_FALSE(check(*node_b, "cus_a", "").allowed);
}

TEST_F(rate_limiter_test, without_redis_every_request_is_allowed) {
  rate_limit_config config;
  config.customer_per_window = 1;
  config.window_seconds = 30;
  auto registry = std::make_shared<prometheus::Registry>();
  config.registry = registry;
  auto limiter = make(config);
  wait_connected();
  redis_.kill();
  // Fail open: past the limit of one, and still allowed, every time.
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(check(*limiter, "cus_a", "").allowed) << "request " << i + 1;
  double fail_open = 0;
  for (const auto& family : registry->Collect())
    if (family.name == "rsv_rate_limit_requests_total")
      for (const auto& metric : family.metric)
        for (const auto& label : metric.label)
          if (label.name == "outcome" && label.value == "fail_open")
            fail_open += metric.counter.value;
  EXPECT_EQ(fail_open, 3);
}

} // namespace
} // namespace rsv::messaging
