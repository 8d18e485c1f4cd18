#pragma once

#include "core/assert.hpp"
#include "core/limits.hpp"
#include "persistence/pg_store.hpp"

#include <algorithm>
#include <cstdint>
#include <spdlog/common.h>
#include <string>
#include <utility>
#include <vector>

namespace rsv::app {

/// Where holds and bookings are kept (--store).
enum class store_kind { memory, postgres };

/// The availability read model in Redis (--read-model): off, publish (kept
/// current, reads still from memory) or serve (event counts and seat maps
/// also answered from it).
enum class read_model_mode { off, publish, serve };

/// How log lines look (--log-format): text, or one JSON object per line.
enum class log_style { text, json };

/// How CAF's threads take the actors that have messages (--actor-scheduler):
/// from one shared queue, an idle thread sleeping until it is woken
/// (sharing), or from a queue per thread, an idle one polling and stealing
/// before it sleeps (stealing). docs/benchmarks.md, "The actor scheduler".
enum class actor_scheduler { sharing, stealing };

/// The values of an option with a fixed set of them, under the names the
/// command line gives them, in the order `--help` lists them. CLI11 checks
/// a value against the names; the rest of the program sees only the enum.
template <class Enum>
using option_names = std::vector<std::pair<std::string, Enum>>;

inline const option_names<store_kind> store_names{
    {"memory", store_kind::memory}, {"postgres", store_kind::postgres}};
inline const option_names<persistence::batch_encoding> batch_encoding_names{
    {"journal", persistence::batch_encoding::journal},
    {"pipeline", persistence::batch_encoding::pipeline}};
inline const option_names<read_model_mode> read_model_names{
    {"off", read_model_mode::off},
    {"publish", read_model_mode::publish},
    {"serve", read_model_mode::serve}};
inline const option_names<spdlog::level::level_enum> log_level_names{
    {"trace", spdlog::level::trace},
    {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},
    {"error", spdlog::level::err}};
inline const option_names<log_style> log_style_names{{"text", log_style::text},
                                                     {"json", log_style::json}};
inline const option_names<actor_scheduler> actor_scheduler_names{
    {"sharing", actor_scheduler::sharing},
    {"stealing", actor_scheduler::stealing}};

/// The name of `value` in `names`: every value of such an enum has one.
template <class Enum>
const std::string& name_of(const option_names<Enum>& names, Enum value) {
  auto found = std::find_if(names.begin(), names.end(), [value](auto& entry) {
    return entry.second == value;
  });
  RSV_ASSERT(found != names.end(), "an option value without a name");
  return found->first;
}

/// Everything `reservations serve` is configured with. Each field is a flag
/// and an environment variable (the flag wins); see `reservations serve
/// --help` and docs/operations.md. Defaults that a bound or another module
/// shares come from core/limits.hpp, which says why they are what they are.
struct serve_config {
  std::string listen = "127.0.0.1:8080";
  std::string admin_token;
  store_kind store = store_kind::memory;
  std::string pg_dsn;
  // pipeline and 2 writers measured best (docs/benchmarks.md, "Batch
  // encodings and writer connections").
  persistence::batch_encoding pg_batch_encoding =
      persistence::batch_encoding::pipeline;
  std::size_t pg_writers = 2;
  int64_t pg_journal_step_interval_ms =
      limits::journal_step_interval_ms_default;
  std::string kafka_brokers;
  std::string kafka_topic = "reservation-events";
  std::vector<std::string> kafka_properties; // NAME=VALUE
  int kafka_linger_ms = limits::kafka_linger_ms_default;
  std::string node_id; // empty: the host name
  std::string redis_url;
  int64_t admission_ttl_seconds = limits::admission_ttl_seconds_default;
  // Shared rate limits of the write routes (need Redis); 0: off.
  int64_t rate_limit_customer = 0;
  int64_t rate_limit_address = 0;
  int64_t rate_limit_window_seconds = 10;
  // Request numbers reserved ahead per hot key (0: none).
  int64_t rate_limit_lease_max = 256;
  read_model_mode read_model = read_model_mode::publish;
  std::size_t connections_per_address_max =
      limits::connections_per_address_default;
  // How long a section keeps a hold that ended in memory (then the store
  // answers for it); see core/limits.hpp.
  int64_t hold_retention_seconds = limits::ended_hold_retention_ms / 1000;
  // When a section writes a snapshot (the journal); see core/limits.hpp.
  uint32_t snapshot_writes = limits::snapshot_writes_default;
  int64_t snapshot_seconds = limits::snapshot_interval_ms_default / 1000;
  std::size_t io_threads = 2;
  std::size_t actor_threads = 2;
  actor_scheduler scheduler = actor_scheduler::sharing;
  std::size_t customer_shards = 8;
  spdlog::level::level_enum log_level = spdlog::level::info;
  log_style log_format = log_style::text;
  std::string token_secret;
  // Previous token secrets, still accepted while they rotate out.
  std::vector<std::string> token_secrets_accepted;
  int64_t session_ttl_seconds = limits::session_ttl_seconds_default;
  int64_t request_timeout_ms = limits::request_timeout_ms_default;
  // Below ECS's default stop timeout of 30 s (docs/operations.md).
  int64_t shutdown_timeout_seconds = 25;
  int64_t shutdown_delay_ms = 0;
  std::size_t password_hash_memory_kib =
      limits::password_hash_memory_kib_default;
  unsigned long long password_hash_ops = limits::password_hash_ops_default;
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
  int cluster_session_timeout_ms = limits::cluster_session_timeout_ms_default;
  int cluster_heartbeat_ms = limits::cluster_heartbeat_ms_default;
  int cluster_owners_refresh_ms = limits::cluster_owners_refresh_ms_default;
  // Test-only: writes are not fenced, only counted when stale.
  bool cluster_unsafe_no_fencing = false;
};

/// Runs a node until SIGTERM or SIGINT; answers the process exit code.
int serve(const serve_config& config);

} // namespace rsv::app
