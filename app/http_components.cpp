#include "app/components.hpp"
#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/pg_store.hpp"

#include <algorithm>
#include <filesystem>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <thread>

// The parts of server_stack that face the network: the API and its
// configuration, the HTTP server, and a clustered node's coordinator and
// group membership.

namespace rsv::app {

namespace {

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

/// "a, b, c" of `items`.
template <class Range, class Name>
std::string joined(const Range& items, Name name) {
  std::string out;
  for (const auto& item : items)
    out += (out.empty() ? "" : ", ") + name(item);
  return out;
}

} // namespace

int server_stack::start_http() {
  auto api_cfg = api_config_of_tokens();
  if (auto code = add_services_to(api_cfg); code != exit_code::ok) return code;
  if (cfg_.cluster) start_cluster(api_cfg);
  if (cfg_.chaos)
    spdlog::warn("CHAOS FACILITY ON: admins can kill section actors and fail "
                 "store commits under /v1/admin/chaos");
  api_ = std::make_unique<http::api>(*runtime_, api_cfg, registry_);
  http::server_config server_cfg{checked_.host, checked_.port, cfg_.io_threads,
                                 cfg_.request_timeout_ms,
                                 cfg_.connections_per_address_max};
  server_ = std::make_unique<http::server>(server_cfg, *api_, registry_);
  auto bound = server_->start();
  if (!bound) {
    spdlog::critical("{}", describe(bound.error()));
    return exit_code::failed;
  }
  bound_port_ = *bound;
  return exit_code::ok;
}

/// The API's secrets, sessions, passwords and client addresses.
http::api_config server_stack::api_config_of_tokens() const {
  http::api_config api_cfg;
  api_cfg.admin_token = cfg_.admin_token;
  api_cfg.token_secret = checked_.token_secret;
  api_cfg.token_secrets_accepted = cfg_.token_secrets_accepted;
  // Key ids say which secrets a node has, without saying anything of them:
  // what an operator compares across nodes during a rotation.
  auto accepted = joined(cfg_.token_secrets_accepted, http::key_id);
  spdlog::info("session tokens: signing with key id {}{}{}",
               http::key_id(checked_.token_secret),
               accepted.empty() ? "" : "; also accepting key ids ", accepted);
  api_cfg.session_ttl_seconds = cfg_.session_ttl_seconds;
  api_cfg.hash_cost = {cfg_.password_hash_ops, cfg_.password_hash_memory_kib};
  api_cfg.hash_threads = cfg_.password_hash_threads > 0
                             ? cfg_.password_hash_threads
                             : usable_cores(limits::password_hash_threads_max);
  api_cfg.hash_queue_max =
      api_cfg.hash_threads * limits::password_hash_queue_per_thread;
  api_cfg.request_timeout_ms = cfg_.request_timeout_ms;
  api_cfg.auth_per_address = {cfg_.auth_limit_address, cfg_.auth_burst_address};
  api_cfg.auth_per_email = {cfg_.auth_limit_email, cfg_.auth_burst_email};
  spdlog::info("passwords: {} hashing threads, at most {} checks waiting; "
               "logins and registrations per minute: {} per address "
               "(burst {}), {} per email (burst {}) (0: no limit)",
               api_cfg.hash_threads, api_cfg.hash_queue_max,
               cfg_.auth_limit_address, cfg_.auth_burst_address,
               cfg_.auth_limit_email, cfg_.auth_burst_email);
  api_cfg.trusted_proxies = checked_.trusted_proxies;
  if (!cfg_.trusted_proxies.empty())
    spdlog::info("trusted proxies: requests from {} count under the client "
                 "they name in X-Forwarded-For",
                 joined(cfg_.trusted_proxies,
                        [](const std::string& block) { return block; }));
  return api_cfg;
}

/// The web pages, the optional services and their health, the chaos
/// facility.
int server_stack::add_services_to(http::api_config& api_cfg) const {
  if (relay_)
    api_cfg.kafka_health = [relay = relay_] { return relay->health(); };
  auto web_pages = load_web_pages(cfg_.web_root);
  if (!web_pages) {
    spdlog::critical("{}", describe(web_pages.error()));
    return exit_code::refused;
  }
  if (*web_pages)
    spdlog::info("serving the web pages from / ({} files, {} KiB)",
                 (*web_pages)->file_count(), (*web_pages)->byte_count() / 1024);
  else
    spdlog::warn("no web pages (no --web-root, none beside the executable): "
                 "/ answers 404");
  api_cfg.web_pages = *web_pages;
  // The rate limits' own connections (one per I/O thread) count too.
  if (redis_)
    api_cfg.redis_health = [redis = redis_, limits_shared = limits_shared_] {
      auto state = redis->health();
      if (state == service_state::ok && limits_shared)
        state = limits_shared->health();
      return state;
    };
  api_cfg.waiting_room = queues_;
  api_cfg.rate_limits = limits_shared_;
  api_cfg.read_model = read_model_;
  api_cfg.reads_from_read_model =
      read_model_ && cfg_.read_model == read_model_mode::serve;
  api_cfg.admission_ttl_seconds = cfg_.admission_ttl_seconds;
  api_cfg.chaos = cfg_.chaos;
  api_cfg.chaos_threads = chaos_threads_;
  return exit_code::ok;
}

/// The coordinator that loads and drops partitions, and the membership of
/// the consumer group that assigns them (joined once the node serves).
void server_stack::start_cluster(http::api_config& api_cfg) {
  actors::coordinator_config coordinator_cfg;
  coordinator_cfg.refresh_interval_ms = cfg_.cluster_owners_refresh_ms;
  // A cluster's store is PostgreSQL (check_config), which learns the
  // layouts of the partitions' events as they are loaded.
  auto pg = std::dynamic_pointer_cast<persistence::pg_store>(store_);
  RSV_ASSERT(pg, "a clustered node without a PostgreSQL store");
  coordinator_cfg.learn_layouts =
      [weak = std::weak_ptr<persistence::pg_store>(pg)](
          const std::vector<persistence::recovered_event>& events) {
        if (auto store = weak.lock()) store->learn(events);
      };
  coordinator_ = std::make_unique<actors::cluster_coordinator>(
      system_, *runtime_, owners_, cluster_db_, std::move(coordinator_cfg));
  coordinator_slot_->store(coordinator_.get());
  messaging::membership_config group_cfg;
  group_cfg.brokers = cfg_.kafka_brokers;
  group_cfg.properties = checked_.kafka_properties;
  group_cfg.group = cfg_.cluster_group;
  group_cfg.topic = cfg_.cluster_topic;
  group_cfg.session_timeout_ms = cfg_.cluster_session_timeout_ms;
  group_cfg.heartbeat_interval_ms = cfg_.cluster_heartbeat_ms;
  group_cfg.client_id = checked_.advertise;
  auto* c = coordinator_.get();
  messaging::membership_handlers handlers;
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
  membership_ = std::make_unique<messaging::cluster_membership>(
      std::move(group_cfg), std::move(handlers), registry_);
  api_cfg.cluster = owners_;
  api_cfg.cluster_db = cluster_db_;
  api_cfg.refresh_owners = [c](std::function<void()> then) {
    c->refresh(std::move(then));
  };
  api_cfg.forward_marker = http::forward_marker(checked_.token_secret);
  for (const auto& secret : cfg_.token_secrets_accepted)
    api_cfg.forward_markers_accepted.push_back(http::forward_marker(secret));
  api_cfg.membership_health = [m = membership_.get()] { return m->health(); };
  spdlog::info("cluster: node {} of group {} on topic {} ({} partitions, "
               "session timeout {} ms)",
               checked_.advertise, cfg_.cluster_group, cfg_.cluster_topic,
               cfg_.cluster_partitions, cfg_.cluster_session_timeout_ms);
}

} // namespace rsv::app
