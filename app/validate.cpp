#include "app/validate.hpp"

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/limits.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

namespace rsv::app {

namespace {

bool split_listen(const std::string& listen, std::string& host,
                  unsigned short& port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  try {
    auto value = std::stoul(listen.substr(colon + 1));
    if (value > 65535) return false;
    port = static_cast<unsigned short>(value);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

/// Redis, the shared rate limits that need it, and Kafka with the outbox it
/// needs.
bool check_services(const serve_config& cfg, checked_config& out) {
  if (!cfg.redis_url.empty()) {
    auto parsed = messaging::parse_redis_url(cfg.redis_url);
    if (!parsed) {
      spdlog::critical("{}", describe(parsed.error()));
      return false;
    }
    out.redis_at = *parsed;
  }
  bool rate_limited = cfg.rate_limit_customer > 0 || cfg.rate_limit_address > 0;
  if (rate_limited && !out.redis_at) {
    // The limits are shared by all nodes, which only Redis makes possible;
    // a per-node limit would silently multiply by the number of nodes.
    spdlog::critical("--rate-limit-customer and --rate-limit-address need "
                     "--redis-url");
    return false;
  }
  if (!cfg.kafka_brokers.empty() && cfg.store != store_kind::postgres) {
    // The relay reads the outbox, which is a PostgreSQL table written in
    // the transaction of each change: without it there is nothing durable
    // to relay from.
    spdlog::critical("--kafka-brokers needs --store postgres: change events "
                     "go through the outbox table");
    return false;
  }
  for (const auto& property : cfg.kafka_properties) {
    auto equals = property.find('=');
    if (equals == std::string::npos || equals == 0) {
      spdlog::critical("--kafka-property {}: expected NAME=VALUE", property);
      return false;
    }
    out.kafka_properties.emplace_back(property.substr(0, equals),
                                      property.substr(equals + 1));
  }
  return true;
}

bool check_listen(const serve_config& cfg, checked_config& out) {
  if (split_listen(cfg.listen, out.host, out.port)) return true;
  spdlog::critical("--listen {}: expected HOST:PORT", cfg.listen);
  return false;
}

/// The secret that signs tokens and the previous ones still accepted.
bool check_token_secrets(const serve_config& cfg, checked_config& out) {
  out.token_secret = cfg.token_secret;
  if (out.token_secret.empty()) {
    out.token_secret =
        make_random_id("s") + make_random_id("s") + make_random_id("s");
    spdlog::warn("no --token-secret: sessions end with this process and are "
                 "not accepted by other nodes");
  } else if (out.token_secret.size() < limits::token_secret_bytes_min) {
    spdlog::critical("--token-secret must have at least {} bytes",
                     limits::token_secret_bytes_min);
    return false;
  }
  if (cfg.token_secrets_accepted.empty()) return true;
  // Accepted secrets are the previous ones of a rotation: without a
  // current secret the node would sign with a random key no other node
  // accepts.
  if (cfg.token_secret.empty()) {
    spdlog::critical("--token-secrets-accepted needs --token-secret, the "
                     "secret that signs");
    return false;
  }
  if (cfg.token_secrets_accepted.size() > limits::token_secrets_accepted_max) {
    spdlog::critical("--token-secrets-accepted takes at most {} secrets",
                     limits::token_secrets_accepted_max);
    return false;
  }
  for (std::size_t i = 0; i < cfg.token_secrets_accepted.size(); ++i)
    if (cfg.token_secrets_accepted[i].size() < limits::token_secret_bytes_min) {
      spdlog::critical("--token-secrets-accepted: secret {} must have at "
                       "least {} bytes",
                       i + 1, limits::token_secret_bytes_min);
      return false;
    }
  return true;
}

bool check_trusted_proxies(const serve_config& cfg, checked_config& out) {
  for (const auto& block : cfg.trusted_proxies) {
    auto range = http::parse_address_range(block);
    if (!range) {
      spdlog::critical("--trusted-proxies {}: expected an address or "
                       "ADDRESS/BITS, such as 10.0.0.0/16",
                       block);
      return false;
    }
    out.trusted_proxies.push_back(*range);
  }
  return true;
}

bool check_shutdown_delay(const serve_config& cfg) {
  if (cfg.shutdown_delay_ms <= 0 ||
      cfg.shutdown_delay_ms < cfg.shutdown_timeout_seconds * 1000)
    return true;
  // The delay is part of the shutdown deadline; requests in progress and
  // the last commits need time after it.
  spdlog::critical("--shutdown-delay-ms ({}) must be below "
                   "--shutdown-timeout-seconds ({} s)",
                   cfg.shutdown_delay_ms, cfg.shutdown_timeout_seconds);
  return false;
}

bool check_admin_token(const serve_config& cfg) {
  if (cfg.admin_token.empty()) {
    spdlog::warn("no --admin-token: admin calls are refused");
  } else if (cfg.admin_token.size() < limits::admin_token_chars_min) {
    // A short token can be guessed over the network; refusing to start is
    // kinder than running with it.
    spdlog::critical("the admin token (RSV_ADMIN_TOKEN or --admin-token) must "
                     "have at least {} characters, it has {}; make one with "
                     "`head -c 32 /dev/urandom | base64`",
                     limits::admin_token_chars_min, cfg.admin_token.size());
    return false;
  }
  return true;
}

bool check_cluster(const serve_config& cfg) {
  if (!cfg.cluster) return true;
  if (cfg.store != store_kind::postgres || cfg.kafka_brokers.empty()) {
    // Ownership comes from a Kafka consumer group and is fenced in
    // PostgreSQL: a cluster without either would sell seats twice.
    spdlog::critical("--cluster needs --store postgres and --kafka-brokers "
                     "(docs/cluster.md)");
    return false;
  }
  if (cfg.token_secret.empty()) {
    // Nodes check each other's session tokens and forwarded requests.
    spdlog::critical("--cluster needs --token-secret, the same on every node");
    return false;
  }
  return true;
}

/// The advertised address and the node's name in the outbox streams.
bool name_node(const serve_config& cfg, checked_config& out) {
  out.advertise = cfg.advertise.empty() ? cfg.listen : cfg.advertise;
  // The node's name in the outbox streams: distinct per node, or two nodes
  // write one stream and the relay, which marks each stream's last
  // delivered row, skips rows of one of them. The host name is not enough
  // when several nodes run on one host (scripts/cluster, the tests): a
  // clustered node's advertised address is distinct by construction.
  out.node_id = cfg.node_id;
  if (out.node_id.empty() && cfg.cluster) out.node_id = out.advertise;
  if (out.node_id.empty()) {
    char name[256] = {};
    out.node_id = gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0'
                      ? std::string{name}
                      : std::string{"node"};
  }
  if (cfg.cluster && (out.advertise.ends_with(":0") || out.advertise.empty())) {
    // The other nodes forward to this address: a port the kernel picks is
    // known only after binding, and "0" reaches nobody.
    spdlog::critical("--cluster needs --advertise HOST:PORT when --listen "
                     "has port 0 (got '{}')",
                     out.advertise);
    return false;
  }
  return true;
}

} // namespace

std::optional<checked_config> check_config(const serve_config& cfg) {
  checked_config out;
  // In this order: a problem is reported after the warnings of the checks
  // before it, as operators have seen them so far.
  bool valid = check_services(cfg, out) && check_listen(cfg, out) &&
               check_token_secrets(cfg, out) &&
               check_trusted_proxies(cfg, out) && check_shutdown_delay(cfg) &&
               check_admin_token(cfg) && check_cluster(cfg) &&
               name_node(cfg, out);
  if (!valid) return std::nullopt;
  return out;
}

} // namespace rsv::app
