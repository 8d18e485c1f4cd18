#include "messaging/kafka_support.hpp"

#include <spdlog/spdlog.h>

namespace rsv::messaging {

namespace {

void log_to_spdlog(const rd_kafka_t*, int level, const char* facility,
                   const char* message) {
  // librdkafka's syslog levels: 0-3 errors, 4 warnings, 5-6 notices.
  if (level <= 4)
    spdlog::warn("kafka {}: {}", facility, message);
  else
    spdlog::debug("kafka {}: {}", facility, message);
}

} // namespace

rd_kafka_conf_t* make_kafka_conf(const kafka_settings& settings, void* opaque,
                                 std::string& error) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [name, value] : settings)
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      error = "kafka setting " + name + ": " + errstr;
      return nullptr;
    }
  rd_kafka_conf_set_log_cb(conf, &log_to_spdlog);
  rd_kafka_conf_set_opaque(conf, opaque);
  return conf;
}

} // namespace rsv::messaging
