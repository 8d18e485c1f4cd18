#pragma once

#include "core/limits.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <prometheus/counter.h>

namespace rsv {

/// Supervision of a worker thread that is not an actor (the store's writers,
/// the Kafka relay): runs `body`, the thread's loop, until it returns. When
/// it throws, `recover(what)` runs on the same thread to put right what was
/// in flight (answer the writes of the batch with an error, drop the
/// connection whose state is unknown), `restarts` counts it, and after a
/// bounded exponential backoff (limits::thread_restart_*) the loop starts
/// again. `wait(delay)` waits for the backoff; it returns early when the
/// owner is stopping, and the loop then runs once more to finish its own
/// stop. A loop that ran for limits::thread_restart_stable_ms before it
/// threw starts the backoff again from the first delay.
///
/// Exceptions are not how this code base reports errors (they are values);
/// this is the net for the ones that escape anyway: a bug, std::bad_alloc,
/// or the chaos facility's injected crash.
template <class Body, class Recover, class Wait>
void run_supervised(Body&& body, Recover&& recover, Wait&& wait,
                    prometheus::Counter* restarts) {
  using clock = std::chrono::steady_clock;
  const auto first =
      std::chrono::milliseconds(limits::thread_restart_backoff_first_ms);
  const auto most =
      std::chrono::milliseconds(limits::thread_restart_backoff_max_ms);
  const auto stable =
      std::chrono::milliseconds(limits::thread_restart_stable_ms);
  auto backoff = first;
  for (;;) {
    auto started = clock::now();
    try {
      body();
      return;
    } catch (const std::exception& e) {
      recover(e.what());
    } catch (...) {
      recover("an exception of unknown type");
    }
    if (restarts != nullptr) restarts->Increment();
    if (clock::now() - started >= stable) backoff = first;
    wait(backoff);
    backoff = std::min(backoff * 2, most);
  }
}

} // namespace rsv
