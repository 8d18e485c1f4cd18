#include "app/components.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"

#include <future>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace rsv::app {

namespace {

/// `caf_cfg` set up for `cfg`, to start the actor system with.
caf::actor_system_config& configured(caf::actor_system_config& caf_cfg,
                                     const serve_config& cfg) {
  caf_cfg.set("scheduler.max-threads", cfg.actor_threads);
  // The option's names are CAF's own names of its two policies.
  caf_cfg.set("scheduler.policy", caf::atom_from_string(name_of(
                                      actor_scheduler_names, cfg.scheduler)));
  caf_cfg.set("logger.verbosity", caf::atom("quiet"));
  return caf_cfg;
}

/// Milliseconds from `since` until now.
int64_t ms_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now() - since)
      .count();
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

server_stack::server_stack(const serve_config& cfg,
                           const checked_config& checked)
    : cfg_(cfg), checked_(checked), system_(configured(caf_cfg_, cfg)),
      registry_(std::make_shared<prometheus::Registry>()),
      chaos_threads_(cfg.chaos ? std::make_shared<thread_faults>() : nullptr),
      coordinator_slot_(
          std::make_shared<std::atomic<actors::cluster_coordinator*>>(
              nullptr)) {}

server_stack::~server_stack() = default;

std::shared_ptr<crash_fault>
server_stack::crashes_of(crash_fault thread_faults::*member) {
  return chaos_threads_ ? std::shared_ptr<crash_fault>(
                              chaos_threads_, &(chaos_threads_.get()->*member))
                        : nullptr;
}

int server_stack::start() {
  recovery_started_ = std::chrono::steady_clock::now();
  if (auto code = open_store(); code != exit_code::ok) return code;
  make_redis();
  if (auto code = start_runtime(); code != exit_code::ok) return code;
  start_redis_services();
  if (auto code = start_http(); code != exit_code::ok) return code;
  if (auto code = create_demo_event(); code != exit_code::ok) return code;
  // Joins the group only now that forwarded requests can reach this node.
  if (membership_) membership_->start();
  api_->set_ready(true);
  spdlog::info("listening on {}:{} ({} I/O threads, {} actor threads "
               "{}, store {})",
               checked_.host, bound_port_, cfg_.io_threads, cfg_.actor_threads,
               name_of(actor_scheduler_names, cfg_.scheduler),
               name_of(store_names, cfg_.store));
  return exit_code::ok;
}

int server_stack::open_store() {
  if (cfg_.store == store_kind::postgres) return open_postgres();
  store_ = std::make_shared<persistence::memory_store>();
  return exit_code::ok;
}

int server_stack::open_postgres() {
  // Migrations and recovery happen before the node listens: until then
  // nothing is served, so nothing can disagree with the database.
  persistence::name_node_connections();
  if (!cfg_.cluster) {
    // What an earlier process of this node left running lands before the
    // state is read (in a cluster, the epoch fence stops a former owner).
    if (auto err = persistence::end_former_node_backends(cfg_.pg_dsn)) {
      spdlog::critical("recovery refused: {}", describe(err));
      return exit_code::failed;
    }
  }
  auto migrated = persistence::apply_migrations(cfg_.pg_dsn);
  if (!migrated) {
    spdlog::critical("migrations failed: {}", describe(migrated.error()));
    return exit_code::failed;
  }
  if (cfg_.cluster) {
    if (auto err = persistence::cluster_store::init(cfg_.pg_dsn,
                                                    cfg_.cluster_partitions)) {
      spdlog::critical("cluster: {}", describe(err));
      return exit_code::refused;
    }
    owners_ = std::make_shared<actors::ownership>(cfg_.cluster_partitions,
                                                  checked_.advertise);
    cluster_db_ = std::make_shared<persistence::cluster_store>(cfg_.pg_dsn);
  }
  recovery_started_ = std::chrono::steady_clock::now();
  auto loaded = persistence::load_recorded_state(cfg_.pg_dsn);
  if (!loaded) {
    spdlog::critical("recovery failed: {}", describe(loaded.error()));
    return exit_code::failed;
  }
  recovered_ = std::move(*loaded);
  if (cfg_.cluster) {
    // A node of a cluster serves only the events of the partitions the
    // group assigns it, loaded when they are (cluster_coordinator).
    recovered_.events.clear();
    recovered_.holds.clear();
  }
  persistence::pg_store_config pg_cfg;
  pg_cfg.dsn = cfg_.pg_dsn;
  pg_cfg.encoding = cfg_.pg_batch_encoding;
  pg_cfg.node = checked_.node_id;
  pg_cfg.writers = cfg_.pg_writers;
  pg_cfg.journal_step_interval_ms = cfg_.pg_journal_step_interval_ms;
  pg_cfg.registry = registry_;
  pg_cfg.fencing = !cfg_.cluster_unsafe_no_fencing;
  if (cfg_.cluster_unsafe_no_fencing)
    spdlog::critical("--cluster-unsafe-no-fencing: WRITES ARE NOT FENCED. "
                     "A test switch: this node can sell seats twice.");
  if (auto code = start_relay(pg_cfg); code != exit_code::ok) return code;
  auto pg = std::make_shared<persistence::pg_store>(std::move(pg_cfg));
  pg->learn(recovered_.events);
  store_ = pg;
  log_recorded_state();
  return exit_code::ok;
}

/// With Kafka: the relay of the outbox, which the store pokes after each
/// commit that wrote to it.
int server_stack::start_relay(persistence::pg_store_config& pg_cfg) {
  if (cfg_.kafka_brokers.empty()) return exit_code::ok;
  messaging::kafka_relay_config relay_cfg;
  relay_cfg.brokers = cfg_.kafka_brokers;
  relay_cfg.topic = cfg_.kafka_topic;
  relay_cfg.properties = checked_.kafka_properties;
  relay_cfg.linger_ms = cfg_.kafka_linger_ms;
  relay_cfg.registry = registry_;
  relay_cfg.crashes = crashes_of(&thread_faults::relay);
  relay_ = std::make_shared<messaging::kafka_relay>(
      std::move(relay_cfg), persistence::make_pg_outbox_reader(cfg_.pg_dsn));
  pg_cfg.outbox_node = checked_.node_id;
  pg_cfg.on_outbox_commit =
      [weak = std::weak_ptr<messaging::kafka_relay>(relay_)] {
        if (auto r = weak.lock()) r->poke();
      };
  if (auto err = relay_->start()) {
    spdlog::critical("{}", describe(err));
    return exit_code::refused;
  }
  spdlog::info("relaying change events to Kafka topic {} at {} (outbox "
               "streams {}/*)",
               cfg_.kafka_topic, cfg_.kafka_brokers, checked_.node_id);
  return exit_code::ok;
}

void server_stack::log_recorded_state() const {
  std::size_t holds = 0;
  std::size_t active = 0;
  for (const auto& section : recovered_.holds)
    for (const auto& hold : section.second) {
      ++holds;
      active += hold.status == hold_status::active ? 1 : 0;
    }
  spdlog::info("read {} events, {} customers, {} holds ({} active) from "
               "PostgreSQL in {} ms",
               recovered_.events.size(), recovered_.customers.size(), holds,
               active, ms_since(recovery_started_));
}

void server_stack::make_redis() {
  if (!checked_.redis_at) return;
  messaging::redis_config redis_cfg;
  redis_cfg.endpoint = *checked_.redis_at;
  redis_cfg.registry = registry_;
  redis_cfg.crashes = crashes_of(&thread_faults::redis_connection);
  redis_ = std::make_shared<messaging::redis_client>(std::move(redis_cfg));
  if (cfg_.read_model == read_model_mode::off) return;
  read_model_ = std::make_shared<messaging::redis_read_model>(
      redis_, std::make_shared<messaging::counting_change_sink>(),
      messaging::read_model_config{registry_,
                                   crashes_of(&thread_faults::read_model)});
}

int server_stack::start_runtime() {
  actors::runtime_deps deps;
  deps.store = store_;
  deps.cluster = owners_;
  deps.cluster_db = cluster_db_;
  if (read_model_)
    deps.sink = read_model_;
  else
    deps.sink = std::make_shared<messaging::counting_change_sink>();
  deps.clock = std::make_shared<system_clock_source>();
  deps.hold_retention_ms = cfg_.hold_retention_seconds * 1000;
  deps.snapshots = {cfg_.snapshot_writes, cfg_.snapshot_seconds * 1000};
  deps.metrics = std::make_shared<domain_metrics>(registry_);
  // The coordinator comes after the runtime it drives; a fenced write that
  // is reported before it exists has nothing to move yet.
  if (cfg_.cluster)
    deps.on_fenced = [slot = coordinator_slot_](uint32_t partition) {
      if (auto* c = slot->load()) c->fenced(partition);
    };
  runtime_ =
      std::make_unique<actors::runtime>(system_, deps, cfg_.customer_shards);
  if (cfg_.store != store_kind::postgres) return exit_code::ok;
  auto restored = runtime_->recover(std::move(recovered_));
  if (!restored) {
    spdlog::critical("recovery failed: {}", describe(restored.error()));
    return exit_code::failed;
  }
  // From reading to serving state: what a restart after a crash costs.
  spdlog::info("recovered {} events in {} ms", *restored,
               ms_since(recovery_started_));
  return exit_code::ok;
}

/// Redis: the waiting room, the rate limits and the read model. The client
/// connects in the background and reconnects by itself; until it is up,
/// joining a queue answers 503.
void server_stack::start_redis_services() {
  if (!redis_) return;
  start_waiting_room_and_limits();
  if (read_model_) set_read_model_source();
  redis_->start();
  queues_->start();
  if (read_model_) read_model_->start();
  spdlog::info("redis at {}:{} (db {}): waiting rooms, read model {}",
               checked_.redis_at->host, checked_.redis_at->port,
               checked_.redis_at->db,
               name_of(read_model_names, cfg_.read_model));
}

void server_stack::start_waiting_room_and_limits() {
  messaging::waiting_room_config room_cfg;
  room_cfg.node_id = checked_.node_id + "/" + std::to_string(getpid());
  room_cfg.admission_ttl_ms = cfg_.admission_ttl_seconds * 1000;
  room_cfg.tick_ms = limits::admission_tick_ms;
  room_cfg.lease_ms = limits::admission_lease_ms;
  room_cfg.registry = registry_;
  room_cfg.crashes = crashes_of(&thread_faults::waiting_room);
  room_cfg.events = [&dir = runtime_->dir()] {
    std::vector<messaging::waiting_room_event> out;
    for (const auto& event : dir.snapshot()->events_ordered)
      if (event->def.waiting_room && event->def.waiting_room->enabled)
        out.push_back(
            {event->def.id, event->def.waiting_room->admit_per_second});
    return out;
  };
  queues_ =
      std::make_shared<messaging::waiting_room>(redis_, std::move(room_cfg));
  if (cfg_.rate_limit_customer == 0 && cfg_.rate_limit_address == 0) return;
  messaging::rate_limit_config limit_cfg;
  limit_cfg.customer_per_window = cfg_.rate_limit_customer;
  limit_cfg.address_per_window = cfg_.rate_limit_address;
  limit_cfg.window_seconds = cfg_.rate_limit_window_seconds;
  limit_cfg.lease_max = cfg_.rate_limit_lease_max;
  limit_cfg.registry = registry_;
  limits_shared_ = std::make_shared<messaging::rate_limiter>(redis_, limit_cfg);
  spdlog::info("rate limits: {} per customer, {} per address, per {} s "
               "(0: none)",
               cfg_.rate_limit_customer, cfg_.rate_limit_address,
               cfg_.rate_limit_window_seconds);
}

/// A section is published whole from its actor's seat map when Redis lacks
/// it, and every section after each (re)connection.
void server_stack::set_read_model_source() {
  auto one = [&dir = runtime_->dir(),
              weak = std::weak_ptr(read_model_)](uint32_t section_no) {
    auto section = dir.find_section(section_no);
    if (!section) return;
    section->count_request();
    caf::anon_send(
        section->actor(),
        actors::seat_map_request{
            0, actors::reply_fn<actors::seat_map_snapshot>{
                   [weak, layout = section->layout](
                       caf::expected<actors::seat_map_snapshot> snapshot) {
                     auto model = weak.lock();
                     if (model && snapshot && snapshot->map)
                       model->publish_section(layout->event_id,
                                              layout->section_id,
                                              snapshot->map->statuses);
                   }}});
  };
  auto every = [&dir = runtime_->dir(), one] {
    auto snapshot = dir.snapshot();
    for (const auto& section : snapshot->sections_by_no)
      if (section) one(section->layout->section_no);
  };
  read_model_->set_snapshot_source(one, every);
}

int server_stack::create_demo_event() {
  if (!cfg_.demo) return exit_code::ok;
  if (cfg_.cluster) {
    // The demo event belongs to the node its partition is assigned to,
    // which is not known yet: create it through the API (scripts/cluster).
    spdlog::warn("--demo is ignored with --cluster");
    return exit_code::ok;
  }
  auto created = std::make_shared<std::promise<std::string>>();
  auto future = created->get_future();
  caf::anon_send(
      runtime_->registry(),
      actors::create_event_request{
          demo_event(),
          actors::reply_fn<std::shared_ptr<const actors::event_entry>>{
              [created](
                  caf::expected<std::shared_ptr<const actors::event_entry>> e) {
                if (e)
                  created->set_value((*e)->def.id + " created");
                else if (code_of(e.error()) == errc::event_exists)
                  created->set_value("recorded earlier, kept as it is");
                else
                  created->set_value(describe(e.error()));
              }}});
  if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    spdlog::critical("the demo event was not created within 10 s");
    return exit_code::failed;
  }
  spdlog::info("demo event: {}", future.get());
  return exit_code::ok;
}

void server_stack::set_ready(bool ready) {
  api_->set_ready(ready);
}

std::size_t server_stack::drain(std::chrono::milliseconds deadline) {
  server_->stop_accepting();
  // 100 ms without a new request: a client that got a keep-alive answer
  // just before the drain began has sent its next request by then.
  return server_->drain(deadline, std::chrono::milliseconds(100));
}

messaging::kafka_relay::stop_report
server_stack::stop(const std::function<std::chrono::milliseconds()>& deadline) {
  // The reverse of the declaration order (components.hpp says why each
  // stops where it does).
  if (membership_) membership_->stop();
  server_->stop();
  api_->stop();
  if (queues_) queues_->stop();
  if (read_model_) read_model_->stop();
  coordinator_slot_->store(nullptr);
  coordinator_.reset();
  runtime_.reset();
  // Returns once every actor has unregistered, which CAF 0.17 does before it
  // runs the actor's exit functors: those still run on CAF's workers until
  // `system_` is destroyed, last.
  system_.await_all_actors_done();
  store_->close();
  messaging::kafka_relay::stop_report relayed{true, 0};
  if (relay_) relayed = relay_->stop(deadline());
  if (redis_) redis_->stop();
  // The API before the server that calls it, as both were made; the server
  // joins its I/O threads.
  api_.reset();
  server_.reset();
  return relayed;
}

} // namespace rsv::app
