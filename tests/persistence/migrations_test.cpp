#include "core/errc.hpp"
#include "persistence/migrations.hpp"
#include "tests/persistence/pg_test_support.hpp"

#include <gtest/gtest.h>
#include <thread>

namespace rsv::persistence {
namespace {

using migrations_test = test::fresh_database;

TEST_F(migrations_test, an_empty_database_gets_every_table) {
  auto report = apply_migrations(dsn_);
  ASSERT_TRUE(report) << describe(report.error());
  const auto& all = all_migrations();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(report->applied.size(), all.size());
  EXPECT_EQ(report->schema_version, all.back().version);
  auto tables = psql("SELECT string_agg(table_name, ',' ORDER BY table_name "
                     "COLLATE ucs_basic) "
                     "FROM information_schema.tables WHERE table_schema = "
                     "'public'");
  EXPECT_EQ(tables, "bookings,cluster_partitions,cluster_settings,customers,"
                    "events,holds,idempotency_records,journal,"
                    "journal_cursors,outbox,"
                    "schema_migrations,seat_state,section_snapshots,"
                    "sections\n");
}

TEST_F(migrations_test, applying_again_changes_nothing) {
  ASSERT_TRUE(apply_migrations(dsn_));
  psql("INSERT INTO customers VALUES ('cus_1', 'a@b.example', 'x', now())");
  auto again = apply_migrations(dsn_);
  ASSERT_TRUE(again) << describe(again.error());
  EXPECT_TRUE(again->applied.empty());
  EXPECT_EQ(again->schema_version, all_migrations().back().version);
  EXPECT_EQ(psql("SELECT count(*) FROM customers"), "1\n");
  EXPECT_EQ(psql("SELECT count(*) FROM schema_migrations"),
            std::to_string(all_migrations().size()) + "\n");
}

TEST_F(migrations_test, nodes_starting_at_once_apply_each_migration_once) {
  constexpr int nodes = 4;
  std::array<caf::expected<migration_report>, nodes> reports{
      migration_report{}, migration_report{}, migration_report{},
      migration_report{}};
  std::vector<std::thread> threads;
  for (int i = 0; i < nodes; ++i)
    threads.emplace_back([&, i] { reports[i] = apply_migrations(dsn_); });
  for (auto& thread : threads)
    thread.join();
  std::size_t applied = 0;
  for (const auto& report : reports) {
    ASSERT_TRUE(report) << describe(report.error());
    applied += report->applied.size();
    EXPECT_EQ(report->schema_version, all_migrations().back().version);
  }
  EXPECT_EQ(applied, all_migrations().size());
  EXPECT_EQ(psql("SELECT count(*) FROM schema_migrations"),
            std::to_string(all_migrations().size()) + "\n");
}

// Every index on holds is paid for by every hold written (migrations 0010
// and 0011): only the ones the node reads by stay.
TEST_F(migrations_test, holds_keep_only_the_indexes_the_node_reads_by) {
  ASSERT_TRUE(apply_migrations(dsn_));
  EXPECT_EQ(psql("SELECT indexname FROM pg_indexes WHERE tablename = 'holds' "
                 "ORDER BY indexname"),
            "holds_live\nholds_pkey\n");
  EXPECT_EQ(psql("SELECT count(*) FROM pg_constraint WHERE conrelid = "
                 "'holds'::regclass AND contype = 'f'"),
            "0\n");
}

TEST_F(migrations_test, the_seat_state_view_shows_held_and_booked_seats) {
  ASSERT_TRUE(apply_migrations(dsn_));
  psql("INSERT INTO events (id, name, starts_at, hold_ttl_seconds) VALUES "
       "('e', 'E', now(), 600);"
       "INSERT INTO sections VALUES (0, 'e', 'floor', 0, 'Floor', 100, "
       "'[{\\\"label\\\": \\\"A\\\", \\\"seats\\\": 3}]');"
       "INSERT INTO holds VALUES (0, 0, 'c1', '{A-1,A-2}', 'booked', now(), "
       "now(), now()), (0, 1, 'c2', '{A-3}', 'active', now(), now(), now()),"
       " (0, 2, 'c3', '{A-3}', 'expired', now(), now(), now());"
       "INSERT INTO bookings VALUES (0, 0, 'c1', 'confirmed', 200, now(), "
       "NULL)");
  EXPECT_EQ(psql("SELECT string_agg(seat_id || '=' || status, ',' ORDER BY "
                 "seat_id) FROM seat_state"),
            "A-1=booked,A-2=booked,A-3=held\n");
}

TEST(migrations, an_unreachable_database_is_an_error_not_a_hang) {
  auto report = apply_migrations("host=127.0.0.1 port=1 connect_timeout=2");
  ASSERT_FALSE(report);
  EXPECT_EQ(code_of(report.error()), errc::unavailable);
  EXPECT_NE(describe(report.error()).find("connecting to PostgreSQL"),
            std::string::npos);
}

} // namespace
} // namespace rsv::persistence
