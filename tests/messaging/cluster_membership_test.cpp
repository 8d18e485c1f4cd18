// cluster_membership against rsv-kafka-broker's group coordinator: every
// partition of the ownership topic has exactly one owner, a newcomer takes
// partitions without survivors losing the ones they keep (cooperative-
// sticky), and the partitions of a member that leaves, or crashes, go to the
// others. Every wait is for a condition with a deadline.

#include "child_process.hpp"
#include "core/limits.hpp"
#include "messaging/cluster_membership.hpp"

#include <algorithm>
#include <functional>
#include <gtest/gtest.h>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace rsv::messaging::test {
namespace {

using steady = std::chrono::steady_clock;

const std::string topic = "rsv-owners";
constexpr uint32_t partition_count = 8;
// Short, so that a crash is noticed within seconds; the heartbeat well
// inside it, as Kafka advises (a third or less).
constexpr int session_timeout_ms = 3000;
constexpr int heartbeat_interval_ms = 300;

/// Waits until `condition` holds, at most `deadline`; true when it does.
/// The short pause between checks is a poll interval, not a
/// synchronisation.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline) {
  auto until = steady::now() + deadline;
  while (!condition()) {
    if (steady::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::string describe(const std::vector<uint32_t>& partitions) {
  std::ostringstream text;
  text << '[';
  for (std::size_t i = 0; i < partitions.size(); ++i)
    text << (i == 0 ? "" : ",") << partitions[i];
  text << ']';
  return text.str();
}

/// One in-process member and what its handlers saw, in order.
class member {
public:
  member(const std::string& bootstrap, std::string name)
      : name_(std::move(name)),
        registry_(std::make_shared<prometheus::Registry>()) {
    membership_config config;
    config.brokers = bootstrap;
    config.client_id = name_;
    config.session_timeout_ms = session_timeout_ms;
    config.heartbeat_interval_ms = heartbeat_interval_ms;
    membership_handlers handlers;
    handlers.assigned = [this](std::vector<uint32_t> p) {
      record("assigned", std::move(p));
    };
    handlers.revoked = [this](std::vector<uint32_t> p) {
      record("revoked", std::move(p));
    };
    handlers.lost = [this](std::vector<uint32_t> p) {
      record("lost", std::move(p));
    };
    membership_ = std::make_unique<cluster_membership>(
        std::move(config), std::move(handlers), registry_);
    membership_->start();
  }

  cluster_membership& membership() { return *membership_; }
  const std::string& name() const { return name_; }
  std::vector<uint32_t> owned() const { return membership_->owned(); }

  /// The partitions of every callback of `kind` from event `from` on.
  std::set<uint32_t> seen(const std::string& kind, std::size_t from = 0) {
    std::lock_guard<std::mutex> guard{mutex_};
    std::set<uint32_t> partitions;
    for (std::size_t i = from; i < events_.size(); ++i)
      if (events_[i].first == kind)
        partitions.insert(events_[i].second.begin(), events_[i].second.end());
    return partitions;
  }
  std::size_t event_count() {
    std::lock_guard<std::mutex> guard{mutex_};
    return events_.size();
  }
  std::string history() {
    std::lock_guard<std::mutex> guard{mutex_};
    std::string text = name_ + ":";
    for (const auto& [kind, partitions] : events_)
      text += " " + kind + describe(partitions);
    return text;
  }

private:
  void record(const char* kind, std::vector<uint32_t> partitions) {
    std::lock_guard<std::mutex> guard{mutex_};
    events_.emplace_back(kind, std::move(partitions));
  }

  std::string name_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mutex_;
  std::vector<std::pair<std::string, std::vector<uint32_t>>> events_;
  std::unique_ptr<cluster_membership> membership_;
};

/// True when the assignments cover every partition exactly once and each
/// named one owns at least one.
bool exactly_once(const std::vector<std::vector<uint32_t>>& assignments,
                  bool each_owns_some = true) {
  std::vector<int> owners(partition_count, 0);
  for (const auto& owned : assignments) {
    if (each_owns_some && owned.empty()) return false;
    for (auto partition : owned) {
      if (partition >= partition_count) return false;
      ++owners[partition];
    }
  }
  return std::all_of(owners.begin(), owners.end(),
                     [](int n) { return n == 1; });
}

std::vector<std::vector<uint32_t>>
assignments(const std::vector<member*>& members) {
  std::vector<std::vector<uint32_t>> all;
  for (auto* m : members)
    all.push_back(m->owned());
  return all;
}

std::string describe(const std::vector<member*>& members) {
  std::string text;
  for (auto* m : members)
    text += m->history() + " | owns " + describe(m->owned()) + "\n";
  return text;
}

/// A broker per test with the ownership topic; its log is printed when the
/// test failed.
class cluster_membership_test : public ::testing::Test {
protected:
  void SetUp() override {
    broker_ = std::make_unique<broker_process>(std::vector<std::string>{
        "--topic", topic + ":" + std::to_string(partition_count)});
  }

  void TearDown() override {
    members_.clear(); // leave the group before the broker goes
    if (HasFailure()) std::cerr << "broker log:\n" << broker_->log();
    broker_->stop(5s);
  }

  member& add(const std::string& name) {
    members_.push_back(std::make_unique<member>(broker_->bootstrap(), name));
    return *members_.back();
  }

  std::vector<member*> all_members() {
    std::vector<member*> all;
    for (auto& m : members_)
      all.push_back(m.get());
    return all;
  }

  std::unique_ptr<broker_process> broker_;
  std::vector<std::unique_ptr<member>> members_;
};

// The mock's coordinator waits 3 s for more members after the first join
// and session.timeout.ms - 1 s after any later one, and cooperative-sticky
// needs a second round when partitions move: rounds take seconds.
constexpr auto settle_deadline = 40s;

TEST_F(cluster_membership_test, one_member_gets_every_partition) {
  auto& only = add("node-a");
  ASSERT_TRUE(wait_until([&] { return only.owned().size() == partition_count; },
                         settle_deadline))
      << describe(all_members());
  std::vector<uint32_t> all(partition_count);
  for (uint32_t p = 0; p < partition_count; ++p)
    all[p] = p;
  EXPECT_EQ(only.owned(), all);
  EXPECT_EQ(only.seen("assigned"), std::set<uint32_t>(all.begin(), all.end()));
  EXPECT_GE(only.membership().rebalances(), 1u);
  EXPECT_TRUE(wait_until(
      [&] {
        return only.membership().topic_partitions() ==
               static_cast<int>(partition_count);
      },
      10s))
      << "topic_partitions() " << only.membership().topic_partitions();
  EXPECT_TRUE(wait_until(
      [&] { return only.membership().health() == service_state::ok; }, 10s));

  // A clean stop revokes everything through the callback.
  only.membership().stop();
  EXPECT_TRUE(only.owned().empty());
  EXPECT_EQ(only.seen("revoked"), std::set<uint32_t>(all.begin(), all.end()))
      << only.history();
  EXPECT_EQ(only.membership().health(), service_state::down);
  only.membership().stop(); // idempotent
}

TEST_F(cluster_membership_test, three_members_own_each_partition_once) {
  add("node-a");
  add("node-b");
  add("node-c");
  EXPECT_TRUE(
      wait_until([&] { return exactly_once(assignments(all_members())); },
                 settle_deadline))
      << describe(all_members());
}

TEST_F(cluster_membership_test, a_newcomer_takes_partitions_survivors_keep) {
  auto& a = add("node-a");
  auto& b = add("node-b");
  auto& c = add("node-c");
  std::vector<member*> survivors{&a, &b, &c};
  ASSERT_TRUE(wait_until([&] { return exactly_once(assignments(survivors)); },
                         settle_deadline))
      << describe(survivors);
  auto before = assignments(survivors);
  std::vector<std::size_t> events_before;
  for (auto* m : survivors)
    events_before.push_back(m->event_count());

  auto& d = add("node-d");
  auto everyone = all_members();
  ASSERT_TRUE(wait_until([&] { return exactly_once(assignments(everyone)); },
                         settle_deadline))
      << describe(everyone);

  std::size_t moved = d.owned().size();
  for (std::size_t i = 0; i < survivors.size(); ++i) {
    auto now = survivors[i]->owned();
    std::set<uint32_t> had(before[i].begin(), before[i].end());
    for (auto partition : now)
      EXPECT_TRUE(had.count(partition) == 1)
          << survivors[i]->name() << " gained partition " << partition
          << ": only the newcomer should\n"
          << describe(everyone);
    // Nothing a survivor still owns was revoked and given back.
    auto revoked = survivors[i]->seen("revoked", events_before[i]);
    auto assigned = survivors[i]->seen("assigned", events_before[i]);
    for (auto partition : revoked)
      EXPECT_EQ(assigned.count(partition), 0u)
          << survivors[i]->name() << " had partition " << partition
          << " revoked and given back\n"
          << describe(everyone);
    EXPECT_TRUE(survivors[i]->seen("lost", events_before[i]).empty());
  }
  EXPECT_LE(moved, partition_count / 2)
      << "at least half of the partitions stay where they were\n"
      << describe(everyone);
}

TEST_F(cluster_membership_test, a_member_that_stops_hands_its_partitions_on) {
  auto& a = add("node-a");
  auto& b = add("node-b");
  auto& leaver = add("node-c");
  ASSERT_TRUE(
      wait_until([&] { return exactly_once(assignments(all_members())); },
                 settle_deadline))
      << describe(all_members());
  auto leaving = leaver.owned();

  auto started = steady::now();
  leaver.membership().stop();
  EXPECT_TRUE(leaver.owned().empty());
  auto revoked = leaver.seen("revoked");
  for (auto partition : leaving)
    EXPECT_EQ(revoked.count(partition), 1u)
        << "partition " << partition << " left without a revocation\n"
        << leaver.history();
  std::vector<member*> survivors{&a, &b};
  ASSERT_TRUE(wait_until([&] { return exactly_once(assignments(survivors)); },
                         settle_deadline))
      << describe(all_members());
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      steady::now() - started);
  std::cout << "after a clean leave the survivors owned every partition in "
            << took.count() << " ms (session timeout " << session_timeout_ms
            << " ms)\n";
  // LeaveGroup starts the rebalance at once, but the mock's coordinator
  // waits session.timeout.ms - 1 s in each round, and here the freed
  // partitions came over in up to three rounds (about 6 s): bound it by
  // four session timeouts rather than by what a real broker would take.
  EXPECT_LT(took, std::chrono::milliseconds(4 * session_timeout_ms))
      << describe(all_members());
}

/// A member in a process of its own (rsv-membership-member): its owned
/// partitions are its last `owned=` line.
class child_member {
public:
  child_member(const std::string& bootstrap, const std::string& name)
      : process_({RSV_MEMBERSHIP_MEMBER, bootstrap, name,
                  std::to_string(session_timeout_ms),
                  std::to_string(heartbeat_interval_ms)},
                 "started", 10s) {}

  /// Reads what the child printed so far (waiting at most `wait`).
  std::vector<uint32_t> owned(std::chrono::milliseconds wait = 0ms) {
    while (auto line = process_.next_line(wait)) {
      wait = 0ms;
      if (line->rfind("owned=", 0) != 0) continue;
      owned_.clear();
      std::istringstream list(line->substr(6));
      for (std::string item; std::getline(list, item, ',');)
        if (!item.empty()) owned_.push_back(std::stoul(item));
    }
    return owned_;
  }

  line_process& process() { return process_; }

private:
  line_process process_;
  std::vector<uint32_t> owned_;
};

TEST_F(cluster_membership_test, a_crashed_members_partitions_move_on) {
  auto& a = add("node-a");
  auto& b = add("node-b");
  child_member crashing{broker_->bootstrap(), "node-crash"};
  std::vector<member*> survivors{&a, &b};
  ASSERT_TRUE(wait_until(
      [&] {
        auto all = assignments(survivors);
        all.push_back(crashing.owned(10ms));
        return exactly_once(all);
      },
      settle_deadline))
      << describe(survivors) << "child owns " << describe(crashing.owned())
      << "\nchild log:\n"
      << crashing.process().log();

  // SIGKILL: no LeaveGroup, no revocation; the coordinator notices only
  // when the session times out.
  auto started = steady::now();
  EXPECT_EQ(crashing.process().stop(5s, SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(wait_until([&] { return exactly_once(assignments(survivors)); },
                         settle_deadline))
      << describe(survivors);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      steady::now() - started);
  std::cout << "after a crash (SIGKILL) the survivors owned every partition in "
            << took.count() << " ms (session timeout " << session_timeout_ms
            << " ms)\n";
  // At least the session timeout: before it the coordinator cannot know.
  EXPECT_GE(took, std::chrono::milliseconds(session_timeout_ms - 1000));
  for (auto* m : survivors)
    EXPECT_TRUE(m->seen("lost").empty()) << m->history();
}

} // namespace
} // namespace rsv::messaging::test
