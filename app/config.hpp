#pragma once

#include "core/limits.hpp"
#include "persistence/pg_store.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace rsv::app {

/// Everything `reservations serve` is configured with. Each field is a flag
/// and an environment variable (the flag wins); see `reservations serve
/// --help` and docs/operations.md.
struct serve_config {
  std::string listen = "127.0.0.1:8080";
  std::string admin_token;
  std::string store = "memory";
  std::string pg_dsn;
  // pipeline and 2 writers measured best (docs/benchmarks.md, "Batch
  // encodings and writer connections").
  batch_encoding pg_batch_encoding = batch_encoding::pipeline;
  std::size_t pg_writers = 2;
  int64_t pg_journal_step_interval_ms =
      limits::journal_step_interval_ms_default;
  std::string kafka_brokers;
  std::string kafka_topic = "reservation-events";
  std::vector<std::string> kafka_properties; // NAME=VALUE
  int kafka_linger_ms = 5;
  std::string node_id; // empty: the host name
  std::string redis_url;
  int64_t admission_ttl_seconds = 600; // limits::admission_ttl_seconds_default
  // Shared rate limits of the write routes (need Redis); 0: off.
  int64_t rate_limit_customer = 0;
  int64_t rate_limit_address = 0;
  int64_t rate_limit_window_seconds = 10;
  // Request numbers reserved ahead per hot key (0: none).
  int64_t rate_limit_lease_max = 256;
  // The availability read model in Redis: off, publish (keep it, read from
  // memory) or serve (also answer event counts and seat maps from it).
  std::string read_model = "publish";
  std::size_t connections_per_address_max =
      limits::connections_per_address_default;
  // How long a section keeps a hold that ended in memory (then the store
  // answers for it); see core/limits.hpp.
  int64_t hold_retention_seconds = limits::ended_hold_retention_ms / 1000;
  std::size_t io_threads = 2;
  std::size_t actor_threads = 2;
  std::size_t customer_shards = 8;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string token_secret;
  // Previous token secrets, still accepted while they rotate out.
  std::vector<std::string> token_secrets_accepted;
  int64_t session_ttl_seconds = 24 * 3600;
  int64_t request_timeout_ms = 5000;
  // Below ECS's default stop timeout of 30 s (docs/operations.md).
  int64_t shutdown_timeout_seconds = 25;
  int64_t shutdown_delay_ms = 0;
  std::size_t password_hash_memory_kib = 19 * 1024;
  unsigned long long password_hash_ops = 2;
  // 0: one per core the process may run on.
  std::size_t password_hash_threads = limits::password_hash_threads_default;
  // Logins and registrations per minute, and at once, per client address and
  // per email (0 per minute: no limit).
  int64_t auth_limit_address = limits::auth_per_address_per_minute_default;
  int64_t auth_burst_address = limits::auth_per_address_burst_default;
  int64_t auth_limit_email = limits::auth_per_email_per_minute_default;
  int64_t auth_burst_email = limits::auth_per_email_burst_default;
  // Load balancers whose X-Forwarded-For names the client (CIDR blocks).
  std::vector<std::string> trusted_proxies;
  bool demo = false;
  /// The built web pages; empty: `web` beside the executable (the build
  /// folder), else `../share/reservations/web` from it (an installed tree).
  std::string web_root;
  bool chaos = false; // the chaos facility's admin routes

  // Clustered nodes (docs/cluster.md): events placed by partition, owners
  // from a Kafka consumer group, writes fenced by epochs in PostgreSQL.
  bool cluster = false;
  std::string advertise; // empty: the listen address
  uint32_t cluster_partitions = 64;
  std::string cluster_group = "rsv-owners";
  std::string cluster_topic = "rsv-owners";
  // Defaults for real brokers: a node that stops heartbeating loses its
  // partitions after 10 s (docs/cluster.md, "Failure cases").
  int cluster_session_timeout_ms = 10000;
  int cluster_heartbeat_ms = 3000;
  // How often a node reads every partition's owner and epoch from
  // PostgreSQL (forwarding follows moves; a node whose partition another
  // node took stops serving it even before a write of its is fenced).
  int cluster_owners_refresh_ms = 1000;
  // Test-only: writes are not fenced, only counted when stale.
  bool cluster_unsafe_no_fencing = false;
};

/// Runs a node until SIGTERM or SIGINT; answers the process exit code.
int serve(const serve_config& config);

} // namespace rsv::app
