#pragma once

#include "core/limits.hpp"
#include "core/service_state.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <prometheus/registry.h>
#include <string>
#include <utility>
#include <vector>

namespace rsv::messaging {

struct membership_config {
  std::string brokers; // bootstrap.servers
  /// Further librdkafka settings (e.g. SASL for MSK), applied last.
  std::vector<std::pair<std::string, std::string>> properties;
  std::string group = "rsv-owners";
  std::string topic = "rsv-owners";
  /// A member that is silent this long is dropped from the group and its
  /// partitions go to the others: the failover time after a crash.
  int session_timeout_ms = limits::cluster_session_timeout_ms_default;
  int heartbeat_interval_ms = limits::cluster_heartbeat_ms_default;
  /// The consumer's client.id, e.g. the node's advertised address, for logs.
  std::string client_id;
};

/// Called on the membership's poll thread. `assigned` must not block long
/// (hand work off); `revoked` may block up to
/// limits::membership_revoke_block_max_ms while the node stops serving those
/// partitions; `lost` is like revoked but the partitions may already be
/// owned by someone else. Each call names the partitions that change hands
/// (owned() has the whole assignment), sorted; a list may be empty.
struct membership_handlers {
  std::function<void(std::vector<uint32_t>)> assigned;
  std::function<void(std::vector<uint32_t>)> revoked;
  std::function<void(std::vector<uint32_t>)> lost;
};

/// This node's share of the cluster: the partitions (0..N-1) of `topic`
/// that Kafka's group coordinator assigns it in consumer group `group`.
/// Nothing is produced or consumed: the group protocol is only the
/// membership and assignment service. The assignment strategy is
/// cooperative-sticky, so a rebalance moves only the partitions it must and
/// survivors keep theirs.
///
/// Lifecycle: `start` starts the poll thread, which owns the librdkafka
/// consumer (made, subscribed, polled, closed there) and runs the handlers;
/// `stop` (or the destructor) leaves the group, which revokes every owned
/// partition through `revoked`, and joins the thread. `owned`, `health`,
/// `rebalances` and `topic_partitions` may be called from any thread.
///
/// The thread runs supervised (core/supervised.hpp): if a handler or the
/// loop throws, the owned partitions are reported `lost`, the consumer is
/// dropped without leaving, and a new one joins after a backoff;
/// `rsv_actor_restarts_total{kind="membership"}`.
class cluster_membership {
public:
  /// `registry` may be null (no metrics).
  cluster_membership(membership_config config, membership_handlers handlers,
                     std::shared_ptr<prometheus::Registry> registry);
  /// Stops.
  ~cluster_membership();
  cluster_membership(const cluster_membership&) = delete;
  cluster_membership& operator=(const cluster_membership&) = delete;

  /// Starts the poll thread, which joins the group. Settings librdkafka
  /// refuses are logged, and the thread tries again after a backoff
  /// (health() stays down). Only the first call does anything.
  void start();

  /// Leaves the group cleanly (rd_kafka_consumer_close, which revokes
  /// through `revoked`) and joins the thread. Idempotent.
  void stop();

  /// The current assignment, sorted.
  std::vector<uint32_t> owned() const;

  /// ok while this node is in the group and the brokers answered recently
  /// (limits::membership_health_stale_ms), down otherwise.
  service_state health() const;

  /// Assign, revoke and lose callbacks so far.
  uint64_t rebalances() const;

  /// Partition count of the topic as the broker reports it (metadata), or
  /// -1 if unknown yet.
  int topic_partitions() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace rsv::messaging
