// Clustered nodes (docs/cluster.md), end to end: real `reservations serve
// --cluster` processes on loopback ports, the project's Kafka broker for the
// consumer group, one PostgreSQL database. Ownership is read from the
// nodes' /health and from PostgreSQL; the acceptance test kills, starts and
// freezes nodes under a booking load sent round robin through all of them
// and then checks the database, not the nodes.

#include "cluster_support.hpp"
#include "core/partition.hpp"
#include "load.hpp"

#include <csignal>
#include <iostream>
#include <sstream>

namespace rsv::e2e {
namespace {

constexpr uint32_t partitions = 16;

using steady = std::chrono::steady_clock;

double seconds_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

/// Prints the cluster's logs when the test failed.
class cluster_test : public ::testing::Test {
protected:
  void report(const test_cluster& cluster) {
    if (HasFailure())
      std::cerr << "---- cluster logs ----\n"
                << cluster.logs() << "---- end of logs ----\n";
  }
};

TEST_F(cluster_test, every_partition_has_one_owner_and_a_new_node_takes_some) {
  test_cluster cluster{3, partitions};
  auto before = cluster.wait_settled(30s);
  std::set<std::size_t> serving;
  for (const auto& [p, node] : before)
    serving.insert(node);
  EXPECT_EQ(serving.size(), 3u) << "every node serves some partitions";
  for (const auto& [p, epoch] : cluster.epochs())
    EXPECT_GE(epoch, 1) << "partition " << p << " was never taken";
  EXPECT_EQ(cluster.epochs().size(), partitions);

  auto fourth = cluster.add_node();
  // Settled with the newcomer serving: until then the survivors hold all.
  std::map<uint32_t, std::size_t> after;
  ASSERT_TRUE(eventually(
      [&] {
        after = cluster.settled_owners();
        for (const auto& [p, node] : after)
          if (node == fourth) return true;
        return false;
      },
      30s, 50ms))
      << cluster.logs();
  int moved = 0;
  for (const auto& [p, node] : after) {
    if (node == before.at(p)) continue;
    ++moved;
    // Cooperative-sticky: a survivor keeps what it has; only the newcomer
    // takes partitions.
    EXPECT_EQ(node, fourth) << "partition " << p << " moved between survivors";
  }
  std::cout << "[   info   ] the 4th node took " << moved << " of "
            << partitions << " partitions\n";
  EXPECT_GT(moved, 0);
  EXPECT_LT(moved, static_cast<int>(partitions));
  report(cluster);
}

/// Two event ids whose partitions the cluster serves on different nodes.
std::pair<std::string, std::string>
events_on_two_nodes(const std::map<uint32_t, std::size_t>& owners) {
  for (int i = 0; i < 1000; ++i)
    for (int j = i + 1; j < 1000; ++j) {
      auto a = "gala-" + std::to_string(i);
      auto b = "gala-" + std::to_string(j);
      if (owners.at(partition_of(a, partitions)) !=
          owners.at(partition_of(b, partitions)))
        return {a, b};
    }
  throw std::runtime_error("no two events on two nodes");
}

TEST_F(cluster_test, any_node_answers_any_request) {
  test_cluster cluster{3, partitions};
  auto owners = cluster.wait_settled(30s);
  auto [first, second] = events_on_two_nodes(owners);
  http_connection a{cluster.node(0).port()};
  http_connection b{cluster.node(1).port()};
  http_connection c{cluster.node(2).port()};

  // Events are created through any node, by their owner.
  for (const auto& id : {first, second}) {
    auto made = b.post(
        "/v1/events",
        event_json(id, {section_json("floor", 1000, {{"A", 10}, {"B", 10}})}),
        cluster.admin());
    ASSERT_EQ(made.status, 201u) << made;
  }
  for (auto* http : {&a, &b, &c}) {
    auto listed = http->get("/v1/events");
    ASSERT_EQ(listed.status, 200u) << listed;
    EXPECT_EQ(listed.body_json()["events"].size(), 2u) << listed;
    auto event = http->get("/v1/events/" + first);
    EXPECT_EQ(event.status, 200u) << event;
  }
  auto again =
      c.post("/v1/events",
             event_json(first, {section_json("floor", 1000, {{"A", 10}})}),
             cluster.admin());
  EXPECT_TRUE(is_problem(again, 409, "event_exists")) << again;
  // An event without an id gets one, and is served where its id says.
  auto unnamed_body =
      event_json("x", {section_json("floor", 1000, {{"A", 10}})});
  unnamed_body.erase("id");
  auto unnamed = a.post("/v1/events", unnamed_body, cluster.admin());
  ASSERT_EQ(unnamed.status, 201u) << unnamed;
  auto unnamed_id = unnamed.body_json()["id"].get<std::string>();
  EXPECT_EQ(c.get("/v1/events/" + unnamed_id).status, 200u);

  // A customer registered on one node is known to every node.
  auto who = new_customer(a, "anywhere");
  auto login = c.post("/v1/sessions",
                      {{"email", who.email}, {"password", who.password}});
  ASSERT_EQ(login.status, 201u) << login;
  auto twice = b.post("/v1/customers",
                      {{"email", who.email}, {"password", "another one"}});
  EXPECT_TRUE(is_problem(twice, 409, "email_taken")) << twice;

  // Holds and bookings on any node; ids route from any node.
  auto held = hold_seats(c, who, first, "floor", {"A-1", "A-2"});
  ASSERT_EQ(held.status, 201u) << held;
  auto hold_id = held.body_json()["hold_id"].get<std::string>();
  EXPECT_EQ(a.get("/v1/holds/" + hold_id, who.token).status, 200u);
  auto taken = hold_seats(a, who, first, "floor", {"A-2"});
  EXPECT_TRUE(is_problem(taken, 409, "seats_unavailable")) << taken;
  auto booked = b.post("/v1/bookings", {{"hold_id", hold_id}}, who.token);
  ASSERT_EQ(booked.status, 201u) << booked;
  auto other = hold_quantity(b, who, second, "floor", 1);
  ASSERT_EQ(other.status, 201u) << other;
  auto other_booking = c.post(
      "/v1/bookings", {{"hold_id", other.body_json()["hold_id"]}}, who.token);
  ASSERT_EQ(other_booking.status, 201u) << other_booking;
  for (auto* http : {&a, &b, &c}) {
    auto list = http->get("/v1/bookings", who.token);
    ASSERT_EQ(list.status, 200u) << list;
    EXPECT_EQ(list.body_json()["bookings"].size(), 2u) << list;
  }
  EXPECT_EQ(section_counts(a, first, "floor"), (counts{18, 0, 2}));

  // Idempotency across nodes: PostgreSQL knows every key.
  headers_t key{{"Idempotency-Key", "same-key"}};
  auto once = hold_quantity(a, who, first, "floor", 1, key);
  ASSERT_EQ(once.status, 201u) << once;
  auto replay = hold_quantity(c, who, first, "floor", 1, key);
  EXPECT_EQ(replay.status, 201u) << replay;
  EXPECT_EQ(replay.body, once.body);
  auto reused = hold_quantity(b, who, second, "floor", 1, key);
  EXPECT_TRUE(is_problem(reused, 422, "idempotency_key_reused")) << reused;

  // A client cannot pass for a node: a forged marker is not trusted.
  auto forged = a.request("GET", "/v1/events/" + second,
                          {{"X-Rsv-Forwarded", "f1.forged"}});
  EXPECT_EQ(forged.status, 200u) << forged;

  // Forwarding is counted where it happens.
  double forwarded = 0;
  for (auto* http : {&a, &b, &c})
    forwarded += metric_value(http->get("/metrics").body,
                              "rsv_forwarded_requests_total");
  EXPECT_GT(forwarded, 0);
  report(cluster);
}

json scarce_event(const std::string& id) {
  auto body =
      event_json(id, {section_json("floor", 5000, {{"A", 12}, {"B", 12}}),
                      section_json("left", 3000, {{"A", 10}, {"B", 10}}),
                      section_json("right", 3000, {{"A", 10}, {"B", 10}})});
  body["hold_ttl_seconds"] = 600; // no hold expires while the test runs
  return body;
}

/// A window in which requests may fail: a fault and the time the cluster
/// took to settle after it, plus a margin for answers already on their way.
struct fault_window {
  std::string what;
  steady::time_point from;
  steady::time_point to;
};

/// The database's own check of what clients were told: each acknowledged
/// hold exists with its seats, each acknowledged booking exists, each
/// acknowledged cancellation and release is recorded.
std::vector<std::string>
check_acknowledged_in_store(const std::string& conninfo,
                            const std::vector<operation>& ops) {
  auto rows = run_psql(
      conninfo,
      "SELECT h.section_no, h.slot, h.status, array_to_string(h.seats, ','), "
      "coalesce(b.status, '') FROM holds h LEFT JOIN bookings b USING "
      "(section_no, slot)");
  std::map<std::pair<uint32_t, uint32_t>, std::vector<std::string>> by_id;
  std::istringstream lines{rows.output};
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::istringstream parts{line};
    for (std::string field; std::getline(parts, field, '|');)
      fields.push_back(field);
    if (fields.size() < 4) continue;
    fields.resize(5);
    by_id[{static_cast<uint32_t>(std::stoul(fields[0])),
           static_cast<uint32_t>(std::stoul(fields[1]))}] = fields;
  }
  auto find = [&](const std::string& id) -> const std::vector<std::string>* {
    // hld_/bkg_<section hex>_<slot hex>_<event hash hex>
    std::istringstream parts{id.substr(4)};
    std::string section, slot;
    std::getline(parts, section, '_');
    std::getline(parts, slot, '_');
    auto found =
        by_id.find({static_cast<uint32_t>(std::stoul(section, nullptr, 16)),
                    static_cast<uint32_t>(std::stoul(slot, nullptr, 16))});
    return found == by_id.end() ? nullptr : &found->second;
  };
  std::vector<std::string> out;
  for (const auto& op : ops) {
    if (op.result != outcome::acknowledged) continue;
    auto id = op.kind == op_kind::cancel ? op.booking_id : op.hold_id;
    const auto* row = find(id);
    if (row == nullptr) {
      out.push_back("acknowledged but not in the database: " + op.describe());
      continue;
    }
    const auto& r = *row;
    switch (op.kind) {
    case op_kind::hold_seats:
    case op_kind::hold_quantity: {
      std::string seats;
      for (const auto& seat : op.body["seats"])
        seats += (seats.empty() ? "" : ",") + seat.get<std::string>();
      if (r[3] != seats)
        out.push_back("seats differ (" + r[3] + "): " + op.describe());
      break;
    }
    case op_kind::book:
      if (r[2] != "booked" || r[4].empty())
        out.push_back("booking missing (" + r[2] + "): " + op.describe());
      break;
    case op_kind::release:
      if (r[2] != "released")
        out.push_back("release missing (" + r[2] + "): " + op.describe());
      break;
    case op_kind::cancel:
      if (r[4] != "cancelled")
        out.push_back("cancellation missing (" + r[4] + "): " + op.describe());
      break;
    }
  }
  return out;
}

/// Seats held and booked per section, as PostgreSQL has them, against what
/// the owner shows and the sections' capacities.
std::vector<std::string> check_counts(const std::string& conninfo,
                                      http_connection& http,
                                      const std::string& event_id) {
  std::vector<std::string> out;
  auto event = http.get("/v1/events/" + event_id).body_json();
  for (const auto& section : event["sections"]) {
    auto id = section["id"].get<std::string>();
    auto counted = run_psql(
        conninfo,
        "SELECT count(*) FILTER (WHERE status = 'held'), count(*) FILTER "
        "(WHERE status = 'booked') FROM seat_state WHERE event_id = '" +
            event_id + "' AND section_id = '" + id + "'");
    auto bar = counted.output.find('|');
    auto held = std::stoll(counted.output.substr(0, bar));
    auto booked = std::stoll(counted.output.substr(bar + 1));
    auto total = section["seats_total"].get<long long>();
    auto shown_free = section["free"].get<long long>();
    auto shown_held = section["held"].get<long long>();
    auto shown_booked = section["booked"].get<long long>();
    if (shown_free + shown_held + shown_booked != total)
      out.push_back(id + ": free + held + booked != capacity");
    if (held != shown_held || booked != shown_booked)
      out.push_back(id + ": the database has " + std::to_string(held) +
                    " held, " + std::to_string(booked) +
                    " booked; the owner shows " + std::to_string(shown_held) +
                    " and " + std::to_string(shown_booked));
    if (held + booked > total) out.push_back(id + ": more seats than exist");
  }
  return out;
}

/// The node that froze (SIGSTOP) and its counters afterwards.
struct frozen_report {
  std::size_t node = 0;
  double fenced = 0;
};

/// Holds, books, releases and cancels through every node round robin while
/// the owner of the event is killed, a node joins, and the next owner is
/// frozen past the session timeout. Answers the operations, the frozen
/// node's counters and the fault windows.
struct scenario_result {
  std::vector<operation> ops;
  frozen_report frozen;
  std::vector<fault_window> windows;
  double recovery_s = 0;
  load_config config;
};

scenario_result run_faults(test_cluster& cluster, const std::string& event_id) {
  scenario_result result;
  cluster.wait_settled(30s);
  http_connection admin_http{cluster.node(0).port()};
  auto made =
      admin_http.post("/v1/events", scarce_event(event_id), cluster.admin());
  if (made.status != 201) throw std::runtime_error("event: " + made.body);
  auto& config = result.config;
  config.event_id = event_id;
  for (const auto* section : {"floor", "left", "right"})
    config.sections[section] =
        get_seat_map(admin_http, event_id, section).order;
  for (int i = 0; i < 12; ++i) {
    http_connection on{
        cluster.node(static_cast<std::size_t>(i) % cluster.size()).port()};
    config.customers.push_back(new_customer(on, "jepsen"));
  }
  config.what = load_config::plan::mixed;
  config.live_max = 4;
  config.requests_max = 100000;
  config.duration_max = 90s;
  config.request_timeout = 8s;
  config.pause_after_failure = 50ms;
  // As a real client would: without retries every hold a client was
  // operating on when a fault hit leaves its view, its seats stay taken
  // for the whole test (no hold expires), and the 64 seats run out.
  config.retries_after_failure = 200;
  auto ports = cluster.ports();
  config.more_ports.assign(ports.begin() + 1, ports.end());
  load_generator load(ports.front(), config);
  load.start();
  load.wait_for([](const load_progress& p) { return p.acknowledged >= 100; },
                30s);
  auto margin = 3s;

  // 1. kill -9 the owner of the event.
  auto owner = cluster.owner_of(event_id).value();
  auto killed_at = steady::now();
  cluster.kill(owner);
  http_connection survivor{cluster.node(owner == 0 ? 1 : 0).port()};
  // Until the moved event answers again from its new owner.
  bool back = eventually(
      [&] {
        try {
          return survivor.get("/v1/events/" + event_id).status == 200 &&
                 cluster.owner_of(event_id).has_value();
        } catch (const std::exception&) {
          return false;
        }
      },
      30s, 20ms);
  auto answered_at = steady::now();
  result.recovery_s = seconds_between(killed_at, answered_at);
  if (!back) throw std::runtime_error("the event never came back");
  cluster.wait_settled(30s);
  result.windows.push_back({"kill -9 of node " + std::to_string(owner),
                            killed_at, steady::now() + margin});
  load.wait_for([&](const load_progress& p) { return p.acknowledged >= 300; },
                15s);

  // 2. a new node joins.
  auto joined_at = steady::now();
  cluster.add_node();
  cluster.wait_settled(30s);
  result.windows.push_back({"a node joins", joined_at, steady::now() + margin});
  load.wait_for([&](const load_progress& p) { return p.acknowledged >= 500; },
                15s);

  // 3. freeze the event's owner past the session timeout, then thaw it.
  auto frozen = cluster.owner_of(event_id).value();
  result.frozen.node = frozen;
  auto frozen_at = steady::now();
  ::kill(cluster.node(frozen).pid(), SIGSTOP);
  // Until another node serves the event.
  cluster.wait_settled(30s, {frozen});
  ::kill(cluster.node(frozen).pid(), SIGCONT);
  cluster.wait_settled(30s);
  result.windows.push_back({"SIGSTOP of node " + std::to_string(frozen),
                            frozen_at, steady::now() + margin});
  auto thawed = load.progress().acknowledged;
  load.wait_for(
      [&](const load_progress& p) { return p.acknowledged >= thawed + 100; },
      15s);
  load.request_stop();
  load.join();
  result.ops = load.operations();
  http_connection frozen_http{cluster.node(frozen).port()};
  auto metrics = frozen_http.get("/metrics").body;
  result.frozen.fenced =
      metric_value(metrics, "rsv_store_fenced_batches_total");
  return result;
}

/// The acceptance test runs with both batch encodings. With the journal,
/// sections write a snapshot a second after their first write since the
/// last one, so the owner that is killed and the one that is frozen have
/// written snapshots, and their successors write more after the move.
class cluster_faults_test : public cluster_test,
                            public ::testing::WithParamInterface<std::string> {
protected:
  bool journal() const { return GetParam() == "journal"; }

  std::vector<std::string> flags() const {
    if (!journal()) return {"--pg-batch-encoding", "pipeline"};
    return {"--pg-batch-encoding", "journal", "--snapshot-seconds", "1"};
  }
};

/// With the journal, after the faults and once the nodes are idle: every
/// row is trimmed (relayed, projected and covered by snapshots, whichever
/// node wrote them), and a single node started on the database after every
/// cluster node is killed reads the sections from the snapshots their last
/// owners wrote, and agrees with the tables. One line per violation.
std::vector<std::string>
check_snapshots_after_moves(test_cluster& cluster,
                            const std::string& event_id) {
  std::vector<std::string> out;
  long long left = -1;
  if (!eventually(
          [&] {
            left = outbox_and_journal_rows(cluster.conninfo());
            return left == 0;
          },
          30s, 100ms))
    out.push_back(std::to_string(left) + " journal or outbox rows were "
                                         "never trimmed after the moves");
  auto snapshots = run_psql(cluster.conninfo(),
                            "SELECT count(*) FROM section_snapshots JOIN "
                            "sections USING (section_no) WHERE event_id = '" +
                                event_id + "'");
  if (snapshots.exit_code != 0 || std::stoll(snapshots.output) != 3)
    out.push_back("the event's 3 sections have " + snapshots.output +
                  " snapshots");
  for (std::size_t i = 0; i < cluster.size(); ++i)
    if (cluster.alive(i)) cluster.kill(i);
  server_process single{cluster.database_args(), cluster.admin()};
  auto log = single.log();
  auto read = log.find("3 sections from their snapshots");
  if (read == std::string::npos)
    out.push_back("a restart did not read the snapshots:\n" + log);
  else
    std::cout << "restart of one node after the moves: "
              << log.substr(read, log.find('\n', read) - read) << "\n";
  http_connection http{single.port()};
  for (auto& line : check_counts(cluster.conninfo(), http, event_id))
    out.push_back("after a restart from the snapshots: " + line);
  return out;
}

TEST_P(cluster_faults_test,
       nothing_acknowledged_is_lost_and_no_seat_is_sold_twice) {
  test_cluster cluster{3, partitions, flags()};
  const std::string event_id = "jepsen-gala";
  scenario_result run;
  try {
    run = run_faults(cluster, event_id);
  } catch (const std::exception& e) {
    report(cluster);
    FAIL() << e.what() << "\n" << cluster.logs();
  }
  const auto& ops = run.ops;
  // With the journal the tables below trail it: read them once the nodes
  // have projected every row.
  if (journal()) {
    ASSERT_TRUE(eventually(
        [&] { return unprojected_journal_rows(cluster.conninfo()) == 0; }, 60s,
        100ms))
        << "the journal was not projected\n"
        << cluster.logs();
  }

  // Read from PostgreSQL, not from the nodes.
  auto double_sold = check_store(cluster.conninfo(), event_id);
  auto lost = check_acknowledged_in_store(cluster.conninfo(), ops);
  http_connection any{cluster.node(cluster.size() - 1).port()};
  auto miscounted = check_counts(cluster.conninfo(), any, event_id);
  // Every change exactly once in Kafka once duplicates are dropped by id.
  auto records = consume_until_complete(
      cluster.bootstrap(), "reservation-events", cluster.conninfo(), 60s);
  auto kafka = check_records(records, committed_change_ids(cluster.conninfo()));
  // Failures only as 503, timeouts or a key still in use (its first try
  // waits for an owner that does not answer), and only inside the fault
  // windows.
  std::vector<std::string> stray;
  int failed = 0;
  for (const auto& op : ops) {
    if (op.result != outcome::indeterminate) continue;
    ++failed;
    if (op.status != 0 && op.status != 503 &&
        !(op.status == 409 && op.code == "idempotency_key_in_use"))
      stray.push_back("failed with " + std::to_string(op.status) + ": " +
                      op.describe());
    bool inside = false;
    for (const auto& window : run.windows)
      inside = inside || (op.sent >= window.from - 1s && op.sent <= window.to);
    if (!inside) stray.push_back("failed outside the faults: " + op.describe());
  }
  // The API's own view through a node agrees with what clients were told.
  auto told = check_consistent(ops, observe(any, run.config, ops));

  std::cout << "\n---- Jepsen-style summary ----\n"
            << "operations: " << summary(ops) << "\n";
  for (const auto& window : run.windows)
    std::cout << "fault: " << window.what << " ("
              << seconds_between(window.from, window.to) << " s with margin)\n";
  std::cout << "recovery after kill -9: the moved event answered again after "
            << run.recovery_s << " s (session timeout 3 s on the mock broker)\n"
            << "frozen node " << run.frozen.node << ": " << run.frozen.fenced
            << " batches fenced\n"
            << "checks:\n"
            << "  no seat held or booked twice (PostgreSQL): "
            << (double_sold.empty() ? "valid" : "INVALID") << "\n"
            << "  every acknowledged change in PostgreSQL: "
            << (lost.empty() ? "valid" : "INVALID") << "\n"
            << "  counts add up to capacity and match the owner: "
            << (miscounted.empty() ? "valid" : "INVALID") << "\n"
            << "  each change once in Kafka (" << records.size()
            << " records): " << (kafka.empty() ? "valid" : "INVALID") << "\n"
            << "  failures (" << failed << ") only 503 or timeouts in faults: "
            << (stray.empty() ? "valid" : "INVALID") << "\n"
            << "  answers agree with the API's state: "
            << (told.empty() ? "valid" : "INVALID") << "\n"
            << "------------------------------\n";
  EXPECT_TRUE(double_sold.empty()) << as_lines(double_sold);
  EXPECT_TRUE(lost.empty()) << as_lines(lost);
  EXPECT_TRUE(miscounted.empty()) << as_lines(miscounted);
  EXPECT_TRUE(kafka.empty()) << as_lines(kafka);
  EXPECT_TRUE(stray.empty()) << as_lines(stray);
  EXPECT_TRUE(told.empty()) << as_lines(told);
  // Whether the thawed node's first writes meet the fence or it learns of
  // the takeover from PostgreSQL first is a race it may win either way;
  // a_write_under_a_superseded_epoch_is_refused shows the fence itself.
  EXPECT_GT(std::count_if(ops.begin(), ops.end(),
                          [](const operation& op) {
                            return op.result == outcome::acknowledged;
                          }),
            500);
  if (journal()) {
    auto snapshotted = check_snapshots_after_moves(cluster, event_id);
    EXPECT_TRUE(snapshotted.empty()) << as_lines(snapshotted);
  }
  report(cluster);
}

INSTANTIATE_TEST_SUITE_P(encodings, cluster_faults_test,
                         ::testing::ValuesIn(batch_encodings),
                         batch_encoding_name);

/// A one-node cluster that reads the owners only every ten minutes: once a
/// partition's epoch is raised behind its back, the fence is the only thing
/// that can tell it, and the test decides exactly when that happens.
struct superseded_node {
  test_cluster cluster;
  http_connection http;
  customer who;
  std::string event_id = "fenced-gala";
  uint32_t partition = 0;

  explicit superseded_node(std::vector<std::string> flags)
      : cluster{1, partitions, with_slow_refresh(std::move(flags))},
        http{(cluster.wait_settled(30s), cluster.node(0).port())},
        who{new_customer(http, "fenced")} {
    partition = partition_of(event_id, partitions);
    create_event(http, cluster.admin(),
                 event_json(event_id, {section_json("floor", 1000,
                                                    {{"A", 10}, {"B", 10}})}));
  }

  static std::vector<std::string>
  with_slow_refresh(std::vector<std::string> flags) {
    flags.push_back("--cluster-owners-refresh-ms=600000");
    return flags;
  }

  /// What another node taking the partition over writes first.
  void raise_epoch_elsewhere() {
    auto raised =
        run_psql(cluster.conninfo(),
                 "UPDATE cluster_partitions SET epoch = epoch + 1, owner = "
                 "'127.0.0.1:9' WHERE partition = " +
                     std::to_string(partition));
    ASSERT_EQ(raised.exit_code, 0) << raised.output;
  }

  long long holds_in_store() {
    auto counted = run_psql(cluster.conninfo(),
                            "SELECT count(*) FROM holds h JOIN sections s "
                            "USING (section_no) WHERE s.event_id = '" +
                                event_id + "'");
    return std::stoll(counted.output);
  }

  double metric(const std::string& name) {
    return metric_value(http.get("/metrics").body, name);
  }
};

TEST_F(cluster_test, a_write_under_a_superseded_epoch_is_refused) {
  superseded_node node{{}};
  auto before =
      hold_seats(node.http, node.who, node.event_id, "floor", {"A-1"});
  ASSERT_EQ(before.status, 201u) << before;
  node.raise_epoch_elsewhere();

  // The node still believes it owns the event: its next write is fenced.
  auto stale = hold_seats(node.http, node.who, node.event_id, "floor", {"A-2"});
  EXPECT_TRUE(is_problem(stale, 503, "unavailable")) << stale;
  EXPECT_TRUE(stale.header("Retry-After").has_value()) << stale;
  EXPECT_EQ(node.metric("rsv_store_fenced_batches_total"), 1);
  EXPECT_EQ(node.holds_in_store(), 1) << "a fenced write reached the database";

  // And it gave the event up: the next request goes to the recorded owner
  // (unreachable here), not to its own sections.
  auto after = hold_seats(node.http, node.who, node.event_id, "floor", {"A-3"});
  EXPECT_TRUE(is_problem(after, 503, "unavailable")) << after;
  EXPECT_EQ(node.holds_in_store(), 1);
  EXPECT_GT(node.metric("rsv_forwarded_requests_total"), 0);
  report(node.cluster);
}

// The same with the epoch check switched off (a test-only flag): the stale
// write commits, as a frozen node's would; the counter shows the fence would
// have refused it.
TEST_F(cluster_test, without_the_fence_the_same_write_commits) {
  superseded_node node{{"--cluster-unsafe-no-fencing"}};
  auto before =
      hold_seats(node.http, node.who, node.event_id, "floor", {"A-1"});
  ASSERT_EQ(before.status, 201u) << before;
  node.raise_epoch_elsewhere();

  auto stale = hold_seats(node.http, node.who, node.event_id, "floor", {"A-2"});
  EXPECT_EQ(stale.status, 201u) << stale;
  EXPECT_EQ(node.holds_in_store(), 2);
  EXPECT_EQ(node.metric("rsv_store_unfenced_stale_batches_total"), 1);
  EXPECT_EQ(node.metric("rsv_store_fenced_batches_total"), 0);
  report(node.cluster);
}

} // namespace
} // namespace rsv::e2e
