#include "mock_cluster.hpp"

#include <cstring>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>
#include <string_view>

namespace rsv::messaging::kafka_broker {

namespace {

/// librdkafka's log lines (syslog levels), from any of its threads, into
/// our stderr logger, which is thread-safe.
void log_from_librdkafka(const rd_kafka_t*, int level, const char* facility,
                         const char* message) {
  // The handle only hosts the cluster and never connects anywhere, so its
  // complaint about a missing bootstrap.servers says nothing useful.
  if (std::strcmp(facility, "CONFWARN") == 0 &&
      std::strstr(message, "bootstrap.servers") != nullptr)
    return;
  auto spd_level = level <= 3   ? spdlog::level::err
                   : level == 4 ? spdlog::level::warn
                   : level <= 6 ? spdlog::level::info
                                : spdlog::level::debug;
  spdlog::log(spd_level, "librdkafka {}: {}", facility, message);
}

bool set_conf(rd_kafka_conf_t* conf, const char* name, const std::string& value,
              std::string& error) {
  char why[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), why, sizeof(why)) ==
      RD_KAFKA_CONF_OK)
    return true;
  error = std::string{name} + "=" + value + ": " + why;
  return false;
}

} // namespace

std::unique_ptr<mock_cluster>
mock_cluster::create(const cluster_options& options, std::string& error) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_from_librdkafka);
  if (!set_conf(conf, "client.id", "rsv-kafka-broker", error) ||
      (!options.debug_contexts.empty() &&
       !set_conf(conf, "debug", options.debug_contexts, error))) {
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  char why[512];
  // Any handle type works; a producer starts no consumer-group machinery.
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
  if (handle == nullptr) {
    rd_kafka_conf_destroy(conf); // rd_kafka_new owns it only on success
    error = std::string{"rd_kafka_new: "} + why;
    return nullptr;
  }
  std::unique_ptr<mock_cluster> cluster{new mock_cluster};
  cluster->handle_ = handle;
  cluster->cluster_ = rd_kafka_mock_cluster_new(handle, options.broker_count);
  if (cluster->cluster_ == nullptr) {
    error = "rd_kafka_mock_cluster_new failed (see librdkafka's log above)";
    return nullptr;
  }
  // The header promises "localhost listeners" without naming an address; a
  // test broker reachable from the network would be a surprise, so check.
  auto strangers = non_loopback_entries(cluster->bootstraps());
  if (!strangers.empty()) {
    error = "the mock brokers do not listen on 127.0.0.1 only: " +
            cluster->bootstraps();
    return nullptr;
  }
  for (const auto& topic : options.topics) {
    auto err = rd_kafka_mock_topic_create(cluster->cluster_, topic.name.c_str(),
                                          topic.partition_count,
                                          options.replication_factor);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = "creating topic " + topic.name + ": " + rd_kafka_err2str(err);
      return nullptr;
    }
  }
  return cluster;
}

mock_cluster::~mock_cluster() {
  // The cluster needs its handle until it is gone, so it goes first.
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

std::string mock_cluster::bootstraps() const {
  return rd_kafka_mock_cluster_bootstraps(cluster_);
}

std::string mock_cluster::set_all_down() {
  // Broker id -1 means every broker (rdkafka_mock.h).
  auto err = rd_kafka_mock_broker_set_down(cluster_, -1);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR ? std::string{}
                                           : rd_kafka_err2str(err);
}

std::string mock_cluster::set_all_up() {
  auto err = rd_kafka_mock_broker_set_up(cluster_, -1);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR ? std::string{}
                                           : rd_kafka_err2str(err);
}

std::string parse_topic_spec(const std::string& value,
                             int default_partition_count,
                             int partition_count_max, topic_spec& spec) {
  auto colon = value.find(':');
  spec.name = value.substr(0, colon);
  spec.partition_count = default_partition_count;
  if (colon == std::string::npos) return {};
  auto count = value.substr(colon + 1);
  bool digits = !count.empty() && count.size() <= 9 &&
                count.find_first_not_of("0123456789") == std::string::npos;
  int parsed = digits ? std::stoi(count) : 0;
  if (parsed < 1 || parsed > partition_count_max)
    return "has partitions '" + count + "', not a number from 1 to " +
           std::to_string(partition_count_max);
  spec.partition_count = parsed;
  return {};
}

std::vector<std::string> non_loopback_entries(const std::string& bootstraps) {
  std::vector<std::string> strangers;
  std::string_view rest{bootstraps};
  while (true) {
    auto comma = rest.find(',');
    auto entry = rest.substr(0, comma);
    auto colon = entry.rfind(':');
    bool port_ok = colon != std::string_view::npos && colon + 1 < entry.size();
    if (!port_ok || entry.substr(0, colon) != "127.0.0.1")
      strangers.emplace_back(entry);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return strangers;
}

} // namespace rsv::messaging::kafka_broker
