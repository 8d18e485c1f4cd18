#include "core/supervised.hpp"

#include <chrono>
#include <gtest/gtest.h>
#include <stdexcept>
#include <string>
#include <vector>

namespace rsv {
namespace {

using std::chrono::milliseconds;

TEST(supervised, a_thread_fault_restarts_the_loop_after_recovering) {
  int runs = 0;
  std::vector<std::string> recovered;
  std::vector<milliseconds> waits;
  run_supervised(
      [&] {
        if (++runs < 4) throw thread_fault("lost the connection");
      },
      [&](const char* what) { recovered.emplace_back(what); },
      [&](milliseconds delay) { waits.push_back(delay); }, nullptr);
  EXPECT_EQ(runs, 4);
  ASSERT_EQ(recovered.size(), 3u);
  EXPECT_EQ(recovered[0], "lost the connection");
  // The backoff doubles from the first delay.
  ASSERT_EQ(waits.size(), 3u);
  EXPECT_EQ(waits[0], milliseconds(limits::thread_restart_backoff_first_ms));
  EXPECT_EQ(waits[1], 2 * waits[0]);
  EXPECT_EQ(waits[2], 2 * waits[1]);
}

TEST(supervised, an_injected_crash_is_a_thread_fault) {
  crash_fault fault;
  fault.crashes = 2;
  int crashes = 0;
  run_supervised([&] { crash_if_due(&fault, nullptr, "relay"); },
                 [&](const char*) { ++crashes; }, [](milliseconds) {}, nullptr);
  EXPECT_EQ(crashes, 2);
  EXPECT_EQ(fault.crashes.load(), 0);
}

TEST(supervised_death, a_programmer_error_crashes_loudly_instead_of_looping) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_supervised([] { throw std::logic_error("index past end"); },
                              [](const char*) {}, [](milliseconds) {}, nullptr),
               "programmer error.*index past end");
}

} // namespace
} // namespace rsv
