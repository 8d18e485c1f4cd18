#pragma once

// A librdkafka mock cluster (rdkafka_mock.h) on loopback, as the local
// stand-in for a Kafka cluster. Only this folder includes librdkafka.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace rsv::messaging::kafka_broker {

/// A topic to create and its partitions.
struct topic_spec {
  std::string name;
  int partition_count = 6;
};

/// What to create: brokers, and topics with their partitions and replicas.
struct cluster_options {
  int broker_count = 1;
  std::vector<topic_spec> topics;
  int replication_factor = 1;
  /// librdkafka `debug` contexts for the cluster's handle ("" for none).
  std::string debug_contexts;
};

/// One mock cluster with its brokers (ids 1..broker_count) listening on
/// 127.0.0.1, and its topics. It owns the rd_kafka_t handle that
/// rd_kafka_mock_cluster_new needs for book keeping: the cluster lives
/// exactly as long as this object. The brokers run on librdkafka's mock
/// thread; this object is created, used and destroyed by one thread (main).
class mock_cluster {
public:
  /// Creates the cluster and its topics, and checks that every broker
  /// listens on 127.0.0.1. nullptr with `error` set on failure.
  static std::unique_ptr<mock_cluster> create(const cluster_options& options,
                                              std::string& error);
  ~mock_cluster();

  mock_cluster(const mock_cluster&) = delete;
  mock_cluster& operator=(const mock_cluster&) = delete;

  /// The brokers as `bootstrap.servers` takes them: "HOST:PORT,HOST:PORT".
  std::string bootstraps() const;

  /// Drops every broker's connections and refuses new ones until
  /// set_all_up(); partitions keep their messages. "" or the error.
  std::string set_all_down();
  /// Lets every broker accept connections again. "" or the error.
  std::string set_all_up();

private:
  mock_cluster() = default;

  rd_kafka_s* handle_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
};

/// The HOST:PORT entries of a bootstrap list that do not name 127.0.0.1,
/// or that are not HOST:PORT at all.
/// Reads `--topic` values: NAME or NAME:PARTITIONS, the former with
/// `default_partition_count`. "" or what is wrong with `value` (the name is
/// checked elsewhere, the count must be 1..`partition_count_max`).
std::string parse_topic_spec(const std::string& value,
                             int default_partition_count,
                             int partition_count_max, topic_spec& spec);

std::vector<std::string> non_loopback_entries(const std::string& bootstraps);

} // namespace rsv::messaging::kafka_broker
