// The queue between a store's callers and its connection's thread
// (persistence/work_queue.hpp): what a caller is told when its write is
// refused, and that a closing store wakes its thread at once.

#include "persistence/work_queue.hpp"

#include <chrono>
#include <future>
#include <gtest/gtest.h>
#include <memory>
#include <string>

namespace {

using rsv::persistence::pg::work_queue;
using namespace std::chrono_literals;

using queue_t = work_queue<std::unique_ptr<std::string>>;

TEST(work_queue, a_refused_item_stays_with_its_caller) {
  queue_t queue;
  auto first = std::make_unique<std::string>("first");
  auto second = std::make_unique<std::string>("second");
  EXPECT_EQ(queue.push(first, 1), queue_t::pushed::yes);
  EXPECT_EQ(first, nullptr);
  // Full: the caller keeps its write, to answer it unavailable.
  EXPECT_EQ(queue.push(second, 1), queue_t::pushed::full);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(*second, "second");
  queue.close();
  EXPECT_EQ(queue.push(second, 10), queue_t::pushed::closed);
  ASSERT_NE(second, nullptr);
  // What was queued before the close is still there for the owner.
  auto left = queue.take_all();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(*left.front(), "first");
}

TEST(work_queue, the_taker_gets_items_in_order_and_times_out_when_idle) {
  queue_t queue;
  for (auto name : {"a", "b", "c"}) {
    auto item = std::make_unique<std::string>(name);
    ASSERT_EQ(queue.push(item, 10), queue_t::pushed::yes);
  }
  std::string seen;
  bool closed_seen = true;
  ASSERT_TRUE(queue.wait_take(1s, [&](auto& items, bool closed) {
    closed_seen = closed;
    while (!items.empty()) {
      seen += *items.front();
      items.pop_front();
    }
  }));
  EXPECT_EQ(seen, "abc");
  EXPECT_FALSE(closed_seen);
  bool called = false;
  EXPECT_FALSE(queue.wait_take(10ms, [&](auto&, bool) { called = true; }));
  EXPECT_FALSE(called);
}

TEST(work_queue, closing_wakes_a_waiting_taker_and_cuts_a_pause_short) {
  queue_t queue;
  auto taker = std::async(std::launch::async, [&] {
    bool closed_seen = false;
    auto woke = queue.wait_take(60s, [&](auto& items, bool closed) {
      closed_seen = closed && items.empty();
    });
    return woke && closed_seen;
  });
  auto pauser = std::async(std::launch::async, [&] {
    auto started = std::chrono::steady_clock::now();
    queue.pause(60s);
    return std::chrono::steady_clock::now() - started;
  });
  queue.close();
  // Deadlines, not sleeps: each must return long before its 60 s.
  ASSERT_EQ(taker.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(taker.get());
  ASSERT_EQ(pauser.wait_for(10s), std::future_status::ready);
  EXPECT_LT(pauser.get(), 10s);
}

} // namespace
