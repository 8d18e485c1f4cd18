// Acknowledged means durable, under load: eight clients hold, book, release
// and cancel at once against the real binary with --store postgres (the
// PostgreSQL of scripts/test), the process gets SIGKILL at a kill point, and
// a new process on the same database must show every change a client was
// answered 2xx for, nothing that contradicts an answer, no seat taken twice,
// and counts that add up.
//
// Each kill point runs on a fresh database and is bounded in time; the
// clients take connection errors as indeterminate outcomes and stop. The
// journal's kill points run the node with --pg-batch-encoding journal: once
// with a projector that gathers ten seconds of rows, so that the restart
// finds acknowledged changes only in the journal, and once with one that
// projects without pause, so that the kill is likely to land while it
// projects (its steps run back to back under the load). With snapshots
// every few writes, the kill lands while sections write snapshots and while
// the projector deletes the rows they cover, and the restart reads the
// sections from their snapshots and the rows after them: once with the
// rows also in the tables, once with them only in the journal.

#include "harness.hpp"
#include "load.hpp"

#include <csignal>
#include <functional>
#include <iostream>

namespace rsv::e2e {
namespace {

struct kill_point {
  std::string name;
  load_config::plan plan;
  /// The server is killed as soon as the load's progress satisfies this.
  std::function<bool(const load_progress&)> reached;
  /// More flags of the node, before and after the kill.
  std::vector<std::string> flags = {};
  /// Whether the kill must leave journal rows for the restart to project.
  bool journal_left = false;
  /// Whether the restart must read the sections from their snapshots.
  bool from_snapshots = false;
};

const std::vector<std::string> lazy_journal = {
    "--pg-batch-encoding", "journal", "--pg-journal-step-interval-ms", "10000"};
const std::vector<std::string> eager_journal = {
    "--pg-batch-encoding", "journal", "--pg-journal-step-interval-ms", "0"};
const std::vector<std::string> snapshots_eager = {
    "--pg-batch-encoding",
    "journal",
    "--pg-journal-step-interval-ms",
    "0",
    "--snapshot-writes",
    "5",
    "--snapshot-seconds",
    "1"};
const std::vector<std::string> snapshots_lazy = {
    "--pg-batch-encoding",
    "journal",
    "--pg-journal-step-interval-ms",
    "10000",
    "--snapshot-writes",
    "5",
    "--snapshot-seconds",
    "1"};

void PrintTo(const kill_point& point, std::ostream* out) {
  *out << point.name;
}

class crash_test : public ::testing::TestWithParam<kill_point> {};

json crash_event() {
  auto body = event_json(
      "crash",
      {section_json("floor", 5000,
                    {{"A", 30}, {"B", 30}, {"C", 30}, {"D", 30}}),
       section_json("left", 3000, {{"A", 20}, {"B", 20}, {"C", 20}}),
       section_json("right", 3000, {{"A", 20}, {"B", 20}, {"C", 20}})});
  // No hold expires while the test runs: every status comes from a client.
  body["hold_ttl_seconds"] = 600;
  return body;
}

TEST_P(crash_test, acknowledged_changes_survive_kill_minus_nine) {
  const auto& point = GetParam();
  scratch_database database;
  auto args = database.server_args();
  args.insert(args.end(), {"--request-timeout-ms", "5000"});
  args.insert(args.end(), point.flags.begin(), point.flags.end());
  auto node = std::make_unique<server_process>(args);
  http_connection http{node->port()};
  create_event(http, node->admin_token(), crash_event());

  load_config config;
  config.event_id = "crash";
  for (const auto* section : {"floor", "left", "right"})
    config.sections[section] = get_seat_map(http, "crash", section).order;
  for (int i = 0; i < 8; ++i)
    config.customers.push_back(new_customer(http, "crash"));
  config.what = point.plan;
  config.duration_max = 20s;
  config.seed = static_cast<unsigned>(std::hash<std::string>{}(point.name));

  load_generator load(node->port(), config);
  load.start();
  bool reached = load.wait_for(point.reached, 20s);
  // No goodbye: the process dies with requests in flight.
  ASSERT_EQ(::kill(node->pid(), SIGKILL), 0);
  auto at_kill = load.progress();
  node->stop();
  auto killed_log = node->log();
  load.join();
  ASSERT_TRUE(reached) << "the kill point was never reached: "
                       << at_kill.acknowledged << " acknowledged, "
                       << at_kill.bookings_acknowledged << " bookings";
  auto ops = load.operations();
  auto journal = run_psql(database.conninfo(), "SELECT count(*) FROM journal");
  ASSERT_EQ(journal.exit_code, 0) << journal.output;
  auto journal_rows = std::stoi(journal.output);
  if (point.journal_left) {
    ASSERT_GT(journal_rows, 0)
        << "the kill left no journal row: the restart projects nothing";
  }
  std::cout << "[   info   ] journal rows left: " << journal_rows << "\n";
  std::cout << "[   info   ] killed at " << at_kill.acknowledged
            << " acknowledged (" << at_kill.bookings_acknowledged
            << " bookings); " << summary(ops) << "\n";

  node = std::make_unique<server_process>(args);
  http_connection again{node->port()};
  if (point.from_snapshots) {
    auto log = node->log();
    auto read = log.find("read 3 sections from their snapshots");
    EXPECT_NE(read, std::string::npos)
        << "the restart did not read the sections from their snapshots";
    if (read != std::string::npos)
      std::cout << "[   info   ] restart: "
                << log.substr(read, log.find('\n', read) - read) << "\n";
  }
  auto violations = check_consistent(ops, observe(again, config, ops));
  auto in_store = check_store(database.conninfo(), config.event_id);
  violations.insert(violations.end(), in_store.begin(), in_store.end());
  EXPECT_TRUE(violations.empty())
      << violations.size()
      << " violations after the restart:" << as_lines(violations);

  // The recovered node takes writes, and its new ids are new.
  auto fresh = hold_quantity(again, config.customers[0], "crash", "floor", 1);
  ASSERT_TRUE(fresh.status == 201 ||
              is_problem(fresh, 409, "insufficient_seats"))
      << fresh;
  if (fresh.status == 201) {
    for (const auto& op : ops)
      EXPECT_NE(op.hold_id, fresh.body_json()["hold_id"]) << op.describe();
  }

  EXPECT_EQ(node->stop(), 0) << "the restarted server did not exit 0";
  if (HasFailure())
    std::cerr << "---- log of the killed server ----\n"
              << killed_log << "---- log of the restarted server ----\n"
              << node->log() << "---- end of logs ----\n";
}

INSTANTIATE_TEST_SUITE_P(
    kill_points, crash_test,
    ::testing::Values(
        // Requests of every client in flight: the first answer has just
        // arrived.
        kill_point{"as_the_load_starts", load_config::plan::mixed,
                   [](const load_progress& p) { return p.acknowledged >= 1; }},
        kill_point{"after_20_acknowledged", load_config::plan::mixed,
                   [](const load_progress& p) { return p.acknowledged >= 20; }},
        kill_point{
            "after_200_acknowledged", load_config::plan::mixed,
            [](const load_progress& p) { return p.acknowledged >= 200; }},
        // All clients book their holds at once (40 bookings): killed after
        // the tenth.
        kill_point{"in_a_booking_burst", load_config::plan::hold_then_book,
                   [](const load_progress& p) {
                     return p.bookings_acknowledged >= 10;
                   }},
        kill_point{"journal_left_unprojected", load_config::plan::mixed,
                   [](const load_progress& p) { return p.acknowledged >= 200; },
                   lazy_journal, true},
        kill_point{"journal_while_projecting", load_config::plan::mixed,
                   [](const load_progress& p) { return p.acknowledged >= 200; },
                   eager_journal},
        kill_point{"journal_in_a_booking_burst",
                   load_config::plan::hold_then_book,
                   [](const load_progress& p) {
                     return p.bookings_acknowledged >= 10;
                   },
                   lazy_journal, true},
        kill_point{"snapshots_while_projecting_and_trimming",
                   load_config::plan::mixed,
                   [](const load_progress& p) { return p.acknowledged >= 300; },
                   snapshots_eager, false, true},
        kill_point{"snapshots_with_the_journal_unprojected",
                   load_config::plan::mixed,
                   [](const load_progress& p) { return p.acknowledged >= 300; },
                   snapshots_lazy, true, true}),
    [](const ::testing::TestParamInfo<kill_point>& point) {
      return point.param.name;
    });

} // namespace
} // namespace rsv::e2e
