// The journal is the outbox (migration 0009, docs/events.md "How it
// works"): with `--pg-batch-encoding journal` and Kafka on, a change is
// written once, in its journal row, and the relay's reader renders the same
// records from it as from an outbox row of the `pipeline` encoding. A row
// stays until it is both projected and relayed; without Kafka it goes when
// it is projected. Everything through the reader the relay uses
// (make_pg_outbox_reader), on a real PostgreSQL.

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/migrations.hpp"
#include "persistence/outbox.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/pg_writer.hpp"
#include "persistence/recovery.hpp"
#include "support/eventually.hpp"
#include "support/ids.hpp"
#include "tests/persistence/pg_test_support.hpp"

#include <chrono>
#include <future>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

namespace rsv::persistence {
namespace {

using test_support::eventually;

constexpr millis start_ms = 1'800'000'000'000;

/// Hold and booking ids end in their event's hash (core/ids.hpp).
const std::string gala_hash = test_support::id_hash_suffix("gala");

/// The event of these tests.
event_def gala() {
  event_def def;
  def.id = "gala";
  def.name = "Gala \"night\"";
  def.starts_at_ms = start_ms;
  def.hold_ttl_seconds = 600;
  def.sections.push_back({"stalls", "Stalls", 4000, {{"A", 10}}});
  def.sections.push_back({"circle", "Circle", 2500, {{"B", 10}}});
  return def;
}

seat_change change(change_kind kind, uint32_t section, uint32_t slot,
                   std::vector<uint32_t> seats, std::string customer = "cus_b",
                   millis at_ms = start_ms) {
  seat_change c;
  c.kind = kind;
  c.event_id = "gala";
  c.section_id = section == 0 ? "stalls" : "circle";
  c.section_no = section;
  c.slot = slot;
  c.customer_id = std::move(customer);
  c.seat_indexes = std::move(seats);
  c.at_ms = at_ms + slot;
  c.expires_at_ms = start_ms + 600'000;
  c.amount_cents = (section == 0 ? 4000 : 2500) *
                   static_cast<int64_t>(c.seat_indexes.size());
  return c;
}

/// Writes `changes` through `store` and waits for every acknowledgement.
void write(pg_store& store, const std::vector<seat_change>& changes) {
  std::vector<std::future<caf::error>> acks;
  for (const auto& c : changes) {
    auto promise = std::make_shared<std::promise<caf::error>>();
    acks.push_back(promise->get_future());
    store.append(c, [promise](caf::error err) { promise->set_value(err); });
  }
  for (auto& ack : acks) {
    ASSERT_EQ(ack.wait_for(std::chrono::seconds(30)),
              std::future_status::ready);
    auto err = ack.get();
    ASSERT_FALSE(err) << describe(err);
  }
}

void wait_for(const std::function<void(store_ack)>& call) {
  std::promise<caf::error> done;
  call([&](caf::error err) { done.set_value(std::move(err)); });
  auto future = done.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)),
            std::future_status::ready);
  auto err = future.get();
  ASSERT_FALSE(err) << describe(err);
}

/// A record as the relay hands it to Kafka, copied.
struct record {
  std::string id, key, value;
};

/// Every record `reader` reads, in the order read; delivered and trimmed
/// as the relay does, unless `trim` is false.
std::vector<record> relay_all(outbox_reader& reader, bool trim = true) {
  std::vector<record> out;
  for (int round = 0; round < 100; ++round) {
    auto rows = reader.read(3); // small rounds: several of them
    EXPECT_TRUE(rows) << describe(rows.error());
    if (!rows || rows->empty()) break;
    for (const auto& row : *rows)
      for (const auto& r : split_outbox_records(row.payload))
        out.push_back(
            {std::string{r.id}, std::string{r.key}, std::string{r.value}});
    reader.delivered(*rows);
    if (trim) {
      EXPECT_FALSE(reader.trim());
    }
  }
  return out;
}

std::vector<std::string> ids_of(const std::vector<record>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records)
    ids.push_back(r.id);
  return ids;
}

/// The journal row of `changes`, with their records, as a journal writer
/// with Kafka commits it; inserted by hand, so that no projector is there.
std::string insert_row_sql(const std::string& stream, int64_t seq,
                           const std::string& body, int records) {
  std::string hex;
  for (unsigned char c : body) {
    static const char* digits = "0123456789abcdef";
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return "INSERT INTO journal (stream, seq, created_at, entries, records, "
         "body) VALUES ('" +
         stream + "', " + std::to_string(seq) + ", now(), 1, " +
         std::to_string(records) + ", '\\\\x" + hex + "'::bytea)";
}

std::string row_of(const std::vector<seat_change>& changes) {
  journal::encoder out;
  for (const auto& c : changes)
    out.add(c);
  return out.finish();
}

class journal_relay_test : public test::fresh_database {
protected:
  void SetUp() override {
    fresh_database::SetUp();
    ASSERT_TRUE(apply_migrations(dsn_));
  }

  static pg_store_config config(const std::string& dsn, batch_encoding encoding,
                                std::string node, bool kafka = true) {
    pg_store_config c{dsn};
    c.encoding = encoding;
    c.writers = 2;
    c.node = node;
    if (kafka) c.outbox_node = node;
    return c;
  }

  /// A store on `dsn` that writes the gala first (`create`) or learns it.
  static std::unique_ptr<pg_store> open(pg_store_config c, bool create) {
    auto store = std::make_unique<pg_store>(std::move(c));
    if (create)
      wait_for([&](store_ack done) {
        store->create_event(gala(), {0, 1}, std::move(done));
      });
    else
      store->learn({test::recovered(gala())});
    return store;
  }

  /// One of every change, two sections, an answer kept for its key with a
  /// change and one without, and a customer. A customer id with a tab,
  /// which the outbox's stored line cannot carry, takes the other path of
  /// the `pipeline` encoding.
  static void write_every_kind(pg_store& store) {
    auto answer = std::make_shared<idempotency_record>();
    answer->customer_id = "cus_b";
    answer->key = "key-1";
    answer->fingerprint = "fp";
    answer->response = {201, R"({"hold_id":"x"})", "/v1/holds/x"};
    answer->created_at_ms = start_ms;
    auto held = change(change_kind::hold_created, 0, 0, {0, 1});
    held.idempotency = answer;
    write(store, {held, change(change_kind::hold_created, 1, 0, {4}),
                  change(change_kind::booking_confirmed, 0, 0, {0, 1}),
                  change(change_kind::booking_cancelled, 0, 0, {0, 1}),
                  change(change_kind::hold_created, 0, 1, {2}),
                  change(change_kind::hold_released, 0, 1, {2}),
                  change(change_kind::hold_created, 1, 1, {5, 6}, "cus\tc"),
                  change(change_kind::hold_expired, 1, 1, {5, 6}, "cus\tc")});
    idempotency_record refusal{
        "cus_b", "key-2", "fp2", {409, "{}", ""}, start_ms};
    wait_for([&](store_ack done) {
      store.put_idempotency(refusal, std::move(done));
    });
    wait_for([&](store_ack done) {
      store.create_customer({"cus_b", "b@example.org", "hash", start_ms},
                            std::move(done));
    });
  }

  std::string count(const std::string& table) {
    return psql("SELECT count(*) FROM " + table);
  }
};

// Consumers must not be able to tell which encoding a node uses: the same
// writes give the same records (id, key and value, byte for byte), in the
// same order per key. Only an event's time is the writer's clock.
TEST_F(journal_relay_test, a_journal_node_relays_what_a_pipeline_node_does) {
  // The pipeline node writes to a database of its own.
  auto other = make_random_id("rsv_test");
  ASSERT_EQ(std::system(("createdb " + other).c_str()), 0);
  auto other_dsn = "dbname=" + other;
  ASSERT_TRUE(apply_migrations(other_dsn));
  std::map<batch_encoding, std::vector<record>> relayed;
  for (auto [encoding, dsn] : {std::pair{batch_encoding::pipeline, other_dsn},
                               std::pair{batch_encoding::journal, dsn_}}) {
    auto store = open(config(dsn, encoding, "node"), true);
    write_every_kind(*store);
    test::snapshot_sections(*store, {0, 1});
    store->close();
    auto reader = make_pg_outbox_reader(dsn);
    relayed[encoding] = relay_all(*reader);
  }
  std::system(("dropdb --force --if-exists " + other).c_str());
  // Written once: nothing went to the outbox, and the journal is gone now
  // that it is projected, relayed and covered by snapshots.
  EXPECT_EQ(count("outbox"), "0\n");
  EXPECT_EQ(count("journal"), "0\n");

  const auto& pipeline = relayed[batch_encoding::pipeline];
  const auto& journal = relayed[batch_encoding::journal];
  ASSERT_EQ(pipeline.size(), 9u) << "the event and eight changes";
  ASSERT_EQ(journal.size(), pipeline.size());
  std::map<std::string, std::vector<std::string>> order[2];
  std::map<std::string, const record*> by_id;
  for (const auto& r : pipeline) {
    order[0][r.key].push_back(r.id);
    by_id[r.id] = &r;
  }
  for (const auto& r : journal) {
    order[1][r.key].push_back(r.id);
    ASSERT_EQ(by_id.count(r.id), 1u) << r.id << " only from the journal";
    const auto& twin = *by_id[r.id];
    EXPECT_EQ(r.key, twin.key) << r.id;
    if (r.id != "evt_gala:event.created") {
      EXPECT_EQ(r.value, twin.value) << r.id;
      continue;
    }
    auto value = nlohmann::json::parse(r.value);
    auto expected = nlohmann::json::parse(twin.value);
    EXPECT_TRUE(
        parse_rfc3339(value["occurred_at"].get<std::string>()).has_value());
    value.erase("occurred_at");
    expected.erase("occurred_at");
    EXPECT_EQ(value, expected);
  }
  EXPECT_EQ(order[0], order[1]);
  EXPECT_EQ(
      order[1]["gala/stalls"],
      (std::vector<std::string>{"hld_0_0" + gala_hash + ":hold.created",
                                "bkg_0_0" + gala_hash + ":booking.confirmed",
                                "bkg_0_0" + gala_hash + ":booking.cancelled",
                                "hld_0_1" + gala_hash + ":hold.created",
                                "hld_0_1" + gala_hash + ":hold.released"}));
  auto expired = by_id.find("hld_1_1" + gala_hash + ":hold.expired");
  ASSERT_NE(expired, by_id.end());
  auto circle = nlohmann::json::parse(expired->second->value);
  EXPECT_EQ(circle["seats"], nlohmann::json::array({"B-6", "B-7"}));
  EXPECT_EQ(circle["customer_id"], "cus\tc");
}

// Kafka unreachable: the projector goes on, and the rows it applied stay
// for the relay (no loss); once relayed they go.
TEST_F(journal_relay_test, rows_are_projected_but_kept_until_relayed) {
  auto store = open(config(dsn_, batch_encoding::journal, "node"), true);
  write_every_kind(*store);
  ASSERT_TRUE(eventually([&] {
    return psql("SELECT count(*) FROM holds") == "4\n" &&
           psql("SELECT count(*) FROM idempotency_records") == "2\n";
  })) << "the projector did not apply the journal";
  EXPECT_NE(count("journal"), "0\n") << "rows went before they were relayed";
  EXPECT_EQ(count("outbox"), "0\n");
  // Projected: the next drain has nothing to do, yet the rows are there.
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  EXPECT_NE(count("journal"), "0\n");

  auto reader = make_pg_outbox_reader(dsn_);
  auto backlog = reader->backlog();
  ASSERT_TRUE(backlog) << describe(backlog.error());
  EXPECT_EQ(backlog->records, 9);
  EXPECT_GT(backlog->oldest_created_at_ms, 0);
  // Relayed and projected, the rows still wait for their sections'
  // snapshots: recovery reads a section's rows after its snapshot.
  test::snapshot_sections(*store, {0, 1});
  EXPECT_EQ(relay_all(*reader).size(), 9u);
  // The trim deleted what the projector had passed and snapshots cover:
  // all of it.
  EXPECT_EQ(count("journal"), "0\n");
  EXPECT_EQ(reader->backlog()->rows, 0);
  store->close();
}

// The other order: relayed before a projector got to the rows (here none
// runs). The projection deletes them as it applies them.
TEST_F(journal_relay_test, rows_relayed_first_go_when_projected) {
  open(config(dsn_, batch_encoding::pipeline, "node", false), true)->close();
  EXPECT_EQ(psql(insert_row_sql(
                "dead/1/0", 1,
                row_of({change(change_kind::hold_created, 0, 0, {0})}), 1)),
            "INSERT 0 1\n");
  EXPECT_EQ(psql(insert_row_sql(
                "dead/1/0", 2,
                row_of({change(change_kind::hold_created, 0, 1, {1})}), 1)),
            "INSERT 0 1\n");
  auto reader = make_pg_outbox_reader(dsn_);
  EXPECT_EQ(relay_all(*reader).size(), 2u);
  EXPECT_EQ(count("journal"), "2\n") << "rows went before they were projected";
  // A drain projects them (as a restart, a section's reload or a partition
  // load does) and, since they are relayed, deletes them.
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  EXPECT_EQ(count("holds"), "2\n");
  EXPECT_EQ(count("journal"), "0\n");
  // Relayed once: nothing is read again.
  EXPECT_TRUE(relay_all(*reader).empty());
}

// Without Kafka no relay will ever come: rows carry no records and go once
// they are projected and their sections' snapshots cover them.
TEST_F(journal_relay_test, without_kafka_rows_go_when_projected) {
  auto store = open(config(dsn_, batch_encoding::journal, "node", false), true);
  write_every_kind(*store);
  ASSERT_TRUE(eventually([&] {
    return psql("SELECT count(*) FROM holds") == "4\n";
  })) << "the projector did not apply the journal";
  EXPECT_NE(count("journal"), "0\n")
      << "rows went before snapshots covered them";
  test::snapshot_sections(*store, {0});
  EXPECT_NE(count("journal"), "0\n")
      << "rows of a section without a snapshot went";
  test::snapshot_sections(*store, {1});
  EXPECT_TRUE(eventually([&] {
    return count("journal") == "0\n" &&
           psql("SELECT count(*) FROM holds") == "4\n";
  })) << "journal rows stayed after projection: "
      << psql("SELECT stream, seq, records FROM journal");
  EXPECT_EQ(count("outbox"), "0\n");
  EXPECT_EQ(psql("SELECT DISTINCT reader FROM journal_cursors"), "projector\n");
  auto reader = make_pg_outbox_reader(dsn_);
  EXPECT_TRUE(relay_all(*reader).empty());
  store->close();
}

// After a snapshot commits, the projector sweeps the projected rows it
// covers 5,000 at a time (the oldest first); while a window comes back
// full it goes on, a window a second, until none is left.
TEST_F(journal_relay_test, the_sweep_goes_on_while_its_windows_are_full) {
  auto store = open(config(dsn_, batch_encoding::journal, "node", false), true);
  // 12,000 rows of a node that is gone, projected long ago, without
  // records: they wait only for a snapshot of section 0.
  EXPECT_EQ(psql("INSERT INTO journal (stream, seq, created_at, entries, "
                 "body, sections) SELECT 'gone/1/0', n, now(), 1, "
                 "'\\x00'::bytea, '{0}' FROM generate_series(1, 12000) n"),
            "INSERT 0 12000\n");
  EXPECT_EQ(psql("INSERT INTO journal_cursors (reader, stream, seq, "
                 "updated_at) VALUES ('projector', 'gone/1/0', 12000, now())"),
            "INSERT 0 1\n");
  test::snapshot_sections(*store, {0});
  EXPECT_TRUE(eventually([&] { return count("journal") == "0\n"; },
                         std::chrono::seconds(20)))
      << count("journal") << " rows were left";
  store->close();
}

// kill -9 of the relay between Kafka's acknowledgement and the trim: the
// next relay reads the rows again. Duplicates, never a loss.
TEST_F(journal_relay_test, a_relay_that_dies_before_its_trim_is_repeated) {
  auto store = open(config(dsn_, batch_encoding::journal, "node"), true);
  write(*store, {change(change_kind::hold_created, 0, 0, {0}),
                 change(change_kind::hold_created, 0, 1, {1}),
                 change(change_kind::hold_released, 0, 1, {1})});
  auto first = make_pg_outbox_reader(dsn_);
  auto delivered = relay_all(*first, false);
  ASSERT_EQ(delivered.size(), 4u);
  // Its connection ends, and the relay lease with it once PostgreSQL has
  // ended its session: the next relay reads nothing until then.
  first.reset();
  auto second = make_pg_outbox_reader(dsn_);
  std::vector<record> again;
  ASSERT_TRUE(eventually([&] {
    again = relay_all(*second);
    return !again.empty();
  }));
  EXPECT_EQ(ids_of(again), ids_of(delivered));
  second.reset();
  // Trimmed this time: a third relay starts after them.
  write(*store, {change(change_kind::hold_created, 0, 2, {2})});
  auto third = make_pg_outbox_reader(dsn_);
  std::vector<record> after;
  ASSERT_TRUE(eventually([&] {
    after = relay_all(*third);
    return !after.empty();
  }));
  EXPECT_EQ(ids_of(after),
            std::vector<std::string>{"hld_0_2" + gala_hash + ":hold.created"});
  // Relayed and projected before the snapshot: the projector's sweep
  // deletes them once it covers them.
  test::snapshot_sections(*store, {0});
  EXPECT_TRUE(eventually([&] { return count("journal") == "0\n"; }))
      << psql("SELECT stream, seq, records FROM journal");
  store->close();
}

// A row that does not decode stops the relay with its name; nothing after
// it is relayed, nothing is skipped.
TEST_F(journal_relay_test, a_damaged_row_stops_the_relay_and_is_named) {
  open(config(dsn_, batch_encoding::pipeline, "node", false), true)->close();
  EXPECT_EQ(psql(insert_row_sql(
                "dead/1/0", 1,
                row_of({change(change_kind::hold_created, 0, 0, {0})}), 1)),
            "INSERT 0 1\n");
  auto damaged = row_of({change(change_kind::hold_created, 0, 1, {1})});
  damaged[damaged.size() / 2] ^= 0x20;
  EXPECT_EQ(psql(insert_row_sql("dead/1/0", 2, damaged, 1)), "INSERT 0 1\n");
  auto reader = make_pg_outbox_reader(dsn_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto rows = reader->read(100);
    ASSERT_FALSE(rows) << "the relay read past a damaged journal row";
    EXPECT_EQ(code_of(rows.error()), errc::validation_failed);
    auto error = describe(rows.error());
    EXPECT_NE(error.find("journal row dead/1/0 seq 2"), std::string::npos)
        << error;
    EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
  }
  EXPECT_EQ(count("journal"), "2\n");
  // Repaired (here: removed by hand), the relay goes on from where it was.
  psql("DELETE FROM journal WHERE seq = 2");
  EXPECT_EQ(ids_of(relay_all(*reader)),
            std::vector<std::string>{"hld_0_0" + gala_hash + ":hold.created"});
}

// Mixed nodes, or an upgrade: a section's writes move from a pipeline node
// (outbox rows) to a journal node. The relay reads both tables, oldest
// first, so the section's records stay in order.
TEST_F(journal_relay_test, outbox_rows_and_journal_rows_are_relayed_in_order) {
  {
    auto before = open(config(dsn_, batch_encoding::pipeline, "old"), true);
    write(*before, {change(change_kind::hold_created, 0, 0, {0, 1})});
    before->close();
  }
  auto after = open(config(dsn_, batch_encoding::journal, "new"), false);
  write(*after, {change(change_kind::booking_confirmed, 0, 0, {0, 1}),
                 change(change_kind::hold_created, 0, 1, {2})});
  auto reader = make_pg_outbox_reader(dsn_);
  auto backlog = reader->backlog();
  ASSERT_TRUE(backlog);
  EXPECT_EQ(backlog->records, 4);
  EXPECT_EQ(
      ids_of(relay_all(*reader)),
      (std::vector<std::string>{"evt_gala:event.created",
                                "hld_0_0" + gala_hash + ":hold.created",
                                "bkg_0_0" + gala_hash + ":booking.confirmed",
                                "hld_0_1" + gala_hash + ":hold.created"}));
  test::snapshot_sections(*after, {0});
  EXPECT_TRUE(eventually([&] { return count("journal") == "0\n"; }))
      << psql("SELECT stream, seq, records FROM journal");
  after->close();
  EXPECT_EQ(count("outbox"), "0\n");
}

// A writer that lost its connection ends its former backend before it
// writes again, so that a COMMIT still under way there cannot land after
// the stream's next row. A backend of the same pid that started later is
// another one, and is left alone.
TEST_F(journal_relay_test, a_former_backend_is_ended_and_only_it) {
  auto former = pg::connect(dsn_);
  ASSERT_EQ(PQstatus(former.get()), CONNECTION_OK);
  auto id = pg::backend_of(former.get());
  ASSERT_NE(id.pid, 0);
  auto next = pg::connect(dsn_);
  ASSERT_EQ(PQstatus(next.get()), CONNECTION_OK);
  auto alive = [&] {
    return psql("SELECT count(*) FROM pg_stat_activity WHERE pid = " +
                std::to_string(id.pid)) == "1\n";
  };
  auto someone_else = id;
  someone_else.started = "2000-01-01 00:00:00+00";
  EXPECT_TRUE(pg::end_former_backend(next.get(), someone_else));
  EXPECT_TRUE(alive());
  EXPECT_TRUE(pg::end_former_backend(next.get(), id));
  EXPECT_FALSE(alive()) << "it waits until the backend is gone";
  // Gone already: nothing to do.
  EXPECT_TRUE(pg::end_former_backend(next.get(), id));
  EXPECT_TRUE(pg::end_former_backend(next.get(), {}));
}

} // namespace
} // namespace rsv::persistence
