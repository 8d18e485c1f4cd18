// Acknowledgements run on the section actor (issue 16): a store that answers
// from a thread of its own, as PostgreSQL's writers do, only posts its
// verdict; the change sink and the client's answer follow on the section,
// in commit order, and a section killed in between still answers what
// committed.

#include "actors/runtime.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"
#include "support/eventually.hpp"
#include "tests/actors/awaited.hpp"

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <gtest/gtest.h>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rsv::actors {
namespace {

using test_support::eventually;

constexpr millis start_ms = 1'800'000'000'000;

/// A store that answers on a thread of its own, and only when the test
/// releases what was queued: writes, section loads and hold reads in the
/// order they came (a load after the writes before it, as store.hpp asks).
/// A committed write goes to a holds-keeping memory store, which the loads
/// read. Durable, so that a restarted section reloads from it.
class gated_store final : public persistence::store {
public:
  gated_store() {
    worker_ = std::thread{[this] { run(); }};
  }
  ~gated_store() override { close(); }

  const char* name() const override { return "gated"; }
  bool durable() const override { return true; }
  void create_event(const event_def& def, std::vector<uint32_t> section_nos,
                    persistence::store_ack done,
                    write_fence fence = {}) override {
    inner_.create_event(def, std::move(section_nos), std::move(done), fence);
  }
  void create_customer(const customer_record& record,
                       persistence::store_ack done) override {
    inner_.create_customer(record, std::move(done));
  }
  void put_idempotency(const idempotency_record& record,
                       persistence::store_ack done) override {
    inner_.put_idempotency(record, std::move(done));
  }
  void append(const seat_change& change, persistence::store_ack done) override {
    queue([this, change, done](const caf::error& verdict) {
      if (verdict)
        done(verdict);
      else
        inner_.append(change, done);
    });
    writes_.fetch_add(1);
  }
  void load_section(uint32_t section_no,
                    persistence::section_loaded done) override {
    queue([this, section_no, done](const caf::error&) {
      inner_.load_section(section_no, done);
    });
  }
  void load_hold(uint32_t section_no, uint32_t slot,
                 persistence::hold_loaded done) override {
    queue([this, section_no, slot, done](const caf::error&) {
      inner_.load_hold(section_no, slot, done);
    });
  }
  service_state health() const override { return service_state::ok; }

  /// Answers the oldest `count` of what is queued (all by default), in
  /// order, on the store's thread: each write with `verdict` (empty:
  /// committed).
  void release(const caf::error& verdict = {},
               std::size_t count = static_cast<std::size_t>(-1)) {
    std::lock_guard<std::mutex> guard{mutex_};
    while (count-- > 0 && !queued_.empty()) {
      ready_.push_back(
          [step = std::move(queued_.front()), verdict] { step(verdict); });
      queued_.pop_front();
    }
    wake_.notify_one();
  }

  /// Writes appended so far, answered or not.
  int writes() const { return writes_.load(); }

  std::thread::id thread_id() const { return worker_.get_id(); }

  /// Answers what is queued unavailable and stops the thread; later calls
  /// are answered unavailable at once.
  void close() override {
    release(make_error(errc::unavailable, std::string{"closed"}));
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (stopping_) return;
      stopping_ = true;
    }
    wake_.notify_one();
    worker_.join();
  }

private:
  using step = std::function<void(const caf::error&)>;

  void queue(step s) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (!stopping_) {
        queued_.push_back(std::move(s));
        return;
      }
    }
    s(make_error(errc::unavailable, std::string{"closed"}));
  }

  void run() {
    std::unique_lock<std::mutex> lock{mutex_};
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
      if (ready_.empty()) return;
      auto next = std::move(ready_.front());
      ready_.pop_front();
      lock.unlock();
      next();
      lock.lock();
    }
  }

  persistence::memory_store inner_{true};
  std::atomic<int> writes_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<step> queued_;                 // guarded by mutex_
  std::deque<std::function<void()>> ready_; // guarded by mutex_
  bool stopping_ = false;                   // guarded by mutex_
  std::thread worker_;
};

/// Records the thread of every change it is told.
class thread_recording_sink final : public messaging::change_sink {
public:
  void publish(const seat_change&) override {
    std::lock_guard<std::mutex> guard{mutex_};
    threads_.push_back(std::this_thread::get_id());
  }
  std::vector<std::thread::id> threads() const {
    std::lock_guard<std::mutex> guard{mutex_};
    return threads_;
  }

private:
  mutable std::mutex mutex_;
  std::vector<std::thread::id> threads_;
};

class section_ack_test : public ::testing::Test {
protected:
  section_ack_test() {
    cfg.set("scheduler.max-threads", 2);
    system = std::make_unique<caf::actor_system>(cfg);
    deps.store = store;
    deps.sink = sink;
    deps.clock = std::make_shared<manual_clock>(start_ms);
    deps.metrics = domain_metrics::make_detached();
    rt = std::make_unique<runtime>(*system, deps, 2);
    event_def def;
    def.id = "concert";
    def.name = "Concert";
    def.hold_ttl_seconds = 60;
    def.sections.push_back({"floor", "Floor", 5000, {{"A", 50}}});
    awaited<std::shared_ptr<const event_entry>> created;
    caf::anon_send(rt->registry(),
                   create_event_request{std::move(def), created.fn()});
    auto event = created.wait().result;
    EXPECT_TRUE(event);
    if (event) floor = (*event)->find_section("floor");
  }

  ~section_ack_test() override {
    store->close();
    rt.reset();
    system.reset();
  }

  /// Sends a hold of `seat` to the floor; its answer comes to `reply`.
  void send_hold(const std::string& customer, const std::string& seat,
                 awaited<hold_view>& reply) {
    floor->count_request();
    caf::anon_send(floor->actor(),
                   hold_request{customer, {seat}, 0, false, reply.fn()});
  }

  replied<hold_view> get_hold(const std::string& customer,
                              const std::string& hold_id) {
    awaited<hold_view> reply;
    floor->count_request();
    caf::anon_send(
        floor->actor(),
        get_hold_request{customer, parse_hold_id(hold_id)->slot, reply.fn()});
    return reply.wait();
  }

  /// Whether the floor answers a request from memory (not stale).
  bool serves() {
    awaited<seat_map_snapshot> reply;
    floor->count_request();
    caf::anon_send(floor->actor(), seat_map_request{0, reply.fn()});
    return static_cast<bool>(reply.wait().result);
  }

  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> system;
  std::shared_ptr<gated_store> store = std::make_shared<gated_store>();
  std::shared_ptr<thread_recording_sink> sink =
      std::make_shared<thread_recording_sink>();
  runtime_deps deps;
  std::unique_ptr<runtime> rt;
  std::shared_ptr<section_entry> floor;
};

TEST_F(section_ack_test, the_answer_follows_the_commit_on_the_section) {
  ASSERT_TRUE(floor);
  awaited<hold_view> reply;
  send_hold("alice", "A-1", reply);
  ASSERT_TRUE(eventually([&] { return store->writes() == 1; }));
  // Not answered before the commit.
  EXPECT_EQ(reply.future.wait_for(std::chrono::milliseconds(0)),
            std::future_status::timeout);
  store->release();
  auto answered = reply.wait();
  ASSERT_TRUE(answered.result) << to_string(answered.result.error());
  // The store's thread only posted the verdict: neither the client's answer
  // nor the change sink ran on it.
  EXPECT_NE(answered.thread, store->thread_id());
  auto published = sink->threads();
  ASSERT_EQ(published.size(), 1u);
  EXPECT_NE(published[0], store->thread_id());
  EXPECT_EQ(deps.metrics->holds_created.Value(), 1);
}

TEST_F(section_ack_test, answers_come_in_commit_order) {
  ASSERT_TRUE(floor);
  constexpr int holds = 40;
  // Shared with the replies, which may outlive a failed test's body.
  struct answer_log {
    std::mutex mutex;
    std::vector<uint32_t> slots; // in the order answered
  };
  auto log = std::make_shared<answer_log>();
  for (int i = 0; i < holds; ++i) {
    floor->count_request();
    caf::anon_send(
        floor->actor(),
        hold_request{"alice",
                     {"A-" + std::to_string(i + 1)},
                     0,
                     false,
                     reply_fn<hold_view>{[log](caf::expected<hold_view> x) {
                       std::lock_guard<std::mutex> guard{log->mutex};
                       log->slots.push_back(x ? parse_hold_id(x->hold_id)->slot
                                              : 0);
                     }}});
  }
  ASSERT_TRUE(eventually([&] { return store->writes() == holds; }));
  store->release(); // one group commit of all of them
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> guard{log->mutex};
    return log->slots.size() == holds;
  }));
  // Slots number the holds in the order the section made (and the store
  // committed) them.
  std::lock_guard<std::mutex> guard{log->mutex};
  for (std::size_t i = 1; i < log->slots.size(); ++i)
    EXPECT_LT(log->slots[i - 1], log->slots[i]) << "answer " << i;
}

TEST_F(section_ack_test, a_failed_write_answers_503_and_makes_it_stale) {
  ASSERT_TRUE(floor);
  awaited<hold_view> reply;
  send_hold("alice", "A-1", reply);
  ASSERT_TRUE(eventually([&] { return store->writes() == 1; }));
  store->release(make_error(errc::unavailable, std::string{"refused"}));
  auto refused = reply.wait();
  ASSERT_FALSE(refused.result);
  EXPECT_EQ(code_of(refused.result.error()), errc::unavailable);
  EXPECT_NE(refused.thread, store->thread_id());
  EXPECT_TRUE(sink->threads().empty());
  EXPECT_EQ(deps.metrics->holds_created.Value(), 0);
  // Stale, its reload queued in the store: every request is answered 503
  // rather than from memory, and writes nothing.
  awaited<hold_view> other;
  send_hold("bob", "A-2", other);
  EXPECT_EQ(code_of(other.wait().result.error()), errc::unavailable);
  EXPECT_FALSE(serves());
  EXPECT_EQ(store->writes(), 1);
  // Once the reload is answered the section serves again, with A-1 free
  // as the store has it.
  ASSERT_TRUE(eventually([&] {
    store->release(); // the reload, once the section has asked for it
    return serves();
  }));
  awaited<hold_view> again;
  send_hold("bob", "A-1", again);
  ASSERT_TRUE(eventually([&] { return store->writes() == 2; }));
  store->release();
  EXPECT_TRUE(again.wait().result);
}

TEST_F(section_ack_test, a_section_killed_before_its_acks_still_answers) {
  ASSERT_TRUE(floor);
  awaited<hold_view> committed;
  send_hold("alice", "A-1", committed);
  awaited<hold_view> refused;
  send_hold("bob", "A-2", refused);
  ASSERT_TRUE(eventually([&] { return store->writes() == 2; }));
  auto first = floor->actor();
  ASSERT_TRUE(kill_section(*floor, *deps.metrics));
  ASSERT_TRUE(eventually([&] { return floor->actor() != first; }));
  // The section that made the writes is gone: each outcome is answered
  // where its message dies. The first commits: 2xx, and the change sink
  // hears of it.
  store->release({}, 1);
  auto held = committed.wait();
  ASSERT_TRUE(held.result) << to_string(held.result.error());
  EXPECT_EQ(sink->threads().size(), 1u);
  EXPECT_EQ(deps.metrics->holds_created.Value(), 1);
  // The second fails: 503, never success.
  store->release(make_error(errc::unavailable, std::string{"refused"}), 1);
  auto lost = refused.wait();
  ASSERT_FALSE(lost.result);
  EXPECT_EQ(code_of(lost.result.error()), errc::unavailable);
  EXPECT_EQ(sink->threads().size(), 1u);
  // The next incarnation reloads after both writes: it serves the
  // committed hold, and A-2 is free.
  ASSERT_TRUE(eventually([&] {
    store->release(); // the reload, once the section has asked for it
    return serves();
  }));
  auto read = get_hold("alice", held.result->hold_id).result;
  ASSERT_TRUE(read);
  EXPECT_EQ(read->status, hold_status::active);
  EXPECT_EQ(floor->counts().held, 1u);
}

} // namespace
} // namespace rsv::actors
