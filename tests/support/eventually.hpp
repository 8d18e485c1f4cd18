#pragma once

// Waiting on a condition with a deadline, for every test module: tests wait
// on conditions, never on sleeps (the guide's rule). Header-only.

#include <chrono>
#include <thread>

namespace rsv::test_support {

/// Looks at `condition` every `interval` until it holds, for at most
/// `deadline`; answers whether it held. The condition synchronises itself
/// (atomics, a lock it takes, a request, a psql run). The deadline only
/// bounds how long a failing test takes; the interval is short enough for
/// in-process state and long enough for conditions that start a process.
template <class Condition>
bool eventually(
    Condition&& condition,
    std::chrono::milliseconds deadline = std::chrono::seconds(30),
    std::chrono::milliseconds interval = std::chrono::milliseconds(20)) {
  auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(interval); // a poll interval, not a sync
  }
}

} // namespace rsv::test_support
