// The journal in PostgreSQL (migration 0008, `--pg-batch-encoding
// journal`): what was acknowledged is read back whether or not the
// projector got to it, a damaged row stops recovery with its name instead
// of being skipped, and a database written without the journal goes on
// with it.

#include "core/errc.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/recovery.hpp"
#include "tests/persistence/pg_test_support.hpp"

#include <algorithm>
#include <future>
#include <gtest/gtest.h>

namespace rsv::persistence {
namespace {

constexpr millis start_ms = 1'800'000'000'000;

seat_change change(change_kind kind, uint32_t section, uint32_t slot,
                   std::vector<uint32_t> seats,
                   std::string customer = "cus_a") {
  seat_change c;
  c.kind = kind;
  c.event_id = "concert";
  c.section_id = section == 0 ? "floor" : "balcony";
  c.section_no = section;
  c.slot = slot;
  c.customer_id = std::move(customer);
  c.seat_indexes = std::move(seats);
  c.at_ms = start_ms;
  c.expires_at_ms = start_ms + 600'000;
  c.amount_cents = 5000 * static_cast<int64_t>(c.seat_indexes.size());
  return c;
}

std::vector<caf::error> wait_all(std::vector<std::future<caf::error>>& acks) {
  std::vector<caf::error> out;
  for (auto& ack : acks) {
    if (ack.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "an acknowledgement did not come within 30 s";
      continue;
    }
    out.push_back(ack.get());
  }
  acks.clear();
  return out;
}

class journal_test : public test::fresh_database {
protected:
  void SetUp() override {
    fresh_database::SetUp();
    ASSERT_TRUE(apply_migrations(dsn_));
    // The concert is written as any node writes an event: to its tables.
    pg_store store{config(batch_encoding::pipeline)};
    std::promise<caf::error> created;
    store.create_event(test::concert(start_ms), {0, 1},
                       [&](caf::error err) { created.set_value(err); });
    ASSERT_FALSE(created.get_future().get());
  }

  pg_store_config config(batch_encoding encoding) {
    pg_store_config c{dsn_};
    c.encoding = encoding;
    c.writers = 2;
    c.node = "test";
    return c;
  }

  /// Appends `changes` through a store and waits for every acknowledgement.
  static void append(pg_store& store, const std::vector<seat_change>& changes) {
    std::vector<std::future<caf::error>> acks;
    for (const auto& c : changes) {
      auto promise = std::make_shared<std::promise<caf::error>>();
      acks.push_back(promise->get_future());
      store.append(c, [promise](caf::error err) { promise->set_value(err); });
    }
    for (const auto& err : wait_all(acks))
      ASSERT_FALSE(err) << describe(err);
  }

  /// Writes a journal row as a writer whose node then died would have left
  /// it: committed, not projected.
  void insert_row(const std::string& stream, int64_t seq,
                  const std::string& body) {
    auto bytes = hex_of(body);
    EXPECT_EQ(psql("INSERT INTO journal VALUES ('" + stream + "', " +
                   std::to_string(seq) + ", now(), 1, '\\\\x" + bytes +
                   "'::bytea)"),
              "INSERT 0 1\n");
  }

  /// `bytes` in hex, as bytea's hex format wants them after its `\x`.
  static std::string hex_of(const std::string& bytes) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += hex[c >> 4];
      out += hex[c & 15];
    }
    return out;
  }

  static std::string row_of(const std::vector<seat_change>& changes) {
    journal::encoder out;
    for (const auto& c : changes)
      out.add(c);
    return out.finish();
  }
};

TEST_F(journal_test, rows_a_dead_node_left_are_read_back_in_order) {
  auto answer = std::make_shared<idempotency_record>();
  answer->customer_id = "cus_a";
  answer->key = "key-1";
  answer->fingerprint = "fp";
  answer->response = {201, R"({"hold_id":"hld_0_0"})", "/v1/holds/hld_0_0"};
  answer->created_at_ms = start_ms;
  auto held = change(change_kind::hold_created, 0, 0, {0, 1});
  held.idempotency = answer;
  // Two streams of a node that committed these and died before its
  // projector applied them; each hold changes in a later row than the one
  // that created it.
  insert_row("dead/1/0", 1,
             row_of({held, change(change_kind::hold_created, 0, 1, {2})}));
  insert_row("dead/1/0", 2,
             row_of({change(change_kind::booking_confirmed, 0, 0, {0, 1}),
                     change(change_kind::hold_created, 0, 2, {3})}));
  insert_row("dead/1/1", 1,
             row_of({change(change_kind::hold_created, 1, 0, {7}, "cus_b")}));
  insert_row("dead/1/1", 2,
             row_of({change(change_kind::hold_expired, 1, 0, {7}, "cus_b")}));

  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  auto floor = state->holds.at(0);
  std::sort(floor.begin(), floor.end(),
            [](const auto& a, const auto& b) { return a.slot < b.slot; });
  ASSERT_EQ(floor.size(), 3u);
  EXPECT_EQ(floor[0].status, hold_status::booked);
  EXPECT_EQ(floor[0].seats, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(floor[1].status, hold_status::active);
  EXPECT_EQ(floor[2].status, hold_status::active);
  EXPECT_EQ(floor[2].seats, (std::vector<uint32_t>{3}));
  // The balcony's one hold expired: read only as the hold that numbers the
  // next one.
  ASSERT_EQ(state->holds.at(1).size(), 1u);
  EXPECT_EQ(state->holds.at(1)[0].status, hold_status::expired);
  ASSERT_EQ(state->idempotency.size(), 1u);
  EXPECT_EQ(state->idempotency[0].response.location, "/v1/holds/hld_0_0");
  EXPECT_EQ(psql("SELECT count(*) FROM journal"), "0\n");
  EXPECT_EQ(psql("SELECT string_agg(seat_id || '=' || status, ',' ORDER BY "
                 "seat_id) FROM seat_state"),
            "A-1=booked,A-2=booked,A-3=held,A-4=held\n");
}

// A node killed with kill -9 leaves its backends behind, one perhaps in
// the middle of a transaction. The next process of the node ends them and
// waits before it reads the state, so that transaction cannot commit
// afterwards: a hold no client was told of would then sit in the tables on
// a seat the new process sells again. Backends of other programs, and the
// new process's own, are left alone.
TEST_F(journal_test, a_dead_process_cannot_commit_after_the_next_one_read) {
  auto former = pg::connect(dsn_ + " application_name=reservations-node/1.2");
  auto tool = pg::connect(dsn_ + " application_name=reservations-tool");
  ASSERT_EQ(PQstatus(former.get()), CONNECTION_OK);
  ASSERT_EQ(PQstatus(tool.get()), CONNECTION_OK);
  auto exec = [](PGconn* conn, const std::string& sql) {
    pg::result_ptr result{PQexec(conn, sql.c_str())};
    return PQresultStatus(result.get());
  };
  ASSERT_EQ(exec(former.get(), "BEGIN"), PGRES_COMMAND_OK);
  auto row = row_of({change(change_kind::hold_created, 0, 0, {0})});
  ASSERT_EQ(exec(former.get(), "INSERT INTO journal VALUES ('dead/1/0', 1, "
                               "now(), 1, '\\x" +
                                   hex_of(row) + "'::bytea)"),
            PGRES_COMMAND_OK);

  name_node_connections();
  auto own = pg::connect(dsn_);
  ASSERT_EQ(PQstatus(own.get()), CONNECTION_OK);
  auto err = end_former_node_backends(dsn_);
  ASSERT_FALSE(err) << describe(err);
  EXPECT_NE(exec(former.get(), "COMMIT"), PGRES_COMMAND_OK)
      << "the former process's transaction committed after the state was "
         "read";
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  EXPECT_EQ(state->holds.count(0), 0u);
  EXPECT_EQ(psql("SELECT count(*) FROM journal"), "0\n");
  EXPECT_TRUE(pg::answers(tool.get())) << "another program's backend ended";
  EXPECT_TRUE(pg::answers(own.get())) << "the process ended its own backend";
}

TEST_F(journal_test, a_damaged_row_stops_recovery_and_is_named) {
  insert_row("dead/1/0", 1,
             row_of({change(change_kind::hold_created, 0, 0, {0})}));
  auto damaged = row_of({change(change_kind::hold_created, 0, 1, {1})});
  damaged[damaged.size() / 2] ^= 0x20;
  insert_row("dead/1/0", 2, damaged);

  auto state = load_recorded_state(dsn_);
  ASSERT_FALSE(state) << "recovery read past a damaged journal row";
  auto error = describe(state.error());
  EXPECT_NE(error.find("journal row dead/1/0 seq 2"), std::string::npos)
      << error;
  EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
  // Nothing was skipped or half applied: both rows wait for a repair.
  EXPECT_EQ(psql("SELECT count(*) FROM journal"), "2\n");
  EXPECT_EQ(psql("SELECT count(*) FROM holds"), "0\n");
}

TEST_F(journal_test, a_section_reload_reads_what_the_journal_acknowledged) {
  pg_store store{config(batch_encoding::journal)};
  store.learn({test::recovered(test::concert())});
  append(store, {change(change_kind::hold_created, 0, 0, {0, 1}),
                 change(change_kind::hold_created, 0, 1, {5}),
                 change(change_kind::hold_released, 0, 1, {5})});
  std::promise<caf::expected<std::vector<recorded_hold>>> loaded;
  store.load_section(0, [&](caf::expected<std::vector<recorded_hold>> holds) {
    loaded.set_value(std::move(holds));
  });
  auto holds = loaded.get_future().get();
  ASSERT_TRUE(holds) << describe(holds.error());
  // The live hold, and the released one as the last hold of the section.
  ASSERT_EQ(holds->size(), 2u);
  std::sort(holds->begin(), holds->end(),
            [](const auto& a, const auto& b) { return a.slot < b.slot; });
  EXPECT_EQ((*holds)[0].status, hold_status::active);
  EXPECT_EQ((*holds)[0].seats, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ((*holds)[1].status, hold_status::released);
}

TEST_F(journal_test, a_database_written_without_the_journal_goes_on_with_it) {
  {
    pg_store before{config(batch_encoding::pipeline)};
    before.learn({test::recovered(test::concert())});
    append(before, {change(change_kind::hold_created, 0, 0, {0}),
                    change(change_kind::hold_created, 0, 1, {1}),
                    change(change_kind::booking_confirmed, 0, 1, {1})});
  }
  {
    pg_store after{config(batch_encoding::journal)};
    after.learn({test::recovered(test::concert())});
    append(after, {change(change_kind::hold_released, 0, 0, {0}),
                   change(change_kind::booking_cancelled, 0, 1, {1}),
                   change(change_kind::hold_created, 0, 2, {2})});
    test::snapshot_sections(after, {0, 1});
  }
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  EXPECT_EQ(psql("SELECT slot, status FROM holds ORDER BY slot"),
            "0|released\n1|booked\n2|active\n");
  EXPECT_EQ(psql("SELECT slot, status FROM bookings"), "1|cancelled\n");
  EXPECT_EQ(psql("SELECT count(*) FROM journal"), "0\n");
}

// -- per-section snapshots (migration 0012) -----------------------------------

recorded_hold hold_of(uint32_t slot, std::vector<uint32_t> seats,
                      hold_status status, bool cancelled = false) {
  recorded_hold hold;
  hold.slot = slot;
  hold.customer_id = "cus_a";
  hold.seats = std::move(seats);
  hold.status = status;
  hold.expires_at_ms = start_ms + 600'000;
  hold.booked_at_ms = status == hold_status::booked ? start_ms : 0;
  hold.cancelled = cancelled;
  return hold;
}

class snapshot_test : public journal_test {
protected:
  /// Writes a snapshot as a section's writer does: numbered after every
  /// journal row there is now.
  void insert_snapshot(uint32_t section_no, std::vector<recorded_hold> holds,
                       bool damaged = false) {
    journal::section_snapshot snapshot{section_no, std::move(holds)};
    auto body = journal::encode_snapshot(snapshot);
    if (damaged) body[body.size() / 2] ^= 0x20;
    EXPECT_EQ(psql("INSERT INTO section_snapshots VALUES (" +
                   std::to_string(section_no) +
                   ", nextval('journal_order'), now(), " +
                   std::to_string(snapshot.holds.size()) + ", '\\\\x" +
                   hex_of(body) + "'::bytea)"),
              "INSERT 0 1\n");
  }
};

// The point of snapshots: a restart reads each section's snapshot and the
// rows numbered after it, and projects nothing first. A row numbered before
// a section's snapshot is in it and is not applied again.
TEST_F(snapshot_test, recovery_reads_snapshots_and_the_rows_after_them) {
  // Before the snapshot: slot 0 created. Applied again it would make the
  // booked hold active.
  insert_row("dead/1/0", 1,
             row_of({change(change_kind::hold_created, 0, 0, {0, 1})}));
  insert_snapshot(0, {hold_of(0, {0, 1}, hold_status::booked),
                      hold_of(1, {2}, hold_status::booked)});
  insert_snapshot(1, {});
  auto answer = std::make_shared<idempotency_record>();
  answer->customer_id = "cus_a";
  answer->key = "key-9";
  answer->fingerprint = "fp";
  answer->response = {201, "{}", "/v1/holds/hld_0_2"};
  answer->created_at_ms = start_ms;
  auto created = change(change_kind::hold_created, 0, 2, {3});
  created.idempotency = answer;
  insert_row(
      "dead/1/0", 2,
      row_of({change(change_kind::booking_cancelled, 0, 1, {2}), created}));
  insert_row("dead/1/1", 1,
             row_of({change(change_kind::hold_created, 1, 0, {7}, "cus_b"),
                     change(change_kind::hold_created, 1, 1, {8}, "cus_b")}));
  insert_row("dead/1/1", 2,
             row_of({change(change_kind::hold_released, 1, 1, {8}, "cus_b")}));

  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  auto floor = state->holds.at(0);
  std::sort(floor.begin(), floor.end(),
            [](const auto& a, const auto& b) { return a.slot < b.slot; });
  ASSERT_EQ(floor.size(), 3u);
  EXPECT_EQ(floor[0].status, hold_status::booked);
  EXPECT_FALSE(floor[0].cancelled);
  EXPECT_EQ(floor[1].status, hold_status::booked);
  EXPECT_TRUE(floor[1].cancelled);
  EXPECT_EQ(floor[2].status, hold_status::active);
  EXPECT_EQ(floor[2].seats, (std::vector<uint32_t>{3}));
  auto balcony = state->holds.at(1);
  std::sort(balcony.begin(), balcony.end(),
            [](const auto& a, const auto& b) { return a.slot < b.slot; });
  ASSERT_EQ(balcony.size(), 2u);
  EXPECT_EQ(balcony[0].status, hold_status::active);
  EXPECT_EQ(balcony[0].customer_id, "cus_b");
  EXPECT_EQ(balcony[1].status, hold_status::released);
  // The answer in an unprojected row is replayed too.
  ASSERT_EQ(state->idempotency.size(), 1u);
  EXPECT_EQ(state->idempotency[0].response.location, "/v1/holds/hld_0_2");
  // Nothing was projected to read this.
  EXPECT_EQ(psql("SELECT count(*) FROM holds"), "0\n");
  EXPECT_EQ(psql("SELECT count(*) FROM journal"), "4\n");
}

// A section without a snapshot (a database before migration 0012, or a
// section created since the last one): the journal is projected and the
// tables read, as before snapshots.
TEST_F(snapshot_test, a_section_without_a_snapshot_reads_the_tables) {
  insert_snapshot(0, {hold_of(0, {0}, hold_status::active)});
  insert_row("dead/1/0", 1,
             row_of({change(change_kind::hold_created, 1, 0, {4})}));
  auto state = load_recorded_state(dsn_);
  ASSERT_TRUE(state) << describe(state.error());
  EXPECT_EQ(state->holds.count(0), 0u) << "the snapshot was read";
  ASSERT_EQ(state->holds.at(1).size(), 1u);
  EXPECT_EQ(psql("SELECT count(*) FROM holds"), "1\n");
}

TEST_F(snapshot_test, a_damaged_snapshot_stops_recovery_and_is_named) {
  insert_snapshot(0, {hold_of(0, {0}, hold_status::active)}, true);
  insert_snapshot(1, {});
  auto state = load_recorded_state(dsn_);
  ASSERT_FALSE(state) << "recovery read a damaged snapshot";
  auto error = describe(state.error());
  EXPECT_NE(error.find("the snapshot of section 0"), std::string::npos)
      << error;
  EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
}

// A snapshot is the section's memory, which is ahead of the store while
// its writes are in flight. When one of them fails, a snapshot the section
// took before it heard so would hold a change the store refused: it is not
// written, until the section has reloaded.
TEST_F(snapshot_test, a_snapshot_taken_before_a_failed_write_is_not_written) {
  pg_store store{config(batch_encoding::journal)};
  store.learn({test::recovered(test::concert(start_ms))});
  ASSERT_TRUE(store.keeps_snapshots());
  store.faults()->commit_failure_percent = 100;
  std::promise<caf::error> failed;
  store.append(change(change_kind::hold_created, 0, 0, {0}),
               [&](caf::error err) { failed.set_value(err); });
  ASSERT_TRUE(failed.get_future().get()) << "the injected failure failed not";
  store.faults()->commit_failure_percent = 0;
  auto put = [&] {
    journal::section_snapshot snapshot{0,
                                       {hold_of(0, {0}, hold_status::active)}};
    std::promise<caf::error> written;
    store.put_snapshot(0, journal::encode_snapshot(snapshot), 1, {},
                       [&](caf::error err) { written.set_value(err); });
    return written.get_future().get();
  };
  EXPECT_TRUE(put()) << "a snapshot holding a refused hold was written";
  EXPECT_EQ(psql("SELECT count(*) FROM section_snapshots"), "0\n");
  // The section reloads; what it snapshots from then on is the store's.
  std::promise<bool> loaded;
  store.load_section(0, [&](caf::expected<std::vector<recorded_hold>> holds) {
    loaded.set_value(static_cast<bool>(holds));
  });
  ASSERT_TRUE(loaded.get_future().get());
  test::snapshot_sections(store, {0});
  EXPECT_EQ(psql("SELECT holds FROM section_snapshots"), "0\n");
}

// A node that lost a partition to another (frozen, or cut off) may still
// hold a snapshot of one of its sections. Numbered after the new owner's
// rows, it would hide them from a restart: it is fenced like a write.
TEST_F(snapshot_test, a_snapshot_under_a_superseded_epoch_is_refused) {
  pg_store store{config(batch_encoding::journal)};
  store.learn({test::recovered(test::concert(start_ms))});
  EXPECT_EQ(psql("INSERT INTO cluster_partitions (partition, epoch) VALUES "
                 "(3, 2)"),
            "INSERT 0 1\n");
  auto put = [&](uint64_t epoch) {
    journal::section_snapshot snapshot{0,
                                       {hold_of(0, {0}, hold_status::active)}};
    std::promise<caf::error> written;
    store.put_snapshot(0, journal::encode_snapshot(snapshot), 1,
                       write_fence{3, epoch},
                       [&](caf::error err) { written.set_value(err); });
    return written.get_future().get();
  };
  auto stale = put(1);
  EXPECT_EQ(code_of(stale), errc::fenced) << describe(stale);
  EXPECT_EQ(psql("SELECT count(*) FROM section_snapshots"), "0\n");
  auto current = put(2);
  EXPECT_FALSE(current) << describe(current);
  EXPECT_EQ(psql("SELECT holds FROM section_snapshots"), "1\n");
}

} // namespace
} // namespace rsv::persistence
