#include "actors/runtime.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/partition.hpp"
#include "support/eventually.hpp"
#include "tests/actors/awaited.hpp"

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <future>
#include <gtest/gtest.h>

namespace rsv::actors {
namespace {

using test_support::eventually;

constexpr millis start_ms = 1'800'000'000'000;

/// Forwards to a memory store and counts the section loads it has answered
/// (the memory store answers in the call), so that a test that saw a load
/// counted while the store was failing knows that the load failed.
class load_counting_store final : public persistence::store {
public:
  explicit load_counting_store(std::shared_ptr<persistence::memory_store> inner)
      : inner_(std::move(inner)) {}
  const char* name() const override { return inner_->name(); }
  bool durable() const override { return pretend_durable || inner_->durable(); }
  /// Makes a restarted section reload from the (holds-keeping) memory store,
  /// as it would from PostgreSQL, instead of serving on from its memory.
  bool pretend_durable = false;
  void create_event(const event_def& def, std::vector<uint32_t> section_nos,
                    persistence::store_ack done,
                    write_fence fence = {}) override {
    inner_->create_event(def, std::move(section_nos), std::move(done), fence);
  }
  void create_customer(const customer_record& record,
                       persistence::store_ack done) override {
    inner_->create_customer(record, std::move(done));
  }
  void append(const seat_change& change, persistence::store_ack done) override {
    inner_->append(change, std::move(done));
  }
  void put_idempotency(const idempotency_record& record,
                       persistence::store_ack done) override {
    inner_->put_idempotency(record, std::move(done));
  }
  void load_section(uint32_t section_no,
                    persistence::section_loaded done) override {
    inner_->load_section(section_no, std::move(done));
    loads_.fetch_add(1);
  }
  void load_hold(uint32_t section_no, uint32_t slot,
                 persistence::hold_loaded done) override {
    inner_->load_hold(section_no, slot, std::move(done));
  }
  service_state health() const override { return inner_->health(); }

  int loads() const { return loads_.load(); }

private:
  std::shared_ptr<persistence::memory_store> inner_;
  std::atomic<int> loads_{0};
};

/// A node's actors against the memory store (its loads counted) with a manual
/// clock.
class section_actor_test : public ::testing::Test {
protected:
  section_actor_test() {
    cfg.set("scheduler.max-threads", 2);
    system = std::make_unique<caf::actor_system>(cfg);
    deps.store = counted;
    deps.sink = sink;
    deps.clock = clock;
    deps.metrics = domain_metrics::make_detached();
    rt = std::make_unique<runtime>(*system, deps, 4);
  }

  ~section_actor_test() override {
    rt.reset();
    system.reset();
  }

  std::shared_ptr<const event_entry> create_event(event_def def) {
    awaited<std::shared_ptr<const event_entry>> reply;
    caf::anon_send(rt->registry(),
                   create_event_request{std::move(def), reply.fn()});
    auto result = reply.get();
    EXPECT_TRUE(result) << to_string(result.error());
    return result ? *result : nullptr;
  }

  static event_def two_sections(std::optional<int64_t> limit) {
    event_def def;
    def.id = "concert";
    def.name = "Concert";
    def.hold_ttl_seconds = 60;
    def.max_seats_per_customer = limit;
    def.sections.push_back({"floor", "Floor", 5000, {{"A", 10}, {"B", 10}}});
    def.sections.push_back({"balcony", "Balcony", 2000, {{"A", 10}}});
    return def;
  }

  caf::expected<hold_view> hold(const event_entry& event,
                                const std::string& section_id,
                                const std::string& customer,
                                std::vector<std::string> seats,
                                uint32_t quantity = 0) {
    auto section = event.find_section(section_id);
    awaited<hold_view> reply;
    section->count_request();
    hold_request req{customer, std::move(seats), quantity, false, reply.fn()};
    if (event.def.max_seats_per_customer)
      caf::anon_send(rt->shard_for(customer),
                     reserve_quota_request{event.def.id,
                                           *event.def.max_seats_per_customer,
                                           section, std::move(req)});
    else
      caf::anon_send(section->actor(), std::move(req));
    return reply.get();
  }

  template <class Request, class T>
  caf::expected<T> ask_section(const std::string& id, Request req,
                               awaited<T>& reply) {
    auto ref = parse_hold_id(id);
    if (!ref) ref = parse_booking_id(id);
    auto section = rt->dir().find_section(ref->section_no);
    section->count_request();
    req.slot = ref->slot;
    req.reply = reply.fn();
    caf::anon_send(section->actor(), std::move(req));
    return reply.get();
  }

  caf::expected<booking_view> book(const std::string& customer,
                                   const std::string& hold_id) {
    awaited<booking_view> reply;
    return ask_section(hold_id, book_request{customer, 0, {}}, reply);
  }

  caf::expected<hold_view> get_hold(const std::string& customer,
                                    const std::string& hold_id) {
    awaited<hold_view> reply;
    return ask_section(hold_id, get_hold_request{customer, 0, {}}, reply);
  }

  caf::expected<hold_view> release(const std::string& customer,
                                   const std::string& hold_id) {
    awaited<hold_view> reply;
    return ask_section(hold_id, release_hold_request{customer, 0, {}}, reply);
  }

  caf::expected<booking_view> cancel(const std::string& customer,
                                     const std::string& booking_id) {
    awaited<booking_view> reply;
    return ask_section(booking_id, cancel_booking_request{customer, 0, {}},
                       reply);
  }

  std::vector<booking_view> bookings_of(const std::string& customer) {
    awaited<std::vector<booking_view>> reply;
    caf::anon_send(rt->shard_for(customer),
                   list_bookings_request{customer, reply.fn()});
    auto result = reply.get();
    EXPECT_TRUE(result);
    return result ? *result : std::vector<booking_view>{};
  }

  /// The timer fires in real time; tests move the clock and send the tick.
  void tick(const event_entry& event) {
    for (const auto& section : event.sections)
      caf::anon_send(section->actor(), expire_tick_atom::value);
  }

  idempotency_decision begin(const std::string& customer,
                             const std::string& key,
                             const std::string& fingerprint) {
    awaited<idempotency_decision> reply;
    caf::anon_send(rt->shard_for(customer),
                   idempotency_begin{customer, key, fingerprint, reply.fn()});
    auto result = reply.get();
    EXPECT_TRUE(result);
    return result ? *result : idempotency_decision{};
  }

  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> system;
  // Keeps holds, so that a section can reload from it after a failure.
  std::shared_ptr<persistence::memory_store> store =
      std::make_shared<persistence::memory_store>(true);
  std::shared_ptr<load_counting_store> counted =
      std::make_shared<load_counting_store>(store);
  std::shared_ptr<messaging::counting_change_sink> sink =
      std::make_shared<messaging::counting_change_sink>();
  std::shared_ptr<manual_clock> clock =
      std::make_shared<manual_clock>(start_ms);
  runtime_deps deps;
  std::unique_ptr<runtime> rt;
};

TEST_F(section_actor_test, events_are_routed_and_counted) {
  auto event = create_event(two_sections(std::nullopt));
  ASSERT_TRUE(event);
  EXPECT_EQ(rt->dir().find_event("concert"), event);
  EXPECT_EQ(event->seat_count(), 30u);
  awaited<std::shared_ptr<const event_entry>> again;
  caf::anon_send(rt->registry(),
                 create_event_request{two_sections(std::nullopt), again.fn()});
  EXPECT_EQ(code_of(again.get().error()), errc::event_exists);
}

TEST_F(section_actor_test, hold_book_cancel_through_the_actor) {
  auto event = create_event(two_sections(std::nullopt));
  auto held = hold(*event, "floor", "alice", {"A-1", "A-2"});
  ASSERT_TRUE(held);
  EXPECT_EQ(event->find_section("floor")->counts().held, 2u);
  auto lost = hold(*event, "floor", "bob", {"A-2", "A-3"});
  ASSERT_FALSE(lost);
  EXPECT_EQ(code_of(lost.error()), errc::seats_unavailable);

  auto booked = book("alice", held->hold_id);
  ASSERT_TRUE(booked);
  EXPECT_EQ(booked->total_cents, 10000);
  EXPECT_EQ(event->find_section("floor")->counts().booked, 2u);
  auto listed = bookings_of("alice");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].booking_id, booked->booking_id);

  auto cancelled = cancel("alice", booked->booking_id);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->status, booking_status::cancelled);
  EXPECT_EQ(event->find_section("floor")->counts().free, 20u);
  EXPECT_EQ(bookings_of("alice").at(0).status, booking_status::cancelled);
  EXPECT_EQ(sink->count(change_kind::hold_created), 1u);
  EXPECT_EQ(sink->count(change_kind::booking_confirmed), 1u);
  EXPECT_EQ(sink->count(change_kind::booking_cancelled), 1u);
}

TEST_F(section_actor_test, holds_expire_when_the_clock_passes_their_ttl) {
  auto event = create_event(two_sections(std::nullopt));
  auto held = hold(*event, "balcony", "alice", {}, 3);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->seats, (std::vector<std::string>{"A-1", "A-2", "A-3"}));
  clock->advance_ms(59'999);
  tick(*event);
  EXPECT_EQ(get_hold("alice", held->hold_id)->status, hold_status::active);
  clock->advance_ms(1);
  tick(*event);
  auto balcony = event->find_section("balcony");
  ASSERT_TRUE(eventually([&] { return balcony->counts().free == 10; }));
  EXPECT_EQ(get_hold("alice", held->hold_id)->status, hold_status::expired);
  EXPECT_EQ(sink->count(change_kind::hold_expired), 1u);
  auto late = book("alice", held->hold_id);
  EXPECT_EQ(code_of(late.error()), errc::hold_expired);
}

TEST_F(section_actor_test, the_customer_limit_spans_sections_and_comes_back) {
  auto event = create_event(two_sections(4));
  auto floor = hold(*event, "floor", "alice", {"A-1", "A-2", "A-3"});
  ASSERT_TRUE(floor);
  auto over = hold(*event, "balcony", "alice", {"A-1", "A-2"});
  ASSERT_FALSE(over);
  EXPECT_EQ(code_of(over.error()), errc::limit_exceeded);
  EXPECT_EQ(event->find_section("balcony")->counts().held, 0u);
  // Others are not limited by alice.
  ASSERT_TRUE(hold(*event, "balcony", "bob", {"A-1", "A-2", "A-3", "A-4"}));
  // A failed hold gives its quota back...
  auto taken = hold(*event, "balcony", "alice", {"A-1"});
  EXPECT_EQ(code_of(taken.error()), errc::seats_unavailable);
  ASSERT_TRUE(hold(*event, "balcony", "alice", {"A-5"}));
  // ...and so does a released hold (after the store acknowledged it).
  ASSERT_TRUE(release("alice", floor->hold_id));
  ASSERT_TRUE(eventually([&] {
    return static_cast<bool>(hold(*event, "balcony", "alice", {"A-6", "A-7"}));
  }));
  auto fifth = hold(*event, "floor", "alice", {"B-1", "B-2"});
  EXPECT_EQ(code_of(fifth.error()), errc::limit_exceeded);
}

TEST_F(section_actor_test, a_store_failure_is_never_reported_as_success) {
  auto event = create_event(two_sections(std::nullopt));
  store->set_failing(true);
  auto held = hold(*event, "floor", "alice", {"A-1"});
  ASSERT_FALSE(held);
  EXPECT_EQ(code_of(held.error()), errc::unavailable);
  EXPECT_EQ(sink->count(change_kind::hold_created), 0u);
  store->set_failing(false);
  awaited<std::shared_ptr<const event_entry>> reply;
  store->set_failing(true);
  auto def = two_sections(std::nullopt);
  def.id = "another";
  caf::anon_send(rt->registry(), create_event_request{def, reply.fn()});
  EXPECT_EQ(code_of(reply.get().error()), errc::unavailable);
  EXPECT_FALSE(rt->dir().find_event("another"));
}

TEST_F(section_actor_test, a_failed_write_makes_the_section_reload_the_store) {
  auto event = create_event(two_sections(3));
  auto floor = event->find_section("floor");
  ASSERT_TRUE(hold(*event, "floor", "alice", {"A-1"}));
  auto bobs = hold(*event, "floor", "bob", {"A-5"});
  ASSERT_TRUE(bobs);
  auto booking = book("bob", bobs->hold_id);
  ASSERT_TRUE(booking);

  store->set_failing(true);
  // Applied in memory, refused by the store: the client hears 503...
  auto lost = hold(*event, "floor", "alice", {"A-2"});
  EXPECT_EQ(code_of(lost.error()), errc::unavailable);
  auto not_cancelled = cancel("bob", booking->booking_id);
  EXPECT_EQ(code_of(not_cancelled.error()), errc::unavailable);
  // ...and until the store answers, the section answers 503 to everyone
  // rather than tell what the store may not have.
  EXPECT_EQ(code_of(get_hold("alice", bobs->hold_id).error()),
            errc::unavailable);
  EXPECT_EQ(code_of(hold(*event, "floor", "carol", {"A-3"}).error()),
            errc::unavailable);

  store->set_failing(false);
  // The reload brings back what the store has: A-2 free, bob's booking.
  ASSERT_TRUE(eventually([&] {
    return static_cast<bool>(hold(*event, "floor", "carol", {"A-2"}));
  }));
  auto kept = book("bob", bobs->hold_id); // booking again is not a change
  EXPECT_EQ(code_of(kept.error()), errc::hold_booked);
  auto listed = bookings_of("bob");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].status, booking_status::confirmed);
  EXPECT_EQ(floor->counts().held, 2u);   // alice's A-1 and carol's A-2
  EXPECT_EQ(floor->counts().booked, 1u); // bob's A-5
  EXPECT_EQ(floor->counts().free, 17u);
  // alice's limit (3) counts only what the store has: A-1, then two more.
  ASSERT_TRUE(hold(*event, "floor", "alice", {"B-1", "B-2"}));
  EXPECT_EQ(code_of(hold(*event, "balcony", "alice", {"A-9"}).error()),
            errc::limit_exceeded);
}

TEST_F(section_actor_test, a_stale_section_gives_back_the_seats_it_refuses) {
  auto event = create_event(two_sections(3));
  auto floor = event->find_section("floor");
  store->set_failing(true);
  EXPECT_EQ(code_of(hold(*event, "floor", "alice", {"A-1"}).error()),
            errc::unavailable);
  // Stale now: each hold is refused, and its seats no longer count against
  // carol's limit of 3, or the second would be over it.
  for (int attempt = 0; attempt < 3; ++attempt)
    EXPECT_EQ(
        code_of(hold(*event, "floor", "carol", {"B-1", "B-2", "B-3"}).error()),
        errc::unavailable);
  store->set_failing(false);
  ASSERT_TRUE(eventually([&] {
    return static_cast<bool>(
        hold(*event, "floor", "carol", {"B-1", "B-2", "B-3"}));
  }));
  EXPECT_EQ(floor->counts().held, 3u);
  // Every request sent was taken from the mailbox, refused or not.
  EXPECT_EQ(floor->requests_waiting(), 0);
}

TEST_F(section_actor_test, an_idle_stale_section_reloads_on_its_timer) {
  auto event = create_event(two_sections(std::nullopt));
  auto floor = event->find_section("floor");
  ASSERT_TRUE(hold(*event, "floor", "alice", {"A-1"}));
  store->set_failing(true);
  EXPECT_EQ(code_of(hold(*event, "floor", "bob", {"A-2"}).error()),
            errc::unavailable);
  // Memory counted bob's A-2 before the store refused it; the section's
  // own load after the failure is refused too.
  EXPECT_EQ(floor->counts().held, 2u);
  ASSERT_TRUE(eventually([&] { return counted->loads() >= 1; }));
  store->set_failing(false);
  // Nobody asks the section, yet within its backoff (at most a second) it
  // reloads and publishes the counts the store has: alice's A-1 only.
  ASSERT_TRUE(eventually([&] { return floor->counts().held == 1; }));
}

/// The actors with a reload timer of a minute, far beyond the tests'
/// deadlines: a stale section that comes back within them was brought back
/// by a request, not by the timer.
class section_actor_reload_test : public section_actor_test {
protected:
  section_actor_reload_test() {
    rt.reset();
    deps.reload.backoff_first_ms = 60'000;
    deps.reload.backoff_max_ms = 60'000;
    rt = std::make_unique<runtime>(*system, deps, 4);
  }

  caf::expected<seat_map_view> seat_map_of(const event_entry& event,
                                           const std::string& section_id) {
    auto section = event.find_section(section_id);
    awaited<seat_map_snapshot> reply;
    section->count_request();
    caf::anon_send(section->actor(), seat_map_request{0, reply.fn()});
    auto snapshot = reply.get();
    if (!snapshot) return snapshot.error();
    return std::move(*snapshot->map);
  }

  /// Makes floor stale: a hold the store refuses, and the section's own
  /// load after it refused too.
  void make_floor_stale(const event_entry& event) {
    store->set_failing(true);
    auto refused = hold(event, "floor", "bob", {"A-2"});
    ASSERT_EQ(code_of(refused.error()), errc::unavailable);
    ASSERT_TRUE(eventually([&] { return counted->loads() >= 1; }));
  }
};

TEST_F(section_actor_reload_test,
       a_request_brings_a_stale_section_back_at_once) {
  auto event = create_event(two_sections(std::nullopt));
  ASSERT_TRUE(hold(*event, "floor", "alice", {"A-1"}));
  make_floor_stale(*event);
  if (HasFatalFailure()) return;
  store->set_failing(false);

  // The store is back, but only the timer (a minute away) or a request can
  // tell the section. The request that finds it stale is answered 503 at
  // once rather than held until the reload it starts.
  auto first = seat_map_of(*event, "floor");
  ASSERT_FALSE(first);
  EXPECT_EQ(code_of(first.error()), errc::unavailable);
  // Within the deadline, far from the minute of the timer, requests bring
  // it back, with what the store has: alice's A-1, not bob's refused A-2.
  caf::expected<seat_map_view> map = first;
  ASSERT_TRUE(eventually([&] {
    map = seat_map_of(*event, "floor");
    return static_cast<bool>(map);
  })) << "the section still answers "
      << to_string(map.error());
  EXPECT_EQ(map->statuses.at(0), seat_status::held);
  EXPECT_EQ(map->statuses.at(1), seat_status::free);
  EXPECT_EQ(event->find_section("floor")->counts().held, 1u);
  ASSERT_TRUE(hold(*event, "floor", "carol", {"A-2"}));
}

TEST_F(section_actor_reload_test, requests_do_not_hammer_a_store_that_is_down) {
  auto event = create_event(two_sections(std::nullopt));
  auto started = std::chrono::steady_clock::now();
  make_floor_stale(*event);
  if (HasFatalFailure()) return;
  // Requests as fast as the section answers them (503) retry the load, with
  // the timer a minute away...
  int requests = 0;
  ASSERT_TRUE(eventually([&] {
    ++requests;
    EXPECT_EQ(code_of(seat_map_of(*event, "floor").error()), errc::unavailable);
    return counted->loads() >= 4;
  })) << counted->loads()
      << " loads for " << requests << " requests";
  // ...but each load starts 100 ms or more after the last one failed, so
  // however fast the requests came there is at most one load per 100 ms.
  auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
  EXPECT_LE(counted->loads(), 1 + elapsed_ms / deps.reload.request_gap_ms)
      << requests << " requests in " << elapsed_ms << " ms";
  EXPECT_GT(requests, counted->loads()) << "the requests were not faster";
  // Other sections never wrote, so they neither load nor refuse.
  EXPECT_TRUE(seat_map_of(*event, "balcony"));
}

// Two bookings of one millisecond must list in one order whichever section
// answered first and whether the list was built live or read back at a
// restart: a client comparing the list before and after sees no change.
TEST_F(section_actor_test, bookings_of_one_millisecond_list_in_one_order) {
  auto event = create_event(two_sections(std::nullopt));
  auto ids_of = [](const std::vector<booking_view>& bookings) {
    std::vector<std::string> ids;
    for (const auto& booking : bookings)
      ids.push_back(booking.booking_id);
    return ids;
  };
  auto on_floor = hold(*event, "floor", "alice", {"A-1"});
  auto on_balcony = hold(*event, "balcony", "alice", {"A-1"});
  ASSERT_TRUE(on_floor && on_balcony);
  // The clock stands still: both bookings are made in the same millisecond,
  // the balcony's first.
  auto on_balcony_booked = book("alice", on_balcony->hold_id);
  auto on_floor_booked = book("alice", on_floor->hold_id);
  ASSERT_TRUE(on_floor_booked && on_balcony_booked);
  ASSERT_EQ(on_floor_booked->created_at_ms, on_balcony_booked->created_at_ms);
  // Ties by section number, highest first: the balcony (section 1) before
  // the floor (section 0), whichever was booked first.
  auto same_ms = std::vector<std::string>{on_balcony_booked->booking_id,
                                          on_floor_booked->booking_id};
  EXPECT_EQ(ids_of(bookings_of("alice")), same_ms) << "live";

  // A later booking lists first.
  clock->advance_ms(1);
  auto later_hold = hold(*event, "floor", "alice", {"A-2"});
  ASSERT_TRUE(later_hold);
  auto later = book("alice", later_hold->hold_id);
  ASSERT_TRUE(later);
  auto live = bookings_of("alice");
  auto expected = std::vector<std::string>{later->booking_id};
  expected.insert(expected.end(), same_ms.begin(), same_ms.end());
  EXPECT_EQ(ids_of(live), expected) << "live";

  // Recovery hands the shard the recorded bookings in whatever order the
  // database returned them.
  for (auto order :
       {live, std::vector<booking_view>(live.rbegin(), live.rend())}) {
    load_customer recovered;
    recovered.customer_id = "alice";
    recovered.bookings = std::move(order);
    caf::anon_send(rt->shard_for("alice"), std::move(recovered));
    EXPECT_EQ(ids_of(bookings_of("alice")), expected) << "after recovery";
  }
}

TEST_F(section_actor_test, a_request_that_dies_unanswered_answers_unavailable) {
  awaited<hold_view> reply;
  { auto dropped = reply.fn(); }
  EXPECT_EQ(code_of(reply.get().error()), errc::unavailable);
}

TEST_F(section_actor_test, idempotency_records_replay_and_detect_reuse) {
  using kind = idempotency_decision::kind;
  EXPECT_EQ(begin("alice", "k1", "body-a").what, kind::proceed);
  EXPECT_EQ(begin("alice", "k1", "body-a").what, kind::in_use);
  EXPECT_EQ(begin("alice", "k1", "body-b").what, kind::key_reused);
  EXPECT_EQ(begin("bob", "k1", "body-b").what, kind::proceed);
  caf::anon_send(rt->shard_for("alice"),
                 idempotency_finish{"alice",
                                    "k1",
                                    "body-a",
                                    {201, "{\"hold_id\":\"x\"}", "/v1/holds/x"},
                                    true});
  auto replay = begin("alice", "k1", "body-a");
  EXPECT_EQ(replay.what, kind::replay);
  EXPECT_EQ(replay.response.status, 201u);
  EXPECT_EQ(replay.response.body, "{\"hold_id\":\"x\"}");
  EXPECT_EQ(replay.response.location, "/v1/holds/x");
  // A 5xx outcome forgets the key, so a retry runs again.
  caf::anon_send(
      rt->shard_for("bob"),
      idempotency_finish{"bob", "k1", "body-b", {503, "", ""}, false});
  EXPECT_EQ(begin("bob", "k1", "body-b").what, kind::proceed);
}

// Supervision: a killed section actor is restarted by the registry, loads
// itself from the store before it serves, and keeps every customer's count.
TEST_F(section_actor_test, a_killed_section_reloads_and_serves_again) {
  counted->pretend_durable = true;
  auto event = create_event(two_sections(4));
  auto floor = event->find_section("floor");
  auto held = hold(*event, "floor", "alice", {"A-1", "A-2"});
  ASSERT_TRUE(held);
  auto loads = counted->loads();
  auto first = floor->actor();
  ASSERT_TRUE(kill_section(*floor, *deps.metrics));
  ASSERT_TRUE(eventually([&] {
    return floor->actor() != first && counted->loads() > loads;
  })) << "the section was not restarted, or did not reload";
  // Served again once reloaded (503 until then).
  ASSERT_TRUE(
      eventually([&] { return bool(hold(*event, "floor", "bob", {"A-3"})); }));
  EXPECT_EQ(deps.metrics->section_restarts.Value(), 1);
  EXPECT_EQ(get_hold("alice", held->hold_id)->status, hold_status::active);
  EXPECT_EQ(code_of(hold(*event, "floor", "carol", {"A-1"}).error()),
            errc::seats_unavailable);
  // Alice's two seats still count against her limit of 4, exactly once.
  EXPECT_TRUE(hold(*event, "balcony", "alice", {}, 2));
  EXPECT_EQ(code_of(hold(*event, "floor", "alice", {}, 1).error()),
            errc::limit_exceeded);
}

TEST_F(section_actor_test, a_restart_storm_fails_the_section) {
  auto event = create_event(two_sections(std::nullopt));
  auto floor = event->find_section("floor");
  for (std::size_t i = 0; i <= limits::section_restarts_max; ++i) {
    auto before = floor->actor();
    ASSERT_TRUE(kill_section(*floor, *deps.metrics));
    ASSERT_TRUE(eventually([&] { return floor->actor() != before; }))
        << "no new actor after kill " << i;
  }
  EXPECT_EQ(deps.metrics->section_restarts.Value(),
            static_cast<double>(limits::section_restarts_max));
  EXPECT_EQ(deps.metrics->sections_failed.Value(), 1);
  // Failed: 503 for everything, while the other section serves on.
  auto refused = hold(*event, "floor", "alice", {"A-1"});
  EXPECT_EQ(code_of(refused.error()), errc::unavailable);
  EXPECT_TRUE(hold(*event, "balcony", "alice", {"A-1"}));
}

/// Sections that forget ended holds after one second of the test clock.
class section_actor_retention_test : public section_actor_test {
protected:
  section_actor_retention_test() {
    rt.reset();
    deps.hold_retention_ms = 1000;
    rt = std::make_unique<runtime>(*system, deps, 4);
  }
};

TEST_F(section_actor_retention_test, a_forgotten_hold_is_answered_from_store) {
  auto event = create_event(two_sections(std::nullopt));
  auto released = hold(*event, "floor", "alice", {"A-1"});
  ASSERT_TRUE(released);
  ASSERT_TRUE(release("alice", released->hold_id));
  auto expiring = hold(*event, "floor", "alice", {"A-2"});
  ASSERT_TRUE(expiring);
  auto booked = hold(*event, "floor", "alice", {"A-3"});
  ASSERT_TRUE(booked);
  auto booking = book("alice", booked->hold_id);
  ASSERT_TRUE(booking);
  EXPECT_EQ(deps.metrics->hold_records.Value(), 3);
  clock->advance_ms(60'000); // the TTL: A-2 expires
  tick(*event);
  ASSERT_TRUE(eventually(
      [&] { return event->find_section("floor")->counts().held == 0; }));
  clock->advance_ms(1000); // the retention: both ended holds are forgotten
  tick(*event);
  ASSERT_TRUE(eventually([&] {
    return deps.metrics->hold_records.Value() == 1;
  })) << deps.metrics->hold_records.Value();

  // The store's records answer, as memory did.
  EXPECT_EQ(get_hold("alice", released->hold_id)->status,
            hold_status::released);
  EXPECT_EQ(get_hold("alice", expiring->hold_id)->status, hold_status::expired);
  EXPECT_EQ(get_hold("alice", released->hold_id)->seats,
            std::vector<std::string>{"A-1"});
  EXPECT_EQ(release("alice", released->hold_id)->status, hold_status::released);
  EXPECT_EQ(code_of(book("alice", released->hold_id).error()),
            errc::hold_expired);
  EXPECT_EQ(code_of(get_hold("bob", released->hold_id).error()),
            errc::not_found);
  EXPECT_EQ(code_of(release("bob", expiring->hold_id).error()),
            errc::not_found);
  // Bookings are not forgotten.
  EXPECT_EQ(get_hold("alice", booked->hold_id)->status, hold_status::booked);
  EXPECT_EQ(bookings_of("alice").size(), 1u);
  // Nothing was written again for the answers above.
  EXPECT_EQ(sink->count(change_kind::hold_released), 1u);
  EXPECT_EQ(sink->count(change_kind::hold_expired), 1u);
  // A store that cannot read answers 503, not a guess.
  store->set_failing(true);
  EXPECT_EQ(code_of(get_hold("alice", released->hold_id).error()),
            errc::unavailable);
  store->set_failing(false);
  // And numbering goes on past the forgotten slots.
  auto next = hold(*event, "floor", "bob", {"A-1"});
  ASSERT_TRUE(next);
  EXPECT_GT(parse_hold_id(next->hold_id)->slot,
            parse_hold_id(booked->hold_id)->slot);
}

TEST_F(section_actor_test, a_dropped_section_takes_its_part_of_the_gauges) {
  // A cluster node that gives a partition up drops its sections: the node's
  // active holds and hold records must not count them any more.
  auto event = create_event(two_sections(std::nullopt));
  ASSERT_TRUE(hold(*event, "floor", "alice", {"A-1"}));
  ASSERT_TRUE(hold(*event, "balcony", "bob", {"A-1"}));
  ASSERT_TRUE(eventually([&] {
    return deps.metrics->holds_active.Value() == 2 &&
           deps.metrics->hold_records.Value() == 2;
  }));
  awaited<std::size_t> dropped;
  caf::anon_send(
      rt->registry(),
      drop_partitions_request{{partition_of("concert", 8)}, 8, dropped.fn()});
  ASSERT_EQ(dropped.get(), std::size_t{1});
  EXPECT_TRUE(eventually([&] {
    return deps.metrics->holds_active.Value() == 0 &&
           deps.metrics->hold_records.Value() == 0 &&
           deps.metrics->section_actors_live.Value() == 0;
  })) << deps.metrics->holds_active.Value()
      << " active holds, " << deps.metrics->hold_records.Value() << " records";
}

} // namespace
} // namespace rsv::actors
