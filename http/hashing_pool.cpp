#include "http/hashing_pool.hpp"

#include "core/assert.hpp"
#include "core/limits.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/resource.h>
#include <unistd.h>

namespace rsv::http {

hashing_pool::hashing_pool(std::size_t threads, std::size_t queue_max,
                           prometheus::Registry* registry)
    : queue_max_(queue_max) {
  RSV_ASSERT(threads >= 1, "a hashing pool has at least one thread");
  if (registry) {
    auto& jobs = prometheus::BuildCounter()
                     .Name("rsv_password_jobs_total")
                     .Help("Password hashes and checks by outcome: run, late "
                           "(deadline passed while queued: not hashed) or "
                           "refused (queue full: answered 503 at once)")
                     .Register(*registry);
    run_ = &jobs.Add({{"outcome", "run"}});
    late_ = &jobs.Add({{"outcome", "late"}});
    refused_ = &jobs.Add({{"outcome", "refused"}});
    waiting_ = &prometheus::BuildGauge()
                    .Name("rsv_password_jobs_waiting")
                    .Help("Password hashes and checks waiting for a thread")
                    .Register(*registry)
                    .Add({});
  }
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] { run(); });
}

hashing_pool::~hashing_pool() {
  stop();
}

bool hashing_pool::submit(clock::time_point deadline, job work) {
  {
    std::lock_guard lock{mutex_};
    if (!stopping_ && queue_.size() < queue_max_) {
      queue_.push_back({deadline, std::move(work)});
      if (waiting_) waiting_->Set(static_cast<double>(queue_.size()));
      wake_.notify_one();
      return true;
    }
  }
  if (refused_) refused_->Increment();
  return false;
}

void hashing_pool::stop() {
  {
    std::lock_guard lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

bool hashing_pool::stopping() const {
  std::lock_guard lock{mutex_};
  return stopping_;
}

void hashing_pool::run() {
  // Lower than the I/O and actor threads: on Linux a thread has its own
  // nice value. Raising it needs no privilege; failing is harmless.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()),
              limits::password_hash_nice);
  for (;;) {
    queued next;
    bool stopping = false;
    {
      std::unique_lock lock{mutex_};
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return; // stopping, nothing left
      next = std::move(queue_.front());
      queue_.pop_front();
      stopping = stopping_;
      if (waiting_) waiting_->Set(static_cast<double>(queue_.size()));
    }
    bool late = stopping || clock::now() >= next.deadline;
    if (auto* counter = late ? late_ : run_) counter->Increment();
    next.work(late);
  }
}

} // namespace rsv::http
