#pragma once

#include "app/config.hpp"
#include "http/client_address.hpp"
#include "messaging/redis_client.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rsv::app {

/// The exit codes of `reservations serve` (docs/operations.md).
namespace exit_code {
constexpr int ok = 0;
/// The node could not start (the store, recovery, the port), or it stopped
/// past the shutdown deadline.
constexpr int failed = 1;
/// The configuration was refused: by check_config, before anything
/// started, or by what it names (the web root, the cluster's partition
/// count, the Kafka settings) when the node first uses it.
constexpr int refused = 2;
} // namespace exit_code

/// What a configuration that passed `check_config` comes to: the values
/// parsed out of its strings and the ones derived from several flags.
struct checked_config {
  std::optional<messaging::redis_endpoint> redis_at; // none: Redis disabled
  /// --kafka-property as NAME, VALUE pairs.
  std::vector<std::pair<std::string, std::string>> kafka_properties;
  /// --listen, split.
  std::string host;
  unsigned short port = 0;
  /// The secret that signs tokens: --token-secret, else random per process.
  std::string token_secret;
  std::vector<http::address_range> trusted_proxies;
  /// Where the other nodes reach this one: --advertise, else --listen.
  std::string advertise;
  /// The node's name in the outbox streams (--node-id, see check_config).
  std::string node_id;
};

/// Checks what CLI11 cannot check flag by flag: values that must parse
/// (URLs, addresses, NAME=VALUE) and flags that need each other. Logs the
/// first problem as critical and answers nothing (the caller exits with
/// exit_code::refused); warns of choices that are allowed but weaker (no
/// token secret, no admin token). Main thread, before anything starts.
std::optional<checked_config> check_config(const serve_config& cfg);

} // namespace rsv::app
