#include "actors/cluster_coordinator.hpp"
#include "actors/runtime.hpp"
#include "app/config.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/json_log.hpp"
#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "http/api.hpp"
#include "http/server.hpp"
#include "messaging/cluster_membership.hpp"
#include "messaging/kafka_relay.hpp"
#include "messaging/rate_limiter.hpp"
#include "messaging/read_model.hpp"
#include "messaging/redis_client.hpp"
#include "messaging/waiting_room.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/recovery.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <future>
#include <iostream>
#include <optional>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>
#include <unistd.h>

namespace rsv::app {

namespace {

void setup_logging(const serve_config& cfg) {
  auto logger = spdlog::stderr_color_mt("rsv");
  if (cfg.log_format == log_style::json)
    logger->set_formatter(make_json_log_formatter());
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v",
                        spdlog::pattern_time_type::utc);
  logger->set_level(cfg.log_level);
  spdlog::set_default_logger(logger);
}

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

/// The web pages of `--web-root`, or of the first default folder that has
/// an index.html. A folder named on the command line must load; without
/// one, a node with no pages still serves the API (and `/` answers 404).
caf::expected<std::shared_ptr<const http::static_files>>
load_web_pages(const std::string& web_root) {
  if (!web_root.empty()) return http::static_files::load(web_root);
  std::error_code ec;
  auto executable = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return std::shared_ptr<const http::static_files>{};
  auto folder = executable.parent_path();
  for (const auto& candidate :
       {folder / "web", folder / ".." / "share" / "reservations" / "web"}) {
    if (!std::filesystem::exists(candidate / "index.html", ec)) continue;
    return http::static_files::load(candidate.lexically_normal());
  }
  return std::shared_ptr<const http::static_files>{};
}

/// The cores this process may run on (its CPU affinity, which containers
/// and taskset narrow), at least 1 and at most `max`.
std::size_t usable_cores(std::size_t max) {
  cpu_set_t set;
  std::size_t cores = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    cores = static_cast<std::size_t>(CPU_COUNT(&set));
  if (cores == 0) cores = std::thread::hardware_concurrency();
  return std::clamp<std::size_t>(cores, 1, max);
}

/// The demo event of the run command: 4 sections, 1,800 seats.
event_def demo_event() {
  event_def def;
  def.id = "demo-concert";
  def.name = "Demo Concert";
  def.starts_at_ms = *parse_rfc3339("2026-12-31T20:00:00Z");
  def.hold_ttl_seconds = 600;
  def.max_seats_per_customer = 8;
  auto section = [](std::string id, std::string name, int64_t price, int rows,
                    uint32_t seats) {
    section_def s{std::move(id), std::move(name), price, {}};
    for (int r = 0; r < rows; ++r)
      s.rows.push_back({std::string(1, static_cast<char>('A' + r)), seats});
    return s;
  };
  def.sections.push_back(section("floor", "Floor", 12000, 20, 40));
  def.sections.push_back(section("balcony-left", "Balcony Left", 8000, 10, 30));
  def.sections.push_back(
      section("balcony-right", "Balcony Right", 8000, 10, 30));
  def.sections.push_back(section("gallery", "Gallery", 4500, 8, 50));
  return def;
}

} // namespace

int serve(const serve_config& cfg) {
  setup_logging(cfg);
  if (sodium_init() < 0) {
    spdlog::critical("libsodium failed to initialise");
    return 1;
  }
  std::optional<redis_endpoint> redis_at;
  if (!cfg.redis_url.empty()) {
    auto parsed = parse_redis_url(cfg.redis_url);
    if (!parsed) {
      spdlog::critical("{}", describe(parsed.error()));
      return 2;
    }
    redis_at = *parsed;
  }
  bool rate_limited = cfg.rate_limit_customer > 0 || cfg.rate_limit_address > 0;
  if (rate_limited && !redis_at) {
    // The limits are shared by all nodes, which only Redis makes possible;
    // a per-node limit would silently multiply by the number of nodes.
    spdlog::critical("--rate-limit-customer and --rate-limit-address need "
                     "--redis-url");
    return 2;
  }
  bool kafka = !cfg.kafka_brokers.empty();
  if (kafka && cfg.store != store_kind::postgres) {
    // The relay reads the outbox, which is a PostgreSQL table written in
    // the transaction of each change: without it there is nothing durable
    // to relay from.
    spdlog::critical("--kafka-brokers needs --store postgres: change events "
                     "go through the outbox table");
    return 2;
  }
  std::vector<std::pair<std::string, std::string>> kafka_properties;
  for (const auto& property : cfg.kafka_properties) {
    auto equals = property.find('=');
    if (equals == std::string::npos || equals == 0) {
      spdlog::critical("--kafka-property {}: expected NAME=VALUE", property);
      return 2;
    }
    kafka_properties.emplace_back(property.substr(0, equals),
                                  property.substr(equals + 1));
  }
  std::string host;
  unsigned short port = 0;
  if (!split_listen(cfg.listen, host, port)) {
    spdlog::critical("--listen {}: expected HOST:PORT", cfg.listen);
    return 2;
  }
  auto token_secret = cfg.token_secret;
  if (token_secret.empty()) {
    token_secret =
        make_random_id("s") + make_random_id("s") + make_random_id("s");
    spdlog::warn("no --token-secret: sessions end with this process and are "
                 "not accepted by other nodes");
  } else if (token_secret.size() < limits::token_secret_bytes_min) {
    spdlog::critical("--token-secret must have at least {} bytes",
                     limits::token_secret_bytes_min);
    return 2;
  }
  if (!cfg.token_secrets_accepted.empty()) {
    // Accepted secrets are the previous ones of a rotation: without a
    // current secret the node would sign with a random key no other node
    // accepts.
    if (cfg.token_secret.empty()) {
      spdlog::critical("--token-secrets-accepted needs --token-secret, the "
                       "secret that signs");
      return 2;
    }
    if (cfg.token_secrets_accepted.size() >
        limits::token_secrets_accepted_max) {
      spdlog::critical("--token-secrets-accepted takes at most {} secrets",
                       limits::token_secrets_accepted_max);
      return 2;
    }
    for (std::size_t i = 0; i < cfg.token_secrets_accepted.size(); ++i)
      if (cfg.token_secrets_accepted[i].size() <
          limits::token_secret_bytes_min) {
        spdlog::critical("--token-secrets-accepted: secret {} must have at "
                         "least {} bytes",
                         i + 1, limits::token_secret_bytes_min);
        return 2;
      }
  }
  std::vector<http::address_range> trusted_proxies;
  for (const auto& block : cfg.trusted_proxies) {
    auto range = http::parse_address_range(block);
    if (!range) {
      spdlog::critical("--trusted-proxies {}: expected an address or "
                       "ADDRESS/BITS, such as 10.0.0.0/16",
                       block);
      return 2;
    }
    trusted_proxies.push_back(*range);
  }
  if (cfg.shutdown_delay_ms > 0 &&
      cfg.shutdown_delay_ms >= cfg.shutdown_timeout_seconds * 1000) {
    // The delay is part of the shutdown deadline; requests in progress and
    // the last commits need time after it.
    spdlog::critical("--shutdown-delay-ms ({}) must be below "
                     "--shutdown-timeout-seconds ({} s)",
                     cfg.shutdown_delay_ms, cfg.shutdown_timeout_seconds);
    return 2;
  }
  if (cfg.admin_token.empty()) {
    spdlog::warn("no --admin-token: admin calls are refused");
  } else if (cfg.admin_token.size() < limits::admin_token_chars_min) {
    // A short token can be guessed over the network; refusing to start is
    // kinder than running with it.
    spdlog::critical("the admin token (RSV_ADMIN_TOKEN or --admin-token) must "
                     "have at least {} characters, it has {}; make one with "
                     "`head -c 32 /dev/urandom | base64`",
                     limits::admin_token_chars_min, cfg.admin_token.size());
    return 2;
  }
  bool postgres = cfg.store == store_kind::postgres;
  if (cfg.cluster && (!postgres || !kafka)) {
    // Ownership comes from a Kafka consumer group and is fenced in
    // PostgreSQL: a cluster without either would sell seats twice.
    spdlog::critical("--cluster needs --store postgres and --kafka-brokers "
                     "(docs/cluster.md)");
    return 2;
  }
  if (cfg.cluster && cfg.token_secret.empty()) {
    // Nodes check each other's session tokens and forwarded requests.
    spdlog::critical("--cluster needs --token-secret, the same on every node");
    return 2;
  }
  auto advertise = cfg.advertise.empty() ? cfg.listen : cfg.advertise;
  // The node's name in the outbox streams: distinct per node, or two nodes
  // write one stream and the relay, which marks each stream's last
  // delivered row, skips rows of one of them. The host name is not enough
  // when several nodes run on one host (scripts/cluster, the tests): a
  // clustered node's advertised address is distinct by construction.
  auto node_id = cfg.node_id;
  if (node_id.empty() && cfg.cluster) node_id = advertise;
  if (node_id.empty()) {
    char name[256] = {};
    node_id = gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0'
                  ? std::string{name}
                  : std::string{"node"};
  }
  if (cfg.cluster && (advertise.ends_with(":0") || advertise.empty())) {
    // The other nodes forward to this address: a port the kernel picks is
    // known only after binding, and "0" reaches nobody.
    spdlog::critical("--cluster needs --advertise HOST:PORT when --listen "
                     "has port 0 (got '{}')",
                     advertise);
    return 2;
  }
  if (!postgres)
    spdlog::warn("STORE IS MEMORY: NOTHING IS DURABLE. Every hold and "
                 "booking is lost when this process ends.");

  // Signals are taken by sigwait below; block them before any thread starts
  // so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  caf::actor_system_config caf_cfg;
  caf_cfg.set("scheduler.max-threads", cfg.actor_threads);
  caf_cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system system{caf_cfg};

  auto registry = std::make_shared<prometheus::Registry>();
  // The chaos facility's crashes of the relay and the Redis threads: only
  // with --chaos, so that without it their injection points test a null.
  auto chaos_threads = cfg.chaos ? std::make_shared<thread_faults>() : nullptr;
  auto crashes_of = [&](crash_fault thread_faults::*member) {
    return chaos_threads ? std::shared_ptr<crash_fault>(
                               chaos_threads, &(chaos_threads.get()->*member))
                         : nullptr;
  };
  runtime_deps deps;
  recovered_state recovered;
  std::shared_ptr<kafka_relay> relay;
  std::shared_ptr<pg_store> pg;
  std::shared_ptr<ownership> owners;
  std::shared_ptr<cluster_store> cluster_db;
  auto recovery_started = std::chrono::steady_clock::now();
  if (postgres) {
    // Migrations and recovery happen before the node listens: until then
    // nothing is served, so nothing can disagree with the database.
    auto migrated = apply_migrations(cfg.pg_dsn);
    if (!migrated) {
      spdlog::critical("migrations failed: {}", describe(migrated.error()));
      return 1;
    }
    if (cfg.cluster) {
      if (auto err = cluster_store::init(cfg.pg_dsn, cfg.cluster_partitions)) {
        spdlog::critical("cluster: {}", describe(err));
        return 2;
      }
      owners = std::make_shared<ownership>(cfg.cluster_partitions, advertise);
      cluster_db = std::make_shared<cluster_store>(cfg.pg_dsn);
      deps.cluster = owners;
      deps.cluster_db = cluster_db;
    }
    recovery_started = std::chrono::steady_clock::now();
    auto loaded = load_recorded_state(cfg.pg_dsn);
    if (!loaded) {
      spdlog::critical("recovery failed: {}", describe(loaded.error()));
      return 1;
    }
    recovered = std::move(*loaded);
    if (cfg.cluster) {
      // A node of a cluster serves only the events of the partitions the
      // group assigns it, loaded when they are (cluster_coordinator).
      recovered.events.clear();
      recovered.holds.clear();
    }
    pg_store_config pg_cfg;
    pg_cfg.dsn = cfg.pg_dsn;
    pg_cfg.encoding = cfg.pg_batch_encoding;
    pg_cfg.node = node_id;
    pg_cfg.writers = cfg.pg_writers;
    pg_cfg.journal_step_interval_ms = cfg.pg_journal_step_interval_ms;
    pg_cfg.registry = registry;
    pg_cfg.fencing = !cfg.cluster_unsafe_no_fencing;
    if (cfg.cluster_unsafe_no_fencing)
      spdlog::critical("--cluster-unsafe-no-fencing: WRITES ARE NOT FENCED. "
                       "A test switch: this node can sell seats twice.");
    if (kafka) {
      kafka_relay_config relay_cfg;
      relay_cfg.brokers = cfg.kafka_brokers;
      relay_cfg.topic = cfg.kafka_topic;
      relay_cfg.properties = kafka_properties;
      relay_cfg.linger_ms = cfg.kafka_linger_ms;
      relay_cfg.registry = registry;
      relay_cfg.crashes = crashes_of(&thread_faults::relay);
      relay = std::make_shared<kafka_relay>(std::move(relay_cfg),
                                            make_pg_outbox_reader(cfg.pg_dsn));
      pg_cfg.outbox_node = node_id;
      pg_cfg.on_outbox_commit = [weak = std::weak_ptr<kafka_relay>(relay)] {
        if (auto r = weak.lock()) r->poke();
      };
    }
    if (relay) {
      if (auto err = relay->start()) {
        spdlog::critical("{}", describe(err));
        return 2;
      }
      spdlog::info("relaying change events to Kafka topic {} at {} (outbox "
                   "streams {}/*)",
                   cfg.kafka_topic, cfg.kafka_brokers, node_id);
    }
    pg = std::make_shared<pg_store>(std::move(pg_cfg));
    pg->learn(recovered.events);
    deps.store = pg;
    std::size_t holds = 0;
    std::size_t active = 0;
    for (const auto& section : recovered.holds)
      for (const auto& hold : section.second) {
        ++holds;
        active += hold.status == hold_status::active ? 1 : 0;
      }
    spdlog::info("read {} events, {} customers, {} holds ({} active) from "
                 "PostgreSQL in {} ms",
                 recovered.events.size(), recovered.customers.size(), holds,
                 active,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - recovery_started)
                     .count());
  } else {
    deps.store = std::make_shared<memory_store>();
  }
  std::shared_ptr<redis_client> redis;
  std::shared_ptr<redis_read_model> read_model;
  if (redis_at) {
    redis_config redis_cfg;
    redis_cfg.endpoint = *redis_at;
    redis_cfg.registry = registry;
    redis_cfg.crashes = crashes_of(&thread_faults::redis_connection);
    redis = std::make_shared<redis_client>(std::move(redis_cfg));
  }
  if (redis && cfg.read_model != read_model_mode::off) {
    read_model = std::make_shared<redis_read_model>(
        redis, std::make_shared<counting_change_sink>(),
        read_model_config{registry, crashes_of(&thread_faults::read_model)});
    deps.sink = read_model;
  } else {
    deps.sink = std::make_shared<counting_change_sink>();
  }
  deps.clock = std::make_shared<system_clock_source>();
  deps.hold_retention_ms = cfg.hold_retention_seconds * 1000;
  deps.metrics = std::make_shared<domain_metrics>(registry);
  // The coordinator comes after the runtime it drives; a fenced write that
  // is reported before it exists has nothing to move yet.
  auto coordinator_slot =
      std::make_shared<std::atomic<cluster_coordinator*>>(nullptr);
  if (cfg.cluster)
    deps.on_fenced = [coordinator_slot](uint32_t partition) {
      if (auto* c = coordinator_slot->load()) c->fenced(partition);
    };
  auto rt = std::make_unique<runtime>(system, deps, cfg.customer_shards);
  if (postgres) {
    auto restored = rt->recover(std::move(recovered));
    if (!restored) {
      spdlog::critical("recovery failed: {}", describe(restored.error()));
      return 1;
    }
    // From reading to serving state: what a restart after a crash costs.
    spdlog::info("recovered {} events in {} ms", *restored,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - recovery_started)
                     .count());
  }

  // Redis: the waiting room, the rate limits and the read model. The client
  // connects in the background and reconnects by itself; until it is up,
  // joining a queue answers 503.
  std::shared_ptr<waiting_room> queues;
  std::shared_ptr<rate_limiter> limits_shared;
  if (redis) {
    waiting_room_config room_cfg;
    room_cfg.node_id = node_id + "/" + std::to_string(getpid());
    room_cfg.admission_ttl_ms = cfg.admission_ttl_seconds * 1000;
    room_cfg.tick_ms = limits::admission_tick_ms;
    room_cfg.lease_ms = limits::admission_lease_ms;
    room_cfg.registry = registry;
    room_cfg.crashes = crashes_of(&thread_faults::waiting_room);
    room_cfg.events = [&dir = rt->dir()] {
      std::vector<waiting_room_event> out;
      for (const auto& event : dir.snapshot()->events_ordered)
        if (event->def.waiting_room && event->def.waiting_room->enabled)
          out.push_back(
              {event->def.id, event->def.waiting_room->admit_per_second});
      return out;
    };
    queues = std::make_shared<waiting_room>(redis, std::move(room_cfg));
    if (rate_limited) {
      rate_limit_config limit_cfg;
      limit_cfg.customer_per_window = cfg.rate_limit_customer;
      limit_cfg.address_per_window = cfg.rate_limit_address;
      limit_cfg.window_seconds = cfg.rate_limit_window_seconds;
      limit_cfg.lease_max = cfg.rate_limit_lease_max;
      limit_cfg.registry = registry;
      limits_shared = std::make_shared<rate_limiter>(redis, limit_cfg);
      spdlog::info("rate limits: {} per customer, {} per address, per {} s "
                   "(0: none)",
                   cfg.rate_limit_customer, cfg.rate_limit_address,
                   cfg.rate_limit_window_seconds);
    }
    if (read_model) {
      // A section is published whole from its actor's seat map when Redis
      // lacks it, and every section after each (re)connection.
      auto one = [&dir = rt->dir(),
                  weak = std::weak_ptr(read_model)](uint32_t section_no) {
        auto section = dir.find_section(section_no);
        if (!section) return;
        section->count_request();
        caf::anon_send(
            section->actor(),
            seat_map_request{
                0, reply_fn<seat_map_snapshot>{
                       [weak, layout = section->layout](
                           caf::expected<seat_map_snapshot> snapshot) {
                         auto model = weak.lock();
                         if (model && snapshot && snapshot->map)
                           model->publish_section(layout->event_id,
                                                  layout->section_id,
                                                  snapshot->map->statuses);
                       }}});
      };
      auto every = [&dir = rt->dir(), one] {
        auto snapshot = dir.snapshot();
        for (const auto& section : snapshot->sections_by_no)
          if (section) one(section->layout->section_no);
      };
      read_model->set_snapshot_source(one, every);
    }
    redis->start();
    queues->start();
    if (read_model) read_model->start();
    spdlog::info("redis at {}:{} (db {}): waiting rooms, read model {}",
                 redis_at->host, redis_at->port, redis_at->db,
                 name_of(read_model_names, cfg.read_model));
  }

  http::api_config api_cfg;
  api_cfg.admin_token = cfg.admin_token;
  api_cfg.token_secret = token_secret;
  api_cfg.token_secrets_accepted = cfg.token_secrets_accepted;
  {
    // Key ids say which secrets a node has, without saying anything of
    // them: what an operator compares across nodes during a rotation.
    std::string accepted;
    for (const auto& secret : cfg.token_secrets_accepted)
      accepted += (accepted.empty() ? "" : ", ") + http::key_id(secret);
    spdlog::info("session tokens: signing with key id {}{}{}",
                 http::key_id(token_secret),
                 accepted.empty() ? "" : "; also accepting key ids ", accepted);
  }
  api_cfg.session_ttl_seconds = cfg.session_ttl_seconds;
  api_cfg.hash_cost = {cfg.password_hash_ops, cfg.password_hash_memory_kib};
  api_cfg.hash_threads = cfg.password_hash_threads > 0
                             ? cfg.password_hash_threads
                             : usable_cores(limits::password_hash_threads_max);
  api_cfg.hash_queue_max =
      api_cfg.hash_threads * limits::password_hash_queue_per_thread;
  api_cfg.request_timeout_ms = cfg.request_timeout_ms;
  api_cfg.auth_per_address = {cfg.auth_limit_address, cfg.auth_burst_address};
  api_cfg.auth_per_email = {cfg.auth_limit_email, cfg.auth_burst_email};
  spdlog::info("passwords: {} hashing threads, at most {} checks waiting; "
               "logins and registrations per minute: {} per address "
               "(burst {}), {} per email (burst {}) (0: no limit)",
               api_cfg.hash_threads, api_cfg.hash_queue_max,
               cfg.auth_limit_address, cfg.auth_burst_address,
               cfg.auth_limit_email, cfg.auth_burst_email);
  api_cfg.trusted_proxies = trusted_proxies;
  if (!cfg.trusted_proxies.empty()) {
    std::string blocks;
    for (const auto& block : cfg.trusted_proxies)
      blocks += (blocks.empty() ? "" : ", ") + block;
    spdlog::info("trusted proxies: requests from {} count under the client "
                 "they name in X-Forwarded-For",
                 blocks);
  }
  if (relay) api_cfg.kafka_health = [relay] { return relay->health(); };
  auto web_pages = load_web_pages(cfg.web_root);
  if (!web_pages) {
    spdlog::critical("{}", describe(web_pages.error()));
    return 2;
  }
  if (*web_pages)
    spdlog::info("serving the web pages from / ({} files, {} KiB)",
                 (*web_pages)->file_count(), (*web_pages)->byte_count() / 1024);
  else
    spdlog::warn("no web pages (no --web-root, none beside the executable): "
                 "/ answers 404");
  api_cfg.web_pages = *web_pages;
  // The rate limits' own connections (one per I/O thread) count too.
  if (redis)
    api_cfg.redis_health = [redis, limits_shared] {
      auto state = redis->health();
      if (state == service_state::ok && limits_shared)
        state = limits_shared->health();
      return state;
    };
  api_cfg.waiting_room = queues;
  api_cfg.rate_limits = limits_shared;
  api_cfg.read_model = read_model;
  api_cfg.reads_from_read_model =
      read_model && cfg.read_model == read_model_mode::serve;
  api_cfg.admission_ttl_seconds = cfg.admission_ttl_seconds;
  api_cfg.chaos = cfg.chaos;
  api_cfg.chaos_threads = chaos_threads;
  std::unique_ptr<cluster_coordinator> coordinator;
  std::unique_ptr<cluster_membership> membership;
  if (cfg.cluster) {
    coordinator_config coordinator_cfg;
    coordinator_cfg.refresh_interval_ms = cfg.cluster_owners_refresh_ms;
    coordinator_cfg.learn_layouts =
        [weak = std::weak_ptr<pg_store>(pg)](
            const std::vector<recovered_event>& events) {
          if (auto store = weak.lock()) store->learn(events);
        };
    coordinator = std::make_unique<cluster_coordinator>(
        system, *rt, owners, cluster_db, std::move(coordinator_cfg));
    coordinator_slot->store(coordinator.get());
    membership_config group_cfg;
    group_cfg.brokers = cfg.kafka_brokers;
    group_cfg.properties = kafka_properties;
    group_cfg.group = cfg.cluster_group;
    group_cfg.topic = cfg.cluster_topic;
    group_cfg.session_timeout_ms = cfg.cluster_session_timeout_ms;
    group_cfg.heartbeat_interval_ms = cfg.cluster_heartbeat_ms;
    group_cfg.client_id = advertise;
    auto* c = coordinator.get();
    membership_handlers handlers;
    handlers.assigned = [c](std::vector<uint32_t> partitions) {
      c->assigned(std::move(partitions));
    };
    // The group moves the partitions on once this returns: their events
    // must be gone from here first (bounded: a stuck registry must not
    // hold the whole group).
    handlers.revoked = [c](std::vector<uint32_t> partitions) {
      if (!c->revoked(std::move(partitions), limits::cluster_revoke_wait_ms))
        spdlog::warn("cluster: revoked partitions were not dropped within {} "
                     "ms; the fence keeps their writes out",
                     limits::cluster_revoke_wait_ms);
    };
    handlers.lost = [c](std::vector<uint32_t> partitions) {
      c->lost(std::move(partitions));
    };
    membership = std::make_unique<cluster_membership>(
        std::move(group_cfg), std::move(handlers), registry);
    api_cfg.cluster = owners;
    api_cfg.cluster_db = cluster_db;
    api_cfg.refresh_owners = [c](std::function<void()> then) {
      c->refresh(std::move(then));
    };
    api_cfg.forward_marker = http::forward_marker(token_secret);
    for (const auto& secret : cfg.token_secrets_accepted)
      api_cfg.forward_markers_accepted.push_back(http::forward_marker(secret));
    api_cfg.membership_health = [m = membership.get()] { return m->health(); };
    spdlog::info("cluster: node {} of group {} on topic {} ({} partitions, "
                 "session timeout {} ms)",
                 advertise, cfg.cluster_group, cfg.cluster_topic,
                 cfg.cluster_partitions, cfg.cluster_session_timeout_ms);
  }
  if (cfg.chaos)
    spdlog::warn("CHAOS FACILITY ON: admins can kill section actors and fail "
                 "store commits under /v1/admin/chaos");
  auto api = std::make_unique<http::api>(*rt, api_cfg, registry);

  http::server_config server_cfg{host, port, cfg.io_threads,
                                 cfg.request_timeout_ms,
                                 cfg.connections_per_address_max};
  auto server = std::make_unique<http::server>(server_cfg, *api, registry);
  auto bound = server->start();
  if (!bound) {
    spdlog::critical("{}", describe(bound.error()));
    return 1;
  }

  if (cfg.demo && cfg.cluster) {
    // The demo event belongs to the node its partition is assigned to,
    // which is not known yet: create it through the API (scripts/cluster).
    spdlog::warn("--demo is ignored with --cluster");
  } else if (cfg.demo) {
    std::promise<std::string> created;
    auto future = created.get_future();
    caf::anon_send(
        rt->registry(),
        create_event_request{
            demo_event(),
            reply_fn<std::shared_ptr<const event_entry>>{
                [&created](
                    caf::expected<std::shared_ptr<const event_entry>> e) {
                  if (e)
                    created.set_value((*e)->def.id + " created");
                  else if (code_of(e.error()) == errc::event_exists)
                    created.set_value("recorded earlier, kept as it is");
                  else
                    created.set_value(describe(e.error()));
                }}});
    if (future.wait_for(std::chrono::seconds(10)) !=
        std::future_status::ready) {
      spdlog::critical("the demo event was not created within 10 s");
      return 1;
    }
    spdlog::info("demo event: {}", future.get());
  }

  // Joins the group only now that forwarded requests can reach this node.
  if (membership) membership->start();
  api->set_ready(true);
  spdlog::info("listening on {}:{} ({} I/O threads, {} actor threads, store "
               "{})",
               host, *bound, cfg.io_threads, cfg.actor_threads,
               name_of(store_names, cfg.store));

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  // One deadline for the whole shutdown (docs/operations.md, "Shutdown"):
  // the drain delay, requests in progress, the last commits and the relay
  // share it, so that the process is gone before the orchestrator's own
  // stop timeout sends SIGKILL.
  using steady = std::chrono::steady_clock;
  auto stop_began = steady::now();
  auto until = stop_began + std::chrono::seconds(cfg.shutdown_timeout_seconds);
  auto remaining = [&until] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        until - steady::now()));
  };
  spdlog::info("signal {}: draining (at most {} s); /ready answers 503",
               signal_number, cfg.shutdown_timeout_seconds);
  api->set_ready(false);
  if (cfg.shutdown_delay_ms > 0) {
    // Still serving as before while load balancers see /ready fail. A
    // second signal ends the wait.
    spdlog::info("serving {} ms more before the listener closes",
                 cfg.shutdown_delay_ms);
    auto delay_until =
        stop_began + std::chrono::milliseconds(cfg.shutdown_delay_ms);
    while (steady::now() < delay_until) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
          delay_until - steady::now());
      timespec wait{static_cast<time_t>(left.count() / 1'000'000'000),
                    static_cast<long>(left.count() % 1'000'000'000)};
      if (sigtimedwait(&signals, nullptr, &wait) > 0) break; // a signal
    }
  }
  server->stop_accepting();
  // 100 ms without a new request: a client that got a keep-alive answer
  // just before the drain began has sent its next request by then.
  auto unanswered = server->drain(remaining(), std::chrono::milliseconds(100));
  // Leaving the group hands the partitions over at once (no session
  // timeout to wait for); their events are dropped here first, and writes
  // still queued commit before the new owner raises the epochs, or are
  // fenced.
  if (membership) membership->stop();
  // Order matters: no new work from I/O threads, then no new work from the
  // hashing pool, then the actors finish and the store commits what it has
  // queued (their late answers land in the stopped io_contexts and are
  // dropped), then the rest goes.
  server->stop();
  api->stop();
  // The admission loop reads the directory: stop it before the runtime goes.
  if (queues) queues->stop();
  if (read_model) read_model->stop();
  coordinator_slot->store(nullptr);
  coordinator.reset();
  rt.reset();
  // Returns once every actor has unregistered, which CAF 0.17 does before it
  // runs the actor's exit functors: those still run on CAF's workers until
  // `system` is destroyed, last. So what they touch must be owned by them
  // (the section actors' functor holds the domain metrics, which hold the
  // registry), never borrowed from a local of this function.
  system.await_all_actors_done();
  // The store's last acknowledgements answer requests through the I/O
  // threads' io_contexts: deliver them while those still exist.
  deps.store->close();
  // Everything is committed: the relay hands the rest of the outbox to
  // Kafka in the time left. What it does not finish stays in the outbox
  // and is relayed after the next start.
  kafka_relay::stop_report relayed{true, 0};
  if (relay) relayed = relay->stop(remaining());
  if (redis) redis->stop();
  api.reset();
  server.reset();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                  steady::now() - stop_began)
                  .count();
  if (unanswered > 0 || !relayed.flushed) {
    std::string left;
    if (unanswered > 0)
      left += std::to_string(unanswered) +
              " requests in progress were not answered";
    if (!relayed.flushed) {
      if (!left.empty()) left += "; ";
      left += relayed.rows_left >= 0
                  ? std::to_string(relayed.rows_left) +
                        " outbox rows were not relayed to Kafka"
                  : std::string{"the outbox could not be read"};
      left += " (they stay in the outbox: the next start relays them)";
    }
    spdlog::error("stopped after {} ms, past the shutdown deadline of {} s: "
                  "{}",
                  took, cfg.shutdown_timeout_seconds, left);
    return 1;
  }
  spdlog::info("stopped after {} ms: every request answered, every change "
               "committed{}",
               took, relay ? " and relayed to Kafka" : "");
  return 0;
}

} // namespace rsv::app
