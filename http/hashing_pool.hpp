#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace prometheus {
class Counter;
class Gauge;
class Registry;
} // namespace prometheus

namespace rsv::http {

/// The threads that hash and check passwords (argon2id: tens of
/// milliseconds of CPU and memory each, on purpose), with a bounded queue.
///
/// Anyone can make the server hash, without an account: a wrong password
/// costs as much as a right one. So a job that finds the queue full is
/// refused at once (the caller answers 503 with Retry-After), and a job
/// whose deadline passed while it waited is not hashed at all: its client
/// has had its 503 from the request deadline already, and hashing for
/// nobody would only make the next clients wait longer.
///
/// Created once by the api at start; `submit` may be called from any
/// thread; `stop` (or the destructor) ends the threads. The threads run at
/// a lower priority (nice) than the I/O and actor threads, so that a flood
/// of logins slows logins, not bookings.
class hashing_pool {
public:
  using clock = std::chrono::steady_clock;
  /// Runs on a hashing thread. `late` is true when the job's deadline passed
  /// before a thread was free (or the pool stopped first): the job must
  /// answer without hashing.
  using job = std::function<void(bool late)>;

  /// `threads` at least 1; `queue_max` jobs may wait beyond those running.
  hashing_pool(std::size_t threads, std::size_t queue_max,
               prometheus::Registry* registry = nullptr);
  ~hashing_pool();

  hashing_pool(const hashing_pool&) = delete;
  hashing_pool& operator=(const hashing_pool&) = delete;

  /// Queues `work` to run before `deadline`. False when the queue is full:
  /// `work` is dropped without being called, and the caller answers.
  bool submit(clock::time_point deadline, job work);

  /// Ends the threads after the jobs running now; jobs still queued are
  /// called late. Idempotent.
  void stop();

  /// Whether stop() has begun.
  bool stopping() const;
  std::size_t threads() const { return threads_.size(); }
  std::size_t queue_max() const { return queue_max_; }

private:
  struct queued {
    clock::time_point deadline;
    job work;
  };
  void run();

  const std::size_t queue_max_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<queued> queue_; // guarded by mutex_
  bool stopping_ = false;    // guarded by mutex_
  std::vector<std::thread> threads_;
  prometheus::Counter* run_ = nullptr;
  prometheus::Counter* late_ = nullptr;
  prometheus::Counter* refused_ = nullptr;
  prometheus::Gauge* waiting_ = nullptr;
};

} // namespace rsv::http
