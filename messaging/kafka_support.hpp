#pragma once

// What messaging/'s Kafka clients (the relay's producer, the membership's
// consumer) share about librdkafka; private to messaging/ (no librdkafka
// type leaves it).

#include <librdkafka/rdkafka.h>
#include <string>
#include <utility>
#include <vector>

namespace rsv::messaging {

/// librdkafka properties, applied in order: a later one overrides an
/// earlier one of the same name.
using kafka_settings = std::vector<std::pair<std::string, std::string>>;

/// A new configuration with `settings` applied, librdkafka's log routed to
/// spdlog and `opaque` set for the callbacks; the caller adds its own
/// callbacks. Null when librdkafka refuses a setting, with `error` naming
/// it and saying why.
rd_kafka_conf_t* make_kafka_conf(const kafka_settings& settings, void* opaque,
                                 std::string& error);

} // namespace rsv::messaging
