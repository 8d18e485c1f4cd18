#pragma once

// Private to persistence/: the queue between the callers of a store and the
// one thread that owns its connection (pg_writer.cpp, cluster_store.cpp).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>

namespace rsv::persistence::pg {

/// A bounded queue that callers on any thread push into and one thread
/// takes from, until it is closed. Closing wakes the taker; what it does with
/// what is left (commit it, fail it) is its own policy.
template <class T>
class work_queue {
public:
  enum class pushed { yes, full, closed };

  /// Queues `item` unless `max` items wait already or the queue is closed;
  /// `item` is moved from only when the answer is `yes`, so that a refused
  /// caller can still answer it.
  pushed push(T& item, std::size_t max) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (closed_) return pushed::closed;
      if (items_.size() >= max) return pushed::full;
      items_.push_back(std::move(item));
    }
    wake_.notify_one();
    return pushed::yes;
  }

  /// Refuses later pushes and wakes the taker.
  void close() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      closed_ = true;
    }
    wake_.notify_all();
  }

  /// Waits up to `timeout` for an item or for the close; false when neither
  /// came. Otherwise calls `take(items, closed)` under the lock, to move out
  /// what the taker wants, and returns true.
  template <class Take>
  bool wait_take(std::chrono::milliseconds timeout, Take&& take) {
    std::unique_lock<std::mutex> lock{mutex_};
    if (!wake_.wait_for(lock, timeout,
                        [this] { return closed_ || !items_.empty(); }))
      return false;
    take(items_, closed_);
    return true;
  }

  /// Waits `delay`, or less when the queue is closed meanwhile: a backoff
  /// that does not hold up a shutdown.
  void pause(std::chrono::milliseconds delay) {
    std::unique_lock<std::mutex> lock{mutex_};
    wake_.wait_for(lock, delay, [this] { return closed_; });
  }

  /// Everything that waits, leaving the queue empty.
  std::deque<T> take_all() {
    std::deque<T> left;
    std::lock_guard<std::mutex> guard{mutex_};
    left.swap(items_);
    return left;
  }

private:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<T> items_; // guarded by mutex_
  bool closed_ = false; // guarded by mutex_
};

} // namespace rsv::persistence::pg
