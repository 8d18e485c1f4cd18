#pragma once

#include "core/limits.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <prometheus/counter.h>
#include <stdexcept>
#include <string>
#include <thread>

namespace rsv {

/// A failure a supervised loop cannot go on from but a fresh start can: a
/// client library that would not start (a Kafka consumer that could not
/// subscribe), or the chaos facility's injected crash. The one exception
/// `run_supervised` restarts a loop for.
class thread_fault : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

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
/// Exceptions are not how this code base reports errors (they are values).
/// A `thread_fault` restarts the loop; any other exception is a programmer
/// error (or std::bad_alloc) and crashes the process loudly, with what it
/// said, for the process's supervisor (ECS, systemd, the test) to restart:
/// looping on a bug would hide it.
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
    } catch (const thread_fault& e) {
      recover(e.what());
    } catch (const std::exception& e) {
      std::fprintf(stderr,
                   "a supervised thread threw (a programmer error): "
                   "%s\n",
                   e.what());
      std::abort();
    } catch (...) {
      std::fprintf(stderr, "a supervised thread threw an exception of "
                           "unknown type (a programmer error)\n");
      std::abort();
    }
    if (restarts != nullptr) restarts->Increment();
    if (clock::now() - started >= stable) backoff = first;
    wait(backoff);
    backoff = std::min(backoff * 2, most);
  }
}

/// Crashes that the chaos facility (--chaos, docs/operations.md) injects
/// into one kind of supervised thread: the next `crashes` rounds of its loop
/// throw, at one point at the top of a round, and its supervisor restarts
/// it. Set from any thread (the admin API), taken by the thread; zero: none.
struct crash_fault {
  std::atomic<int> crashes{0};
};

/// The injection point of a supervised loop: when `fault` has a crash to
/// come, takes one, counts it in `injected` (both may be null) and throws,
/// naming `thread`. Otherwise one relaxed load and nothing else.
inline void crash_if_due(crash_fault* fault, prometheus::Counter* injected,
                         const char* thread) {
  if (fault == nullptr) return;
  int crashes = fault->crashes.load(std::memory_order_relaxed);
  // Several threads of a kind (the Redis connections) share one count: each
  // crash is taken by exactly one of them.
  while (crashes > 0 &&
         !fault->crashes.compare_exchange_weak(crashes, crashes - 1)) {
  }
  if (crashes <= 0) return;
  if (injected != nullptr) injected->Increment();
  throw thread_fault(std::string{"chaos: injected "} + thread + " crash");
}

/// The crash faults of the node's supervised threads besides the store's
/// writers (those are in store_faults): made once at start, shared by the
/// threads (each gets its member) and the chaos admin API.
struct thread_faults {
  crash_fault relay;            // the Kafka outbox relay
  crash_fault redis_connection; // any of the Redis client's connections
  crash_fault read_model;       // the read model's publishing thread
  crash_fault waiting_room;     // the waiting room's admission thread
};

/// Stops a worker whose thread waits on `wake` until `stopping`, guarded by
/// `mutex`, is set: sets it, wakes the thread and joins it.
inline void stop_worker(std::mutex& mutex, std::condition_variable& wake,
                        bool& stopping, std::thread& thread) {
  {
    std::lock_guard lock{mutex};
    stopping = true;
  }
  wake.notify_all();
  if (thread.joinable()) thread.join();
}

} // namespace rsv
