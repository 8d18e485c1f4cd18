#include "core/errc.hpp"
#include "persistence/migrations.hpp"
#include "persistence/outbox.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/recovery.hpp"
#include "support/ids.hpp"
#include "tests/persistence/pg_test_support.hpp"

#include <algorithm>
#include <future>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

namespace rsv::persistence {
namespace {

/// Hold and booking ids end in their event's hash (core/ids.hpp).
const std::string gala_hash = test_support::id_hash_suffix("gala");

constexpr millis start_ms = 1'800'000'000'000;

/// A change of a hold in `section_id` (number `section`), priced per seat.
seat_change make_change(change_kind kind, std::string event_id,
                        std::string section_id, uint32_t section, uint32_t slot,
                        std::vector<uint32_t> seats, std::string customer,
                        int64_t seat_price_cents, millis at_ms = start_ms) {
  seat_change c;
  c.kind = kind;
  c.event_id = std::move(event_id);
  c.section_id = std::move(section_id);
  c.section_no = section;
  c.slot = slot;
  c.customer_id = std::move(customer);
  c.seat_indexes = std::move(seats);
  c.at_ms = at_ms;
  c.expires_at_ms = start_ms + 600'000;
  c.amount_cents =
      seat_price_cents * static_cast<int64_t>(c.seat_indexes.size());
  return c;
}

/// Collects acknowledgements; waits for them with a deadline.
class acks {
public:
  store_ack expect() {
    auto promise = std::make_shared<std::promise<caf::error>>();
    futures_.push_back(promise->get_future());
    return [promise](caf::error err) { promise->set_value(std::move(err)); };
  }

  /// The errors of every acknowledgement, in order; a missing one fails.
  std::vector<caf::error> wait() {
    std::vector<caf::error> out;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (auto& future : futures_) {
      if (future.wait_until(until) != std::future_status::ready) {
        ADD_FAILURE() << "an acknowledgement did not come within 30 s";
        out.push_back(make_error(errc::unavailable, std::string{"timeout"}));
        continue;
      }
      out.push_back(future.get());
    }
    futures_.clear();
    return out;
  }

private:
  std::vector<std::future<caf::error>> futures_;
};

class pg_store_test : public test::fresh_database {
protected:
  void SetUp() override {
    fresh_database::SetUp();
    ASSERT_TRUE(apply_migrations(dsn_));
    // Two writers: the floor (section 0) and the balcony (1) commit through
    // different connections.
    pg_store_config config{dsn_};
    config.writers = 2;
    store_ = std::make_unique<pg_store>(config);
    acks created;
    store_->create_event(test::concert(start_ms), {0, 1}, created.expect());
    ASSERT_FALSE(created.wait().at(0));
  }

  static seat_change change(change_kind kind, uint32_t section, uint32_t slot,
                            std::vector<uint32_t> seats,
                            std::string customer = "cus_a") {
    return make_change(kind, "concert", section == 0 ? "floor" : "balcony",
                       section, slot, std::move(seats), std::move(customer),
                       5000);
  }

  std::unique_ptr<pg_store> store_;
};

TEST_F(pg_store_test, an_event_is_written_with_its_sections) {
  EXPECT_EQ(psql("SELECT id, name, hold_ttl_seconds FROM events"),
            "concert|Concert|600\n");
  EXPECT_EQ(
      psql("SELECT section_no, id, position, price_cents, rows->0->>'label' "
           "FROM sections ORDER BY section_no"),
      "0|floor|0|5000|A\n1|balcony|1|2000|A\n");
  EXPECT_EQ(store_->health(), service_state::ok);
}

TEST_F(pg_store_test, every_acknowledged_write_from_many_threads_is_stored) {
  constexpr uint32_t threads = 4;
  constexpr uint32_t per_thread = 250;
  acks acked;
  std::mutex mutex; // guards `acked`, not the store
  std::vector<std::thread> writers;
  for (uint32_t t = 0; t < threads; ++t)
    writers.emplace_back([&, t] {
      for (uint32_t i = 0; i < per_thread; ++i) {
        auto slot = t * per_thread + i;
        store_ack ack;
        {
          std::lock_guard<std::mutex> guard{mutex};
          ack = acked.expect();
        }
        store_->append(change(change_kind::hold_created, 0, slot, {slot % 200}),
                       std::move(ack));
      }
    });
  for (auto& writer : writers)
    writer.join();
  for (const auto& err : acked.wait())
    EXPECT_FALSE(err) << describe(err);
  EXPECT_EQ(psql("SELECT count(*) FROM holds"),
            std::to_string(threads * per_thread) + "\n");
  EXPECT_EQ(psql("SELECT seats[1] FROM holds WHERE slot = 150"), "B-51\n");
  EXPECT_EQ(psql("SELECT seats[1] FROM holds WHERE slot = 42"), "A-43\n");
}

TEST_F(pg_store_test, a_hold_booked_and_cancelled_in_one_batch_ends_cancelled) {
  acks acked;
  store_->append(change(change_kind::hold_created, 1, 0, {0, 1}),
                 acked.expect());
  store_->append(change(change_kind::booking_confirmed, 1, 0, {0, 1}),
                 acked.expect());
  store_->append(change(change_kind::booking_cancelled, 1, 0, {0, 1}),
                 acked.expect());
  store_->append(change(change_kind::hold_created, 1, 1, {2}), acked.expect());
  store_->append(change(change_kind::hold_expired, 1, 1, {2}), acked.expect());
  store_->append(change(change_kind::hold_created, 1, 2, {3}), acked.expect());
  store_->append(change(change_kind::hold_released, 1, 2, {3}), acked.expect());
  store_->append(change(change_kind::hold_created, 1, 3, {4}), acked.expect());
  for (const auto& err : acked.wait())
    EXPECT_FALSE(err) << describe(err);
  EXPECT_EQ(psql("SELECT slot, status, seats FROM holds ORDER BY slot"),
            "0|booked|{A-1,A-2}\n1|expired|{A-3}\n2|released|{A-4}\n"
            "3|active|{A-5}\n");
  EXPECT_EQ(psql("SELECT status, total_cents FROM bookings"),
            "cancelled|10000\n");
  EXPECT_EQ(psql("SELECT string_agg(seat_id || '=' || status, ',') FROM "
                 "seat_state"),
            "A-5=held\n");
}

TEST_F(pg_store_test, a_refused_write_does_not_fail_its_neighbours) {
  // Each encoding retries the writes of a failed batch one by one. The
  // refused write is named for what it is: an email another node registered
  // first is email_taken (409), as on a single node.
  uint32_t slot = 0;
  for (auto encoding : {batch_encoding::pipeline, batch_encoding::journal}) {
    pg_store_config config{dsn_};
    config.encoding = encoding;
    pg_store store{config};
    store.learn({test::recovered(test::concert(start_ms))});
    acks acked;
    auto id = std::to_string(slot);
    customer_record ann{"cus_" + id, "ann" + id + "@example.org", "$argon2id$x",
                        start_ms};
    customer_record again{"cus_again" + id, ann.email, "$argon2id$y", start_ms};
    store.create_customer(ann, acked.expect());
    store.append(change(change_kind::hold_created, 0, slot, {slot}),
                 acked.expect());
    store.create_customer(again, acked.expect());
    store.append(change(change_kind::hold_created, 0, slot + 1, {slot + 1}),
                 acked.expect());
    auto errors = acked.wait();
    ASSERT_EQ(errors.size(), 4u);
    EXPECT_FALSE(errors[0]) << id;
    EXPECT_FALSE(errors[1]) << id;
    EXPECT_EQ(code_of(errors[2]), errc::email_taken) << id;
    EXPECT_FALSE(errors[3]) << id;
    slot += 2;
    test::snapshot_sections(store, {0}); // the journal's rows may go
    store.close();                       // the journal's rows reach the tables
  }
  EXPECT_EQ(psql("SELECT string_agg(id, ',' ORDER BY id) FROM customers"),
            "cus_0,cus_2\n");
  EXPECT_EQ(psql("SELECT count(*) FROM holds"), "4\n");
  EXPECT_EQ(psql("SELECT count(*) FROM journal"), "0\n");
}

TEST_F(pg_store_test, what_was_acknowledged_is_what_recovery_reads) {
  acks acked;
  store_->create_customer({"cus_1", "ann@example.org", "$argon2id$x", start_ms},
                          acked.expect());
  store_->append(change(change_kind::hold_created, 0, 0, {0, 1}, "cus_1"),
                 acked.expect());
  store_->append(change(change_kind::booking_confirmed, 0, 0, {0, 1}, "cus_1"),
                 acked.expect());
  store_->append(change(change_kind::hold_created, 0, 2, {150}, "cus_2"),
                 acked.expect());
  store_->append(change(change_kind::hold_created, 1, 0, {3}, "cus_3"),
                 acked.expect());
  store_->append(change(change_kind::booking_confirmed, 1, 0, {3}, "cus_3"),
                 acked.expect());
  store_->append(change(change_kind::booking_cancelled, 1, 0, {3}, "cus_3"),
                 acked.expect());
  for (const auto& err : acked.wait())
    ASSERT_FALSE(err) << describe(err);

  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  ASSERT_EQ(state->events.size(), 1u);
  const auto& event = state->events[0];
  EXPECT_EQ(event.def.id, "concert");
  EXPECT_EQ(event.def.starts_at_ms, start_ms);
  EXPECT_EQ(event.def.hold_ttl_seconds, 600);
  EXPECT_FALSE(event.def.max_seats_per_customer);
  EXPECT_EQ(event.section_nos, (std::vector<uint32_t>{0, 1}));
  ASSERT_EQ(event.def.sections.size(), 2u);
  EXPECT_EQ(event.def.sections[0].id, "floor");
  EXPECT_EQ(event.def.sections[0].price_cents, 5000);
  ASSERT_EQ(event.def.sections[0].rows.size(), 2u);
  EXPECT_EQ(event.def.sections[0].rows[1].label, "B");
  EXPECT_EQ(event.def.sections[0].rows[1].seats, 100u);
  EXPECT_EQ(state->next_section_no, 2u);
  ASSERT_EQ(state->customers.size(), 1u);
  EXPECT_EQ(state->customers[0].email, "ann@example.org");
  EXPECT_EQ(state->customers[0].created_at_ms, start_ms);

  auto floor = state->holds.at(0);
  std::sort(floor.begin(), floor.end(),
            [](const auto& a, const auto& b) { return a.slot < b.slot; });
  ASSERT_EQ(floor.size(), 2u);
  EXPECT_EQ(floor[0].status, hold_status::booked);
  EXPECT_EQ(floor[0].seats, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(floor[0].booked_at_ms, start_ms);
  EXPECT_FALSE(floor[0].cancelled);
  EXPECT_EQ(floor[1].slot, 2u);
  EXPECT_EQ(floor[1].status, hold_status::active);
  EXPECT_EQ(floor[1].seats, (std::vector<uint32_t>{150}));
  EXPECT_EQ(floor[1].expires_at_ms, start_ms + 600'000);
  EXPECT_EQ(floor[1].customer_id, "cus_2");
  const auto& balcony = state->holds.at(1);
  ASSERT_EQ(balcony.size(), 1u);
  EXPECT_EQ(balcony[0].status, hold_status::booked);
  EXPECT_TRUE(balcony[0].cancelled);
}

TEST_F(pg_store_test, an_idempotency_record_commits_with_its_change) {
  auto record = std::make_shared<idempotency_record>();
  record->customer_id = "cus_a";
  record->key = "key-1";
  record->fingerprint = "fp";
  record->response = {201, R"({"hold_id":"hld_0_0"})", "/v1/holds/hld_0_0"};
  record->created_at_ms = start_ms;
  auto held = change(change_kind::hold_created, 0, 0, {0});
  held.idempotency = record;
  // A change that the database refuses (a seat index the layout lacks is
  // not refused, an unknown section is): its record must not stay either.
  auto refused = change(change_kind::hold_created, 7, 0, {0});
  auto other = std::make_shared<idempotency_record>(*record);
  other->key = "key-2";
  refused.idempotency = other;
  acks acked;
  store_->append(held, acked.expect());
  store_->append(refused, acked.expect());
  store_->put_idempotency({"cus_b", "key-3", "fp3", {409, "{}", ""}, start_ms},
                          acked.expect());
  auto errors = acked.wait();
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_FALSE(errors[0]);
  EXPECT_TRUE(errors[1]);
  EXPECT_FALSE(errors[2]);
  EXPECT_EQ(psql("SELECT customer_id, key, status, location FROM "
                 "idempotency_records ORDER BY key"),
            "cus_a|key-1|201|/v1/holds/hld_0_0\ncus_b|key-3|409|\n");

  // Recovery reads the records that are younger than 24 hours.
  psql("UPDATE idempotency_records SET created_at = now()");
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  ASSERT_EQ(state->idempotency.size(), 2u);
  auto first = state->idempotency[0].key == "key-1" ? state->idempotency[0]
                                                    : state->idempotency[1];
  EXPECT_EQ(first.customer_id, "cus_a");
  EXPECT_EQ(first.fingerprint, "fp");
  EXPECT_EQ(first.response.body, R"({"hold_id":"hld_0_0"})");
  EXPECT_EQ(first.response.location, "/v1/holds/hld_0_0");
}

TEST_F(pg_store_test, records_past_24_hours_are_purged_and_not_recovered) {
  psql("INSERT INTO idempotency_records VALUES ('cus_a', 'old', 'fp', 201, "
       "'{}', '', now() - interval '25 hours'), ('cus_a', 'young', 'fp', 201, "
       "'{}', '', now() - interval '23 hours')");
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  ASSERT_EQ(state->idempotency.size(), 1u);
  EXPECT_EQ(state->idempotency[0].key, "young");
  // A writer purges when it starts and every ten minutes after.
  pg_store another{{dsn_}};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (psql("SELECT count(*) FROM idempotency_records") != "1\n" &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(psql("SELECT key FROM idempotency_records"), "young\n");
}

TEST_F(pg_store_test, a_section_load_reads_what_the_writes_before_it_left) {
  acks acked;
  for (uint32_t slot = 0; slot < 50; ++slot)
    store_->append(change(change_kind::hold_created, 0, slot, {slot}),
                   acked.expect());
  store_->append(change(change_kind::booking_confirmed, 0, 7, {7}),
                 acked.expect());
  store_->append(change(change_kind::hold_created, 1, 0, {0}), acked.expect());
  // Queued right behind the writes, without waiting for them.
  std::promise<caf::expected<std::vector<recorded_hold>>> loaded;
  store_->load_section(0, [&](caf::expected<std::vector<recorded_hold>> h) {
    loaded.set_value(std::move(h));
  });
  auto future = loaded.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)),
            std::future_status::ready);
  auto holds = future.get();
  ASSERT_TRUE(holds) << describe(holds.error());
  ASSERT_EQ(holds->size(), 50u);
  auto booked = std::count_if(holds->begin(), holds->end(), [](const auto& h) {
    return h.status == hold_status::booked;
  });
  EXPECT_EQ(booked, 1);
  for (const auto& err : acked.wait())
    EXPECT_FALSE(err) << describe(err);
}

// Every encoding must leave the same rows, however the writes fall into
// batches: a mixed workload from one thread, appended without waiting, so
// that batches mix every kind of row. With an outbox, every change has its
// record: in an outbox row, or in its journal row (the journal is the
// outbox of the journal encoding).
TEST_F(pg_store_test, every_batch_encoding_leaves_the_same_rows) {
  struct variant {
    batch_encoding encoding;
    const char* name;
    std::size_t writers;
  };
  uint32_t section = 2;
  for (auto [encoding, name, writers] :
       {variant{batch_encoding::pipeline, "pipeline", 1},
        variant{batch_encoding::pipeline, "pipeline-3", 3},
        variant{batch_encoding::journal, "journal", 1},
        variant{batch_encoding::journal, "journal-2", 2}}) {
    for (bool outbox : {false, true}) {
      pg_store_config config{dsn_};
      config.encoding = encoding;
      config.writers = writers;
      event_def def;
      def.id = std::string{name} + (outbox ? "-outbox" : "");
      config.node = def.id;
      if (outbox) config.outbox_node = def.id;
      pg_store store{config};
      def.name = def.id;
      def.starts_at_ms = start_ms;
      // A quote and a comma in a name: text that must stay data.
      def.sections.push_back({"floor", "Floor \"1\", left", 100, {{"A", 400}}});
      acks acked;
      store.create_event(def, {section}, acked.expect());
      // As on the node: a section takes writes once its event is written,
      // which may be through another writer.
      ASSERT_FALSE(acked.wait().at(0)) << def.id;
      auto at = [&](change_kind kind, uint32_t slot) {
        auto c = change(kind, 0, slot, {slot});
        c.event_id = def.id;
        c.section_no = section;
        return c;
      };
      for (uint32_t slot = 0; slot < 400; ++slot) {
        auto created = at(change_kind::hold_created, slot);
        if (slot % 10 == 0) {
          // Some keys twice in a batch: the last answer wins.
          auto record = std::make_shared<idempotency_record>();
          record->customer_id = "cus_" + def.id;
          record->key = "key-" + std::to_string(slot % 30);
          record->fingerprint = "fp";
          record->response = {201, std::to_string(slot), "/v1/\"x\",{y}"};
          record->created_at_ms = start_ms;
          created.idempotency = record;
        }
        store.append(created, acked.expect());
        switch (slot % 4) {
        case 1:
          store.append(at(change_kind::hold_released, slot), acked.expect());
          break;
        case 2:
          store.append(at(change_kind::hold_expired, slot), acked.expect());
          break;
        case 3:
          store.append(at(change_kind::booking_confirmed, slot),
                       acked.expect());
          if (slot % 8 == 7)
            store.append(at(change_kind::booking_cancelled, slot),
                         acked.expect());
          break;
        default:
          break;
        }
      }
      store.create_customer({"cus_" + def.id, def.id + "@b.example",
                             "hash \"with\" quotes", start_ms},
                            acked.expect());
      for (const auto& err : acked.wait())
        ASSERT_FALSE(err) << def.id << ": " << describe(err);
      // With the journal, the tables follow once its projector drained it,
      // and only rows that wait for a relay stay (snapshots cover them).
      test::snapshot_sections(store, {section});
      store.close();
      EXPECT_EQ(psql("SELECT count(*) FROM journal j LEFT JOIN "
                     "journal_cursors c ON c.reader = 'projector' AND "
                     "c.stream = j.stream WHERE j.seq > coalesce(c.seq, 0) "
                     "OR j.records = 0"),
                "0\n")
          << def.id;
      auto where = " WHERE section_no = " + std::to_string(section);
      EXPECT_EQ(psql("SELECT status, count(*) FROM holds" + where +
                     " GROUP BY status ORDER BY status"),
                "active|100\nbooked|100\nexpired|100\nreleased|100\n")
          << def.id;
      EXPECT_EQ(psql("SELECT status, count(*) FROM bookings" + where +
                     " GROUP BY status ORDER BY status"),
                "cancelled|50\nconfirmed|50\n")
          << def.id;
      EXPECT_EQ(
          psql("SELECT count(*) FROM bookings" + where +
               " AND (status = 'cancelled') <> (cancelled_at IS NOT NULL)"),
          "0\n")
          << def.id;
      EXPECT_EQ(psql("SELECT seats[1], created_at = to_timestamp(" +
                     std::to_string(start_ms / 1000) + ") FROM holds" + where +
                     " AND slot = 123"),
                "A-124|t\n")
          << def.id;
      // key-10 was written for slots 10, 40, ..., 370: the last is kept.
      EXPECT_EQ(psql("SELECT body, location FROM idempotency_records WHERE "
                     "customer_id = 'cus_" +
                     def.id + "' AND key = 'key-10'"),
                "370|/v1/\"x\",{y}\n")
          << def.id;
      // Slots 0, 10, ..., 390 wrote keys key-0, key-10 and key-20 only.
      EXPECT_EQ(psql("SELECT count(*) FROM idempotency_records WHERE "
                     "customer_id = 'cus_" +
                     def.id + "'"),
                "3\n")
          << def.id;
      EXPECT_EQ(psql("SELECT password_hash FROM customers WHERE id = 'cus_" +
                     def.id + "'"),
                "hash \"with\" quotes\n")
          << def.id;
      // The outbox: one record per change (400 holds, 100 releases, 100
      // expiries, 100 bookings, 50 cancellations) and the event's, written
      // once.
      auto records = [&](const std::string& table) {
        return psql("SELECT coalesce(sum(records), 0) FROM " + table +
                    " WHERE stream LIKE '" + def.id + "/%'");
      };
      bool journaled = encoding == batch_encoding::journal;
      EXPECT_EQ(records("outbox"), outbox && !journaled ? "751\n" : "0\n")
          << def.id;
      EXPECT_EQ(records("journal"), outbox && journaled ? "751\n" : "0\n")
          << def.id;
      ++section;
    }
  }
}

TEST(pg_store, an_unreachable_database_answers_errors_not_silence) {
  pg_store store{{"host=127.0.0.1 port=1 connect_timeout=2"}};
  acks acked;
  seat_change c;
  store.append(c, acked.expect());
  store.create_customer({"cus_1", "a@b.example", "h", 0}, acked.expect());
  for (const auto& err : acked.wait())
    EXPECT_EQ(code_of(err), errc::unavailable);
  std::promise<caf::expected<std::vector<recorded_hold>>> loaded;
  store.load_section(0, [&](caf::expected<std::vector<recorded_hold>> holds) {
    loaded.set_value(std::move(holds));
  });
  auto future = loaded.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)),
            std::future_status::ready);
  EXPECT_EQ(code_of(future.get().error()), errc::unavailable);
  EXPECT_EQ(store.health(), service_state::down);
}

} // namespace
} // namespace rsv::persistence

namespace rsv::persistence {
namespace {

/// The outbox of the store's writers (docs/events.md): every committed
/// change has its record in an outbox row of its transaction, rows are
/// numbered in commit order per stream, and the relay's reader gets them
/// back in that order and removes what it is told.
class outbox_test : public test::fresh_database {
protected:
  void SetUp() override {
    fresh_database::SetUp();
    ASSERT_TRUE(apply_migrations(dsn_));
  }

  /// The event of these tests: two sections, numbers 0 and 1.
  static event_def gala(std::string id = "gala") {
    event_def def;
    def.id = std::move(id);
    def.name = "Gala";
    def.starts_at_ms = start_ms;
    def.hold_ttl_seconds = 600;
    def.sections.push_back({"stalls", "Stalls", 4000, {{"A", 10}}});
    def.sections.push_back({"circle", "Circle", 2500, {{"A", 10}}});
    return def;
  }

  /// A store with an outbox; the first one writes the event, later ones
  /// learn it as a restarted node does.
  std::unique_ptr<pg_store> open_store(std::string node = "node-a") {
    pg_store_config config{dsn_};
    config.writers = 2;
    config.outbox_node = std::move(node);
    config.on_outbox_commit = [this] { ++pokes_; };
    auto store = std::make_unique<pg_store>(config);
    auto def = gala();
    if (!event_written_) {
      acks created;
      store->create_event(def, {0, 1}, created.expect());
      EXPECT_FALSE(created.wait().at(0));
      event_written_ = true;
    } else {
      store->learn({test::recovered(def)});
    }
    return store;
  }

  static seat_change change(change_kind kind, uint32_t section, uint32_t slot,
                            std::vector<uint32_t> seats) {
    return make_change(kind, "gala", section == 0 ? "stalls" : "circle",
                       section, slot, std::move(seats), "cus_b", 4000,
                       start_ms + slot);
  }

  std::atomic<int> pokes_{0};
  bool event_written_ = false;
};

TEST_F(outbox_test, committed_changes_have_their_records_in_commit_order) {
  auto store = open_store();
  acks acked;
  store->append(change(change_kind::hold_created, 0, 0, {0, 1}),
                acked.expect());
  store->append(change(change_kind::hold_created, 1, 0, {4}), acked.expect());
  store->append(change(change_kind::booking_confirmed, 0, 0, {0, 1}),
                acked.expect());
  store->append(change(change_kind::booking_cancelled, 0, 0, {0, 1}),
                acked.expect());
  for (const auto& err : acked.wait())
    EXPECT_FALSE(err) << describe(err);
  EXPECT_GT(pokes_.load(), 0) << "the relay was never woken";

  auto reader = make_pg_outbox_reader(dsn_);
  auto rows = reader->read(100);
  ASSERT_TRUE(rows) << describe(rows.error());
  std::vector<std::string> ids;
  std::map<std::string, int64_t> last_seq;
  for (const auto& row : *rows) {
    // Within a stream, seq only grows in the order read.
    auto [it, fresh] = last_seq.emplace(row.stream, row.seq);
    if (!fresh) {
      EXPECT_GT(row.seq, it->second) << row.stream;
    }
    it->second = row.seq;
    for (const auto& record : split_outbox_records(row.payload)) {
      ids.emplace_back(record.id);
      auto value = nlohmann::json::parse(record.value);
      EXPECT_EQ(value["id"], std::string{record.id});
      if (value["type"] != "event.created") {
        EXPECT_EQ(std::string{record.key},
                  "gala/" + value["section_id"].get<std::string>());
      }
      if (value["id"] == "hld_0_0" + gala_hash + ":hold.created") {
        EXPECT_EQ(value["seats"], nlohmann::json::array({"A-1", "A-2"}));
        EXPECT_EQ(value["total_cents"], 8000);
        EXPECT_EQ(value["customer_id"], "cus_b");
      }
    }
  }
  EXPECT_EQ(psql("SELECT DISTINCT stream FROM outbox ORDER BY 1"),
            "node-a/0\nnode-a/1\n");
  // The floor's changes in the order it made them, the event before all.
  auto position = [&](const std::string& id) {
    return std::find(ids.begin(), ids.end(), id) - ids.begin();
  };
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(position("evt_gala:event.created"), 0);
  EXPECT_LT(position("hld_0_0" + gala_hash + ":hold.created"),
            position("bkg_0_0" + gala_hash + ":booking.confirmed"));
  EXPECT_LT(position("bkg_0_0" + gala_hash + ":booking.confirmed"),
            position("bkg_0_0" + gala_hash + ":booking.cancelled"));
  EXPECT_LT(position("hld_1_0" + gala_hash + ":hold.created"),
            static_cast<long>(ids.size()));

  auto backlog = reader->backlog();
  ASSERT_TRUE(backlog);
  EXPECT_EQ(backlog->rows, static_cast<int64_t>(rows->size()));
  EXPECT_EQ(backlog->records, 5);
  // Delivered rows are not read again, and trim deletes them.
  reader->delivered(*rows);
  auto again = reader->read(100);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(reader->backlog()->rows, 0);
  EXPECT_NE(psql("SELECT count(*) FROM outbox"), "0\n");
  ASSERT_FALSE(reader->trim());
  EXPECT_EQ(psql("SELECT count(*) FROM outbox"), "0\n");
  // What commits after that is read.
  acks more;
  store->append(change(change_kind::hold_released, 1, 0, {4}), more.expect());
  ASSERT_FALSE(more.wait().at(0));
  auto later = reader->read(100);
  ASSERT_TRUE(later);
  ASSERT_EQ(later->size(), 1u);
  EXPECT_NE(
      later->front().payload.find("hld_1_0" + gala_hash + ":hold.released"),
      std::string::npos);
}

TEST_F(outbox_test, the_reader_follows_new_streams_and_reads_a_prefix_of_each) {
  auto store = open_store();
  auto reader = make_pg_outbox_reader(dsn_);
  // Each append waits for its commit: one row each, in both streams.
  for (uint32_t slot = 0; slot < 6; ++slot) {
    acks acked;
    store->append(change(change_kind::hold_created, slot % 2, slot, {slot}),
                  acked.expect());
    ASSERT_FALSE(acked.wait().at(0));
  }
  auto records_of = [](const std::vector<outbox_row>& rows) {
    std::vector<std::string> ids;
    for (const auto& row : rows)
      for (const auto& record : split_outbox_records(row.payload))
        ids.emplace_back(record.id);
    return ids;
  };
  // The event's row and the six holds. Three at a time: the oldest of
  // each stream come first (the order between streams is the clock's, to
  // the millisecond), and the rest follows them.
  auto first = reader->read(3);
  ASSERT_TRUE(first) << describe(first.error());
  ASSERT_EQ(first->size(), 3u);
  reader->delivered(*first);
  auto rest = reader->read(100);
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 4u);
  std::map<std::string, int64_t> newest_first;
  for (const auto& row : *first)
    newest_first[row.stream] = std::max(newest_first[row.stream], row.seq);
  for (const auto& row : *rest)
    if (newest_first.count(row.stream) != 0) {
      EXPECT_GT(row.seq, newest_first[row.stream]) << row.stream;
    }
  auto ids = records_of(*first);
  for (const auto& id : records_of(*rest))
    ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(
      ids, (std::vector<std::string>{"evt_gala:event.created",
                                     "hld_0_0" + gala_hash + ":hold.created",
                                     "hld_0_2" + gala_hash + ":hold.created",
                                     "hld_0_4" + gala_hash + ":hold.created",
                                     "hld_1_1" + gala_hash + ":hold.created",
                                     "hld_1_3" + gala_hash + ":hold.created",
                                     "hld_1_5" + gala_hash + ":hold.created"}));
  // Only what was delivered is deleted.
  ASSERT_FALSE(reader->trim());
  EXPECT_EQ(psql("SELECT count(*) FROM outbox"), "4\n");
  reader->delivered(*rest);
  ASSERT_FALSE(reader->trim());
  EXPECT_EQ(psql("SELECT count(*) FROM outbox"), "0\n");

  // Another node starts writing: its stream is read at once, not after
  // the next periodic look for streams.
  auto other = open_store("node-b");
  acks acked;
  other->append(change(change_kind::hold_released, 1, 1, {1}), acked.expect());
  ASSERT_FALSE(acked.wait().at(0));
  auto theirs = reader->read(100);
  ASSERT_TRUE(theirs);
  ASSERT_EQ(theirs->size(), 1u);
  EXPECT_EQ(theirs->front().stream.rfind("node-b/", 0), 0u);
  EXPECT_EQ(records_of(*theirs),
            std::vector<std::string>{"hld_1_1" + gala_hash + ":hold.released"});
  EXPECT_EQ(reader->backlog()->rows, 1);
}

TEST_F(outbox_test, a_new_store_continues_each_stream_after_its_last_row) {
  {
    auto store = open_store();
    acks acked;
    store->append(change(change_kind::hold_created, 0, 0, {0}), acked.expect());
    store->append(change(change_kind::hold_created, 0, 1, {1}), acked.expect());
    for (const auto& err : acked.wait())
      ASSERT_FALSE(err);
    store->close();
  }
  auto before = psql("SELECT max(seq) FROM outbox WHERE stream = 'node-a/0'");
  auto store = open_store();
  acks acked;
  store->append(change(change_kind::hold_created, 0, 2, {2}), acked.expect());
  for (const auto& err : acked.wait())
    ASSERT_FALSE(err);
  // A restarted node must not reuse a number (that row would be refused),
  // nor go below one a relay saw delivered, even with the table emptied.
  auto after = psql("SELECT max(seq) FROM outbox WHERE stream = 'node-a/0'");
  EXPECT_GT(std::stoll(after), std::stoll(before));
  psql("DELETE FROM outbox");
  store->close();
  store = open_store();
  store->append(change(change_kind::hold_created, 0, 3, {3}), acked.expect());
  for (const auto& err : acked.wait())
    ASSERT_FALSE(err);
  EXPECT_GT(std::stoll(psql("SELECT max(seq) FROM outbox WHERE stream = "
                            "'node-a/0'")),
            std::stoll(after));
  EXPECT_EQ(psql("SELECT count(*) FROM holds"), "4\n");
}

TEST_F(outbox_test, without_an_outbox_node_nothing_is_written_to_it) {
  pg_store_config config{dsn_};
  pg_store store{config};
  acks acked;
  store.create_event(gala("quiet"), {7, 8}, acked.expect());
  ASSERT_FALSE(acked.wait().at(0));
  EXPECT_EQ(psql("SELECT count(*) FROM outbox"), "0\n");
}

} // namespace
} // namespace rsv::persistence
