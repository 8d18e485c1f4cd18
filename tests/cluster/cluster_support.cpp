#include "cluster_support.hpp"

#include "core/partition.hpp"

#include <csignal>
#include <sstream>
#include <stdexcept>

namespace rsv::e2e {

namespace {

// Short enough that a killed node's partitions move within seconds, long
// enough for two cores running four nodes, a broker and PostgreSQL.
constexpr const char* session_timeout_ms = "3000";
constexpr const char* heartbeat_ms = "500";

} // namespace

test_cluster::test_cluster(int nodes, uint32_t partitions,
                           std::vector<std::string> extra)
    : partitions_(partitions), extra_(std::move(extra)),
      admin_("cluster-admin-token-" + std::to_string(::getpid()) +
             "-0123456789abcdef") {
  broker_ = std::make_unique<kafka_broker>(
      3, std::vector<std::string>{"--topic", "reservation-events", "--topic",
                                  "rsv-owners:" + std::to_string(partitions)});
  for (int i = 0; i < nodes; ++i)
    add_node();
}

test_cluster::~test_cluster() {
  for (auto& node : nodes_)
    if (node->running()) {
      ::kill(node->pid(), SIGCONT); // a frozen node must be able to stop
      node->stop(20s);
    }
}

std::vector<std::string> test_cluster::node_args() const {
  auto args = database_.server_args();
  args.insert(args.end(), {"--cluster", "--kafka-brokers", broker_->bootstrap(),
                           "--cluster-partitions", std::to_string(partitions_),
                           "--cluster-session-timeout-ms", session_timeout_ms,
                           "--cluster-heartbeat-ms", heartbeat_ms,
                           "--request-timeout-ms", "5000"});
  args.insert(args.end(), extra_.begin(), extra_.end());
  return args;
}

std::size_t test_cluster::add_node() {
  nodes_.push_back(std::make_unique<server_process>(node_args(), admin_));
  return nodes_.size() - 1;
}

void test_cluster::kill(std::size_t i) {
  auto& node = *nodes_.at(i);
  ::kill(node.pid(), SIGKILL);
  node.stop();
  dead_logs_.push_back("---- node " + std::to_string(i) + " (killed) ----\n" +
                       node.log());
}

std::vector<unsigned short> test_cluster::ports() const {
  std::vector<unsigned short> out;
  for (const auto& node : nodes_)
    if (node->running()) out.push_back(node->port());
  return out;
}

node_view test_cluster::view(std::size_t i) const {
  node_view out;
  const auto& node = *nodes_.at(i);
  if (!node.running()) return out;
  try {
    http_connection http{node.port(), 2s};
    auto health = http.get("/health");
    auto body = health.body_json();
    if (!body.contains("cluster")) return out;
    for (const auto& p : body["cluster"]["owned"])
      out.owned.insert(p.get<uint32_t>());
    for (const auto& p : body["cluster"]["loading"])
      out.loading.insert(p.get<uint32_t>());
    out.answered = true;
  } catch (const std::exception&) {
    // not answering (frozen, stopping): no view
  }
  return out;
}

std::map<uint32_t, std::size_t> test_cluster::settled_owners() const {
  std::map<uint32_t, std::size_t> owners;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->running() || skip_.count(i)) continue;
    auto seen = view(i);
    if (!seen.answered || !seen.loading.empty()) return {};
    for (auto p : seen.owned)
      if (!owners.emplace(p, i).second) return {}; // served twice
  }
  if (owners.size() != partitions_) return {};
  return owners;
}

std::map<uint32_t, std::size_t>
test_cluster::wait_settled(std::chrono::milliseconds deadline,
                           const std::set<std::size_t>& skip) {
  skip_ = skip;
  std::map<uint32_t, std::size_t> owners;
  bool settled = eventually(
      [&] {
        owners = settled_owners();
        return !owners.empty();
      },
      deadline, 50ms);
  skip_.clear();
  if (settled) return owners;
  std::ostringstream out;
  out << "the cluster did not settle within " << deadline.count() << " ms:";
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    auto seen = view(i);
    out << "\n node " << i << (nodes_[i]->running() ? "" : " (dead)")
        << (seen.answered ? "" : " (no answer)") << " owns";
    for (auto p : seen.owned)
      out << ' ' << p;
    out << "; loading";
    for (auto p : seen.loading)
      out << ' ' << p;
  }
  throw std::runtime_error(out.str());
}

std::optional<std::size_t>
test_cluster::owner_of(const std::string& event_id) const {
  auto partition = partition_of(event_id, partitions_);
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (view(i).owned.count(partition)) return i;
  return std::nullopt;
}

std::map<uint32_t, long long> test_cluster::epochs() const {
  auto rows =
      run_psql(conninfo(), "SELECT partition, epoch FROM cluster_partitions");
  std::map<uint32_t, long long> out;
  std::istringstream lines{rows.output};
  for (std::string line; std::getline(lines, line);) {
    auto bar = line.find('|');
    if (bar == std::string::npos) continue;
    out[static_cast<uint32_t>(std::stoul(line.substr(0, bar)))] =
        std::stoll(line.substr(bar + 1));
  }
  return out;
}

std::string test_cluster::logs() const {
  std::string out;
  for (const auto& dead : dead_logs_)
    out += dead;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->running())
      out += "---- node " + std::to_string(i) + " ----\n" + nodes_[i]->log();
  return out;
}

} // namespace rsv::e2e
