#pragma once

// A cluster for tests (label cluster): the project's Kafka broker with the
// owners topic, one scratch database, and `reservations serve --cluster`
// nodes on loopback ports sharing both, their admin token and token secret.
// Everything is read over the nodes' sockets and from PostgreSQL.

#include "harness.hpp"
#include "kafka_support.hpp"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace rsv::e2e {

/// What one node's /health says of the cluster.
struct node_view {
  bool answered = false;
  std::set<uint32_t> owned;   // partitions it serves
  std::set<uint32_t> loading; // partitions it is taking over
};

class test_cluster {
public:
  /// Starts the broker (owners topic with `partitions` partitions) and
  /// `nodes` nodes; `extra` flags go to every node.
  test_cluster(int nodes, uint32_t partitions,
               std::vector<std::string> extra = {});
  ~test_cluster();

  uint32_t partitions() const { return partitions_; }
  const std::string& admin() const { return admin_; }
  std::string conninfo() const { return database_.conninfo(); }
  /// The flags that point a server at the cluster's database.
  std::vector<std::string> database_args() const {
    return database_.server_args();
  }
  const std::string& bootstrap() const { return broker_->bootstrap(); }
  std::size_t size() const { return nodes_.size(); }
  server_process& node(std::size_t i) { return *nodes_.at(i); }
  /// Starts one more node; answers its index.
  std::size_t add_node();
  /// SIGKILL, reaped; its log kept for a failure report.
  void kill(std::size_t i);
  bool alive(std::size_t i) const { return nodes_.at(i)->running(); }
  std::vector<unsigned short> ports() const;

  node_view view(std::size_t i) const;
  /// Partition -> the index of the live node that serves it; empty when a
  /// partition is served by none or by two, or a node is loading.
  std::map<uint32_t, std::size_t> settled_owners() const;
  /// Waits until every partition is served by exactly one of the live nodes
  /// (`skip` excluded: a frozen node's /health cannot answer); answers the
  /// owners, or throws after the deadline with every node's view.
  std::map<uint32_t, std::size_t>
  wait_settled(std::chrono::milliseconds deadline,
               const std::set<std::size_t>& skip = {});
  /// The node that serves `event_id`'s partition now, if one does.
  std::optional<std::size_t> owner_of(const std::string& event_id) const;
  /// Epoch per partition, from PostgreSQL.
  std::map<uint32_t, long long> epochs() const;
  /// Every node's log, for a failure report.
  std::string logs() const;

private:
  std::vector<std::string> node_args() const;

  uint32_t partitions_;
  std::vector<std::string> extra_;
  std::string admin_;
  scratch_database database_;
  std::unique_ptr<kafka_broker> broker_;
  std::vector<std::unique_ptr<server_process>> nodes_;
  std::vector<std::string> dead_logs_;
  std::set<std::size_t> skip_;
};

} // namespace rsv::e2e
