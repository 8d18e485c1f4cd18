#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/limits.hpp"
#include "core/partition.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/migrations.hpp"
#include "tests/persistence/pg_test_support.hpp"

#include <algorithm>
#include <chrono>
#include <future>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <memory>
#include <set>
#include <string>

namespace rsv::persistence {
namespace {

using namespace std::chrono_literals;

/// A promise for one callback of the store, and its future.
template <class T>
struct answer {
  std::shared_ptr<std::promise<caf::expected<T>>> promise =
      std::make_shared<std::promise<caf::expected<T>>>();
  std::future<caf::expected<T>> future = promise->get_future();

  cluster_store::callback<T> callback() {
    return [promise = promise](caf::expected<T> value) {
      promise->set_value(std::move(value));
    };
  }

  caf::expected<T> get(std::chrono::seconds deadline = 30s) {
    if (future.wait_for(deadline) != std::future_status::ready) {
      ADD_FAILURE() << "no answer within the deadline";
      return make_error(errc::unavailable, std::string{"timeout"});
    }
    return future.get();
  }
};

/// A raw libpq connection of the test's own, as another node's writer.
class raw_connection {
public:
  explicit raw_connection(const std::string& dsn)
      : conn_(PQconnectdb(dsn.c_str())) {}
  ~raw_connection() { PQfinish(conn_); }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }

  /// Runs `sql`; answers the SQLSTATE when it failed, empty when not.
  std::string run(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    auto status = PQresultStatus(result);
    std::string state;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      const char* code = PQresultErrorField(result, PG_DIAG_SQLSTATE);
      state = code != nullptr ? code : "?";
      message_ = PQresultErrorMessage(result);
    }
    PQclear(result);
    return state;
  }

  /// The first column of the first row of `sql`.
  std::string value(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    std::string out;
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0)
      out = PQgetvalue(result, 0, 0);
    PQclear(result);
    return out;
  }

  const std::string& message() const { return message_; }

private:
  PGconn* conn_;
  std::string message_;
};

class cluster_store_test : public test::fresh_database {
protected:
  void SetUp() override {
    fresh_database::SetUp();
    ASSERT_TRUE(apply_migrations(dsn_));
    raw_ = std::make_unique<raw_connection>(dsn_);
    ASSERT_TRUE(raw_->ok());
  }

  void TearDown() override {
    store_.reset();
    raw_.reset();
    fresh_database::TearDown();
  }

  cluster_store& store() {
    if (!store_) store_ = std::make_unique<cluster_store>(dsn_);
    return *store_;
  }

  void exec(const std::string& sql) {
    ASSERT_EQ(raw_->run(sql), "") << sql << ": " << raw_->message();
  }

  /// An event with one section `main` (rows A and B of 10 seats each).
  void add_event(const std::string& id, uint32_t section_no,
                 const std::string& starts_at = "2030-01-01T20:00:00Z",
                 const std::string& waiting_room = "NULL") {
    exec("INSERT INTO events (id, name, starts_at, hold_ttl_seconds, "
         "waiting_room) VALUES ('" +
         id + "', 'Event " + id + "', '" + starts_at + "', 600, " +
         waiting_room + ")");
    exec("INSERT INTO sections (section_no, event_id, id, position, name, "
         "price_cents, rows) VALUES (" +
         std::to_string(section_no) + ", '" + id +
         "', 'main', 0, 'Main', 2500, "
         "'[{\"label\": \"A\", \"seats\": 10}, {\"label\": \"B\", "
         "\"seats\": 10}]')");
  }

  /// A hold; `expires` is SQL (an interval from now).
  void add_hold(uint32_t section_no, uint32_t slot, const std::string& customer,
                const std::string& seats, const std::string& status,
                const std::string& expires = "now() + interval '10 minutes'") {
    exec("INSERT INTO holds (section_no, slot, customer_id, seats, status, "
         "created_at, expires_at, updated_at) VALUES (" +
         std::to_string(section_no) + ", " + std::to_string(slot) + ", '" +
         customer + "', '" + seats + "', '" + status + "', now(), " + expires +
         ", now())");
  }

  void add_booking(uint32_t section_no, uint32_t slot,
                   const std::string& customer, const std::string& status,
                   const std::string& created_at) {
    exec("INSERT INTO bookings (section_no, slot, customer_id, status, "
         "total_cents, created_at) VALUES (" +
         std::to_string(section_no) + ", " + std::to_string(slot) + ", '" +
         customer + "', '" + status + "', 0, '" + created_at + "')");
  }

  std::unique_ptr<raw_connection> raw_;
  std::unique_ptr<cluster_store> store_;
};

TEST_F(cluster_store_test, init_writes_the_count_once_and_refuses_another) {
  ASSERT_FALSE(cluster_store::init(dsn_, 8));
  EXPECT_EQ(psql("SELECT partitions FROM cluster_settings"), "8\n");
  EXPECT_EQ(psql("SELECT count(*), min(partition), max(partition), "
                 "max(epoch), max(owner) FROM cluster_partitions"),
            "8|0|7|0|\n");
  ASSERT_FALSE(cluster_store::init(dsn_, 8)); // a second node, same count
  EXPECT_EQ(psql("SELECT count(*) FROM cluster_partitions"), "8\n");

  auto refused = cluster_store::init(dsn_, 16);
  ASSERT_TRUE(refused);
  EXPECT_EQ(code_of(refused), errc::validation_failed);
  auto text = describe(refused);
  EXPECT_NE(text.find("16 partitions"), std::string::npos) << text;
  EXPECT_NE(text.find("records 8"), std::string::npos) << text;
  EXPECT_EQ(psql("SELECT partitions FROM cluster_settings"), "8\n");
  EXPECT_EQ(code_of(cluster_store::init(dsn_, 0)), errc::validation_failed);
}

TEST_F(cluster_store_test, bump_raises_epochs_by_one_and_sets_the_owner) {
  ASSERT_FALSE(cluster_store::init(dsn_, 4));
  answer<std::map<uint32_t, uint64_t>> first;
  store().bump({3, 1, 3}, "10.0.0.1:8080", first.callback());
  auto epochs = first.get();
  ASSERT_TRUE(epochs) << describe(epochs.error());
  EXPECT_EQ(*epochs, (std::map<uint32_t, uint64_t>{{1, 1}, {3, 1}}));

  answer<std::map<uint32_t, uint64_t>> second;
  store().bump({3}, "10.0.0.2:8080", second.callback());
  epochs = second.get();
  ASSERT_TRUE(epochs) << describe(epochs.error());
  EXPECT_EQ(*epochs, (std::map<uint32_t, uint64_t>{{3, 2}}));

  answer<std::vector<partition_owner>> owners;
  store().owners(owners.callback());
  auto rows = owners.get();
  ASSERT_TRUE(rows) << describe(rows.error());
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[0].epoch, 0u);
  EXPECT_EQ((*rows)[0].owner, "");
  EXPECT_EQ((*rows)[1].epoch, 1u);
  EXPECT_EQ((*rows)[1].owner, "10.0.0.1:8080");
  EXPECT_EQ((*rows)[3].partition, 3u);
  EXPECT_EQ((*rows)[3].epoch, 2u);
  EXPECT_EQ((*rows)[3].owner, "10.0.0.2:8080");
  EXPECT_GT((*rows)[3].updated_at_ms, 0);

  answer<std::map<uint32_t, uint64_t>> unknown;
  store().bump({2, 9}, "x", unknown.callback());
  auto refused = unknown.get();
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), errc::validation_failed);
  EXPECT_EQ(psql("SELECT epoch FROM cluster_partitions WHERE partition = 2"),
            "0\n");
}

TEST_F(cluster_store_test, a_takeover_waits_for_a_fenced_batch_then_fences_it) {
  ASSERT_FALSE(cluster_store::init(dsn_, 4));
  // The former owner's batch passed the fence and has not committed yet.
  exec("BEGIN");
  exec("SELECT rsv_fence(ARRAY[2], ARRAY[0::bigint])");
  answer<std::map<uint32_t, uint64_t>> taken;
  store().bump({2}, "10.0.0.9:8080", taken.callback());
  EXPECT_EQ(taken.future.wait_for(300ms), std::future_status::timeout)
      << "the takeover did not wait for the fenced batch";
  exec("COMMIT");
  auto epochs = taken.get();
  ASSERT_TRUE(epochs) << describe(epochs.error());
  EXPECT_EQ(*epochs, (std::map<uint32_t, uint64_t>{{2, 1}}));

  // The former owner's next batch is refused; the new owner's passes.
  exec("BEGIN");
  EXPECT_EQ(raw_->run("SELECT rsv_fence(ARRAY[2], ARRAY[0::bigint])"), "RSV01");
  exec("ROLLBACK");
  EXPECT_EQ(raw_->value("SELECT rsv_stale_epochs(ARRAY[2], ARRAY[0::bigint])"),
            "t");
  EXPECT_EQ(raw_->value("SELECT rsv_stale_epochs(ARRAY[2], ARRAY[1::bigint])"),
            "f");
  exec("BEGIN");
  exec("SELECT rsv_fence(ARRAY[2], ARRAY[1::bigint])");
  exec("COMMIT");
}

TEST_F(cluster_store_test, a_takeover_gives_up_while_a_batch_stays_open) {
  ASSERT_FALSE(cluster_store::init(dsn_, 4));
  exec("BEGIN");
  exec("SELECT rsv_fence(ARRAY[1, 3], ARRAY[0, 0]::bigint[])");
  auto started = std::chrono::steady_clock::now();
  answer<std::map<uint32_t, uint64_t>> taken;
  store().bump({3}, "10.0.0.9:8080", taken.callback());
  auto epochs = taken.get();
  auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(epochs);
  EXPECT_EQ(code_of(epochs.error()), errc::unavailable);
  EXPECT_NE(describe(epochs.error()).find("still locked"), std::string::npos)
      << describe(epochs.error());
  // Every attempt waited its lock_timeout: the retries happened.
  EXPECT_GE(waited,
            std::chrono::milliseconds(limits::cluster_bump_lock_timeout_ms *
                                      limits::cluster_bump_attempts_max));
  exec("COMMIT");
  EXPECT_EQ(psql("SELECT epoch, owner FROM cluster_partitions WHERE "
                 "partition = 3"),
            "0|\n");
  // The store goes on serving.
  answer<std::map<uint32_t, uint64_t>> again;
  store().bump({3}, "10.0.0.9:8080", again.callback());
  auto retried = again.get();
  ASSERT_TRUE(retried) << describe(retried.error());
  EXPECT_EQ(retried->at(3), 1u);
}

TEST_F(cluster_store_test, load_partitions_reads_exactly_their_events) {
  constexpr uint32_t partitions = 4;
  const std::vector<std::string> ids{"alpha", "bravo",   "charlie", "delta",
                                     "echo",  "foxtrot", "golf",    "hotel"};
  std::set<uint32_t> used;
  for (uint32_t i = 0; i < ids.size(); ++i) {
    add_event(ids[i], 10 + i, "2030-01-01T20:00:00Z",
              i == 0 ? "'{\"enabled\": true, \"admit_per_second\": 50}'"
                     : "NULL");
    add_hold(10 + i, 0, "cus_" + ids[i], "{A-1,A-2}", "active");
    used.insert(partition_of(ids[i], partitions));
  }
  ASSERT_GE(used.size(), 2u) << "the ids should spread over partitions";
  const uint32_t wanted = partition_of("alpha", partitions);
  std::set<std::string> expected;
  for (const auto& id : ids)
    if (partition_of(id, partitions) == wanted) expected.insert(id);

  answer<recovered_state> loaded;
  store().load_partitions({wanted}, partitions, loaded.callback());
  auto state = loaded.get();
  ASSERT_TRUE(state) << describe(state.error());
  std::set<std::string> got;
  for (const auto& event : state->events) {
    got.insert(event.def.id);
    ASSERT_EQ(event.section_nos.size(), 1u);
    ASSERT_EQ(event.layouts.size(), 1u);
    EXPECT_EQ(event.layouts[0]->event_hash, fnv1a_64(event.def.id));
    EXPECT_EQ(event.layouts[0]->seat_count(), 20u);
    auto holds = state->holds.find(event.section_nos[0]);
    ASSERT_NE(holds, state->holds.end()) << event.def.id;
    ASSERT_EQ(holds->second.size(), 1u);
    EXPECT_EQ(holds->second[0].customer_id, "cus_" + event.def.id);
    EXPECT_EQ(holds->second[0].seats, (std::vector<uint32_t>{0, 1}));
    if (event.def.id == "alpha") {
      ASSERT_TRUE(event.def.waiting_room);
      EXPECT_TRUE(event.def.waiting_room->enabled);
      EXPECT_EQ(event.def.waiting_room->admit_per_second, 50);
    } else {
      EXPECT_FALSE(event.def.waiting_room);
    }
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(state->holds.size(), expected.size());
  EXPECT_TRUE(state->customers.empty());

  // Every partition: every event.
  answer<recovered_state> all;
  store().load_partitions({0, 1, 2, 3}, partitions, all.callback());
  auto everything = all.get();
  ASSERT_TRUE(everything);
  EXPECT_EQ(everything->events.size(), ids.size());
}

TEST_F(cluster_store_test, section_numbers_are_fresh_and_distinct) {
  add_event("alpha", 50); // made by a single node after migration 0006
  ASSERT_FALSE(cluster_store::init(dsn_, 2));
  answer<std::vector<uint32_t>> first;
  answer<std::vector<uint32_t>> second;
  store().reserve_section_nos(3, first.callback());
  store().reserve_section_nos(2, second.callback());
  auto a = first.get();
  auto b = second.get();
  ASSERT_TRUE(a) << describe(a.error());
  ASSERT_TRUE(b) << describe(b.error());
  std::set<uint32_t> all(a->begin(), a->end());
  all.insert(b->begin(), b->end());
  EXPECT_EQ(all.size(), 5u);
  EXPECT_GT(*all.begin(), 50u);
}

TEST_F(cluster_store_test, reads_what_other_nodes_wrote) {
  exec("INSERT INTO customers (id, email, password_hash, created_at) VALUES "
       "('cus_a', 'a@example.com', 'hash', '2030-01-01T00:00:00Z')");
  exec("INSERT INTO idempotency_records (customer_id, key, fingerprint, "
       "status, body, location, created_at) VALUES ('cus_a', 'k1', 'fp', "
       "201, '{}', '/v1/holds/x', now()), ('cus_a', 'old', 'fp', 201, '{}', "
       "'', now() - interval '25 hours')");

  answer<std::optional<customer_record>> found;
  store().find_customer("a@example.com", found.callback());
  auto customer = found.get();
  ASSERT_TRUE(customer) << describe(customer.error());
  ASSERT_TRUE(customer->has_value());
  EXPECT_EQ((*customer)->customer_id, "cus_a");
  EXPECT_EQ((*customer)->password_hash, "hash");
  EXPECT_EQ((*customer)->created_at_ms, 1'893'456'000'000);
  answer<std::optional<customer_record>> missing;
  store().find_customer("b@example.com", missing.callback());
  auto nobody = missing.get();
  ASSERT_TRUE(nobody);
  EXPECT_FALSE(nobody->has_value());

  answer<std::optional<idempotency_record>> record;
  store().find_idempotency("cus_a", "k1", record.callback());
  auto kept = record.get();
  ASSERT_TRUE(kept) << describe(kept.error());
  ASSERT_TRUE(kept->has_value());
  EXPECT_EQ((*kept)->response.status, 201u);
  EXPECT_EQ((*kept)->response.location, "/v1/holds/x");
  answer<std::optional<idempotency_record>> expired;
  store().find_idempotency("cus_a", "old", expired.callback());
  auto gone = expired.get();
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value()) << "older than 24 hours";
}

TEST_F(cluster_store_test, lists_bookings_across_events_and_event_counts) {
  add_event("alpha", 1, "2030-02-01T20:00:00Z");
  add_event("bravo", 2, "2030-01-01T20:00:00Z");
  add_event("charlie", 3, "2030-01-01T20:00:00Z");
  // alpha: a confirmed booking of 2, an active hold of 3, an expired-in-time
  // active hold of 4 (still 'active' in the table), a released one of 5.
  add_hold(1, 0, "cus_a", "{A-1,A-2}", "booked");
  add_booking(1, 0, "cus_a", "confirmed", "2030-01-05T00:00:00Z");
  add_hold(1, 1, "cus_b", "{A-3,A-4,A-5}", "active");
  add_hold(1, 2, "cus_b", "{B-1,B-2,B-3,B-4}", "active",
           "now() - interval '1 second'");
  add_hold(1, 3, "cus_b", "{B-5,B-6,B-7,B-8,B-9}", "released");
  // bravo: a cancelled booking of cus_a (its seats are free) and a newer
  // confirmed one.
  add_hold(2, 0, "cus_a", "{B-10}", "booked");
  add_booking(2, 0, "cus_a", "cancelled", "2030-01-03T00:00:00Z");
  add_hold(2, 1, "cus_a", "{A-1,A-2,A-3}", "booked");
  add_booking(2, 1, "cus_a", "confirmed", "2030-01-07T00:00:00Z");

  answer<std::vector<booking_view>> listed;
  store().list_bookings("cus_a", listed.callback());
  auto bookings = listed.get();
  ASSERT_TRUE(bookings) << describe(bookings.error());
  ASSERT_EQ(bookings->size(), 3u);
  const auto& newest = (*bookings)[0];
  EXPECT_EQ(newest.booking_id, make_booking_id({2, 1, fnv1a_64("bravo")}));
  EXPECT_EQ(newest.hold_id, make_hold_id({2, 1, fnv1a_64("bravo")}));
  EXPECT_EQ(newest.event_id, "bravo");
  EXPECT_EQ(newest.section_id, "main");
  EXPECT_EQ(newest.seats, (std::vector<std::string>{"A-1", "A-2", "A-3"}));
  EXPECT_EQ(newest.total_cents, 7500);
  EXPECT_EQ(newest.status, booking_status::confirmed);
  EXPECT_EQ((*bookings)[1].event_id, "alpha");
  EXPECT_EQ((*bookings)[1].total_cents, 5000);
  EXPECT_EQ((*bookings)[2].status, booking_status::cancelled);
  EXPECT_EQ((*bookings)[2].created_at_ms, 1'893'628'800'000);
  answer<std::vector<booking_view>> none;
  store().list_bookings("cus_b", none.callback());
  auto nothing = none.get();
  ASSERT_TRUE(nothing);
  EXPECT_TRUE(nothing->empty());

  answer<std::vector<event_summary>> events;
  store().list_events(events.callback());
  auto summaries = events.get();
  ASSERT_TRUE(summaries) << describe(summaries.error());
  ASSERT_EQ(summaries->size(), 3u);
  EXPECT_EQ((*summaries)[0].id, "bravo"); // same start as charlie: by id
  EXPECT_EQ((*summaries)[1].id, "charlie");
  EXPECT_EQ((*summaries)[2].id, "alpha");
  EXPECT_EQ((*summaries)[2].name, "Event alpha");
  EXPECT_EQ((*summaries)[2].seats_total, 20u);
  EXPECT_EQ((*summaries)[2].seats_free, 20u - 2 - 3);
  EXPECT_EQ((*summaries)[0].seats_free, 20u - 3);
  EXPECT_EQ((*summaries)[1].seats_free, 20u);
}

TEST_F(cluster_store_test, an_unreachable_database_answers_unavailable) {
  cluster_store dead{"host=127.0.0.1 port=1 connect_timeout=1"};
  answer<std::vector<event_summary>> events;
  dead.list_events(events.callback());
  auto refused = events.get();
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), errc::unavailable);
  EXPECT_EQ(dead.health(), service_state::down);
}

} // namespace
} // namespace rsv::persistence
