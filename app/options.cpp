#include "app/options.hpp"

#include "core/limits.hpp"

namespace rsv::app {

namespace {

/// The listener, the admin token and the store.
void add_store_options(CLI::App& serve, serve_config& cfg) {
  serve.add_option("--listen", cfg.listen, "HOST:PORT to listen on")
      ->envname("RSV_LISTEN")
      ->capture_default_str();
  serve
      .add_option("--admin-token", cfg.admin_token,
                  "Bearer token of admin calls, at least 32 characters "
                  "(empty: admin calls are refused). Prefer the variable: "
                  "a flag's value is visible to every user of the host in "
                  "ps")
      ->envname("RSV_ADMIN_TOKEN");
  add_named_option(serve, "--store", cfg.store, store_names,
                   "memory or postgres")
      ->envname("RSV_STORE");
  serve
      .add_option("--pg-dsn", cfg.pg_dsn,
                  "libpq connection string (else libpq's PG* variables)")
      ->envname("RSV_PG_DSN");
  add_named_option(serve, "--pg-batch-encoding", cfg.pg_batch_encoding,
                   batch_encoding_names,
                   "how a group commit becomes SQL: pipeline (the tables' "
                   "rows, prepared statements in libpq's pipeline mode) or "
                   "journal (one journal row per commit, projected into the "
                   "tables in the background)")
      ->envname("RSV_PG_BATCH_ENCODING");
  serve
      .add_option("--pg-writers", cfg.pg_writers,
                  "PostgreSQL writer connections, each committing its own "
                  "batches (sections are spread over them)")
      ->envname("RSV_PG_WRITERS")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  serve
      .add_option("--pg-journal-step-interval-ms",
                  cfg.pg_journal_step_interval_ms,
                  "with --pg-batch-encoding journal: the projector applies "
                  "journal rows at most once per this interval while they "
                  "keep coming (larger steps cost PostgreSQL less per write; "
                  "the tables trail by about this much more)")
      ->envname("RSV_PG_JOURNAL_STEP_INTERVAL_MS")
      ->check(CLI::Range(0, 10'000))
      ->capture_default_str();
}

/// Kafka and the outbox.
void add_kafka_options(CLI::App& serve, serve_config& cfg) {
  serve
      .add_option("--kafka-brokers", cfg.kafka_brokers,
                  "Kafka bootstrap servers (empty: Kafka disabled)")
      ->envname("RSV_KAFKA_BROKERS");
  serve
      .add_option("--kafka-topic", cfg.kafka_topic,
                  "topic of the change events (docs/events.md)")
      ->envname("RSV_KAFKA_TOPIC")
      ->capture_default_str();
  serve
      .add_option("--kafka-property", cfg.kafka_properties,
                  "a librdkafka setting NAME=VALUE, repeatable, e.g. "
                  "security.protocol=SASL_SSL (docs/operations.md); in the "
                  "variable, separated by commas")
      ->envname("RSV_KAFKA_PROPERTIES")
      ->delimiter(',');
  serve
      .add_option("--kafka-linger-ms", cfg.kafka_linger_ms,
                  "how long the relay's producer waits to fill a batch")
      ->envname("RSV_KAFKA_LINGER_MS")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  serve
      .add_option("--node-id", cfg.node_id,
                  "this node's name in the outbox (distinct per node; "
                  "default: with --cluster the advertised HOST:PORT, else "
                  "the host name)")
      ->envname("RSV_NODE_ID");
}

/// Redis: the waiting room, the shared rate limits, the read model.
void add_redis_options(CLI::App& serve, serve_config& cfg) {
  serve
      .add_option("--redis-url", cfg.redis_url,
                  "redis://[[user]:password@]host[:port][/db] for the "
                  "waiting room (empty: Redis disabled)")
      ->envname("RSV_REDIS_URL");
  serve
      .add_option("--admission-ttl-seconds", cfg.admission_ttl_seconds,
                  "how long a waiting-room admission token is valid")
      ->envname("RSV_ADMISSION_TTL_SECONDS")
      ->check(CLI::Range(10, 24 * 3600))
      ->capture_default_str();
  serve
      .add_option("--rate-limit-customer", cfg.rate_limit_customer,
                  "write requests per window per customer, shared by all "
                  "nodes through Redis (0: no limit)")
      ->envname("RSV_RATE_LIMIT_CUSTOMER")
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000'000}))
      ->capture_default_str();
  serve
      .add_option("--rate-limit-address", cfg.rate_limit_address,
                  "write requests per window per client address, shared by "
                  "all nodes through Redis (0: no limit)")
      ->envname("RSV_RATE_LIMIT_ADDRESS")
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000'000}))
      ->capture_default_str();
  serve
      .add_option("--rate-limit-lease-max", cfg.rate_limit_lease_max,
                  "request numbers an I/O thread may reserve ahead in Redis "
                  "for a key that keeps coming, so that its next requests "
                  "need no round trip (0: every request counted in Redis; "
                  "docs/architecture.md, \"Rate limits\")")
      ->envname("RSV_RATE_LIMIT_LEASE_MAX")
      ->check(CLI::Range(int64_t{0}, int64_t{100'000}))
      ->capture_default_str();
  add_named_option(serve, "--read-model", cfg.read_model, read_model_names,
                   "with Redis: off, publish (counts and seat statuses to "
                   "Redis after every commit) or serve (also answer event "
                   "counts and seat maps from Redis)")
      ->envname("RSV_READ_MODEL");
  serve
      .add_option("--rate-limit-window-seconds", cfg.rate_limit_window_seconds,
                  "the rate limits' window")
      ->envname("RSV_RATE_LIMIT_WINDOW_SECONDS")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
}

/// Connections, memory, threads and logs.
void add_capacity_options(CLI::App& serve, serve_config& cfg) {
  serve
      .add_option("--connections-per-address-max",
                  cfg.connections_per_address_max,
                  "Open connections per client address (IPv6: per /64); "
                  "0: no cap (behind a load balancer)")
      ->envname("RSV_CONNECTIONS_PER_ADDRESS_MAX")
      ->check(CLI::Range(std::size_t{0}, rsv::limits::connections_max))
      ->capture_default_str();
  serve
      .add_option("--hold-retention-seconds", cfg.hold_retention_seconds,
                  "How long a hold that ended stays in its section's "
                  "memory; after that reads of it come from the store (with "
                  "--store memory: 404)")
      ->envname("RSV_HOLD_RETENTION_SECONDS")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400}))
      ->capture_default_str();
  serve
      .add_option("--snapshot-writes", cfg.snapshot_writes,
                  "With --pg-batch-encoding journal: a section writes a "
                  "snapshot of its state after as many writes since its "
                  "last as it has hold records, and at least this many")
      ->envname("RSV_SNAPSHOT_WRITES")
      ->check(CLI::Range(uint32_t{1}, uint32_t{1'000'000}))
      ->capture_default_str();
  serve
      .add_option("--snapshot-seconds", cfg.snapshot_seconds,
                  "With --pg-batch-encoding journal: a section writes a "
                  "snapshot at the latest this long after its first write "
                  "since its last; journal rows stay until snapshots cover "
                  "them")
      ->envname("RSV_SNAPSHOT_SECONDS")
      ->check(CLI::Range(int64_t{1}, int64_t{3'600}))
      ->capture_default_str();
  serve.add_option("--io-threads", cfg.io_threads, "HTTP I/O threads")
      ->envname("RSV_IO_THREADS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  serve
      .add_option("--actor-threads", cfg.actor_threads, "CAF scheduler threads")
      ->envname("RSV_ACTOR_THREADS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  add_named_option(serve, "--actor-scheduler", cfg.scheduler,
                   actor_scheduler_names,
                   "how the actor threads take work: sharing (one queue; an "
                   "idle thread sleeps until woken) or stealing (a queue per "
                   "thread; an idle thread polls, then sleeps in 50 us steps)")
      ->envname("RSV_ACTOR_SCHEDULER");
  serve
      .add_option("--customer-shards", cfg.customer_shards,
                  "Actors that share customer-scoped state")
      ->envname("RSV_CUSTOMER_SHARDS")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  add_named_option(serve, "--log-level", cfg.log_level, log_level_names,
                   "trace, debug, info, warn, error")
      ->envname("RSV_LOG_LEVEL");
  add_named_option(serve, "--log-format", cfg.log_format, log_style_names,
                   "text or json")
      ->envname("RSV_LOG_FORMAT");
}

/// Session tokens, the request deadline and the shutdown.
void add_session_options(CLI::App& serve, serve_config& cfg) {
  serve
      .add_option("--token-secret", cfg.token_secret,
                  "HMAC key that signs session tokens, at least 32 bytes, "
                  "the same on every node (empty: random per process). "
                  "Prefer the variable: a flag's value is visible to every "
                  "user of the host in ps")
      ->envname("RSV_TOKEN_SECRET");
  serve
      .add_option("--token-secrets-accepted", cfg.token_secrets_accepted,
                  "previous token secrets, whose session and admission "
                  "tokens are still accepted (never issued) while the "
                  "secret rotates; at most 4, each at least 32 bytes; in "
                  "the variable, separated by commas (docs/operations.md, "
                  "\"Rotating the token secret\")")
      ->envname("RSV_TOKEN_SECRETS_ACCEPTED")
      ->delimiter(',');
  serve
      .add_option("--session-ttl-seconds", cfg.session_ttl_seconds,
                  "Lifetime of session tokens")
      ->envname("RSV_SESSION_TTL_SECONDS")
      ->check(CLI::Range(60, 30 * 24 * 3600))
      ->capture_default_str();
  serve
      .add_option("--request-timeout-ms", cfg.request_timeout_ms,
                  "Deadline of a request; past it the answer is 503")
      ->envname("RSV_REQUEST_TIMEOUT_MS")
      ->check(CLI::Range(10, 120'000))
      ->capture_default_str();
  serve
      .add_option("--shutdown-timeout-seconds", cfg.shutdown_timeout_seconds,
                  "On SIGTERM, the deadline of the whole shutdown (delay, "
                  "requests in progress, last commits, Kafka relay); past "
                  "it the exit code is 1. Keep it below the "
                  "orchestrator's stop timeout")
      ->envname("RSV_SHUTDOWN_TIMEOUT_SECONDS")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();
  serve
      .add_option("--shutdown-delay-ms", cfg.shutdown_delay_ms,
                  "On SIGTERM, how long to keep serving (with /ready "
                  "answering 503) before the listener closes, for load "
                  "balancers that only learn from /ready")
      ->envname("RSV_SHUTDOWN_DELAY_MS")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
}

/// Passwords, their throttles and the trusted proxies.
void add_password_options(CLI::App& serve, serve_config& cfg) {
  serve
      .add_option("--password-hash-memory-kib", cfg.password_hash_memory_kib,
                  "argon2id memory cost (OWASP: 19456)")
      ->envname("RSV_PASSWORD_HASH_MEMORY_KIB")
      ->check(CLI::Range(8, 4 * 1024 * 1024))
      ->capture_default_str();
  serve
      .add_option("--password-hash-ops", cfg.password_hash_ops,
                  "argon2id time cost (OWASP: 2)")
      ->envname("RSV_PASSWORD_HASH_OPS")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  serve
      .add_option("--password-hash-threads", cfg.password_hash_threads,
                  "threads that hash and check passwords (0: one per core "
                  "the process may run on); each needs the memory cost "
                  "while it works")
      ->envname("RSV_PASSWORD_HASH_THREADS")
      ->check(
          CLI::Range(std::size_t{0}, rsv::limits::password_hash_threads_max))
      ->capture_default_str();
  serve
      .add_option("--auth-limit-address", cfg.auth_limit_address,
                  "logins and registrations per minute per client address, "
                  "in this process (0: no limit; docs/operations.md, "
                  "\"Logins under attack\")")
      ->envname("RSV_AUTH_LIMIT_ADDRESS")
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000}))
      ->capture_default_str();
  serve
      .add_option("--auth-burst-address", cfg.auth_burst_address,
                  "of those, how many one address may make at once")
      ->envname("RSV_AUTH_BURST_ADDRESS")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000}))
      ->capture_default_str();
  serve
      .add_option("--auth-limit-email", cfg.auth_limit_email,
                  "logins and registrations per minute per email, in this "
                  "process (0: no limit)")
      ->envname("RSV_AUTH_LIMIT_EMAIL")
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000}))
      ->capture_default_str();
  serve
      .add_option("--auth-burst-email", cfg.auth_burst_email,
                  "of those, how many one email may have at once")
      ->envname("RSV_AUTH_BURST_EMAIL")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000}))
      ->capture_default_str();
  serve
      .add_option("--trusted-proxies", cfg.trusted_proxies,
                  "address blocks of the load balancers in front of the "
                  "node, e.g. the VPC's 10.0.0.0/16: a request from one "
                  "counts under the client address it appended to "
                  "X-Forwarded-For (per-address limits), not under its "
                  "own; in the variable, separated by commas (empty: the "
                  "header is ignored)")
      ->envname("RSV_TRUSTED_PROXIES")
      ->delimiter(',');
}

/// The demo event, the web pages and the chaos facility.
void add_node_options(CLI::App& serve, serve_config& cfg) {
  serve.add_flag("--demo", cfg.demo, "Create a demo event at start")
      ->envname("RSV_DEMO");
  serve
      .add_option("--web-root", cfg.web_root,
                  "folder of the built web pages served from / (empty: web "
                  "beside the executable, else ../share/reservations/web)")
      ->envname("RSV_WEB_ROOT");
  serve
      .add_flag("--chaos", cfg.chaos,
                "Enable the chaos facility's admin routes under "
                "/v1/admin/chaos (kill section actors, slow or fail store "
                "commits); never in production")
      ->envname("RSV_CHAOS");
}

/// Clustered nodes (docs/cluster.md).
void add_cluster_options(CLI::App& serve, serve_config& cfg) {
  serve
      .add_flag("--cluster", cfg.cluster,
                "Run as one node of a cluster (docs/cluster.md): needs "
                "--store postgres and --kafka-brokers")
      ->envname("RSV_CLUSTER");
  serve
      .add_option("--advertise", cfg.advertise,
                  "HOST:PORT where the other nodes reach this one (default: "
                  "the --listen address; on ECS the task's own address)")
      ->envname("RSV_ADVERTISE");
  serve
      .add_option("--cluster-partitions", cfg.cluster_partitions,
                  "partitions of the events (fixed for the life of the "
                  "database: recorded at the first start, checked after)")
      ->envname("RSV_CLUSTER_PARTITIONS")
      ->check(CLI::Range(1, static_cast<int>(limits::cluster_partitions_max)))
      ->capture_default_str();
  serve
      .add_option("--cluster-group", cfg.cluster_group,
                  "Kafka consumer group whose assignment decides the owners")
      ->envname("RSV_CLUSTER_GROUP")
      ->capture_default_str();
  serve
      .add_option("--cluster-topic", cfg.cluster_topic,
                  "Kafka topic with one partition per event partition "
                  "(nothing is produced to it)")
      ->envname("RSV_CLUSTER_TOPIC")
      ->capture_default_str();
  serve
      .add_option("--cluster-session-timeout-ms",
                  cfg.cluster_session_timeout_ms,
                  "how long the group waits for a silent node before it "
                  "moves its partitions")
      ->envname("RSV_CLUSTER_SESSION_TIMEOUT_MS")
      ->check(CLI::Range(1000, 300000))
      ->capture_default_str();
  serve
      .add_option("--cluster-heartbeat-ms", cfg.cluster_heartbeat_ms,
                  "interval of the group heartbeats (below a third of the "
                  "session timeout)")
      ->envname("RSV_CLUSTER_HEARTBEAT_MS")
      ->check(CLI::Range(100, 100000))
      ->capture_default_str();
  serve
      .add_option("--cluster-owners-refresh-ms", cfg.cluster_owners_refresh_ms,
                  "how often the partitions' owners and epochs are read "
                  "from PostgreSQL")
      ->envname("RSV_CLUSTER_OWNERS_REFRESH_MS")
      ->check(CLI::Range(50, 600000))
      ->capture_default_str();
  // A test switch, left out of --help: it shows what the fence prevents.
  serve
      .add_flag("--cluster-unsafe-no-fencing", cfg.cluster_unsafe_no_fencing,
                "")
      ->envname("RSV_CLUSTER_UNSAFE_NO_FENCING")
      ->group("");
}

} // namespace

void add_serve_options(CLI::App& serve, serve_config& cfg) {
  add_store_options(serve, cfg);
  add_kafka_options(serve, cfg);
  add_redis_options(serve, cfg);
  add_capacity_options(serve, cfg);
  add_session_options(serve, cfg);
  add_password_options(serve, cfg);
  add_node_options(serve, cfg);
  add_cluster_options(serve, cfg);
}

} // namespace rsv::app
