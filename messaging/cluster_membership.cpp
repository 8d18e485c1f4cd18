#include "messaging/cluster_membership.hpp"

#include "core/limits.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "messaging/kafka_support.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <librdkafka/rdkafka.h>
#include <mutex>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <thread>

namespace rsv::messaging {

namespace {

using steady = std::chrono::steady_clock;

struct consumer_deleter {
  void operator()(rd_kafka_t* rk) const {
    // A consumer that reaches this still in its group was not closed on
    // purpose (the supervisor dropped it): it must not leave the group, and
    // must not run the rebalance callback from the destructor.
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
};
using consumer_ptr = std::unique_ptr<rd_kafka_t, consumer_deleter>;

struct topic_deleter {
  void operator()(rd_kafka_topic_t* topic) const {
    rd_kafka_topic_destroy(topic);
  }
};
using topic_ptr = std::unique_ptr<rd_kafka_topic_t, topic_deleter>;

/// The code of a librdkafka error object, which it destroys; NO_ERROR for
/// none.
rd_kafka_resp_err_t code_of(rd_kafka_error_t* error) {
  if (error == nullptr) return RD_KAFKA_RESP_ERR_NO_ERROR;
  auto code = rd_kafka_error_code(error);
  rd_kafka_error_destroy(error);
  return code;
}

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             steady::now().time_since_epoch())
      .count();
}

} // namespace

struct cluster_membership::impl {
  impl(membership_config cfg, membership_handlers on,
       std::shared_ptr<prometheus::Registry> metrics)
      : config(std::move(cfg)), handlers(std::move(on)),
        registry(std::move(metrics)) {
    if (!registry) return;
    restarts = &actor_restarts(*registry, "membership");
    owned_gauge = &prometheus::BuildGauge()
                       .Name("rsv_cluster_owned_partitions")
                       .Help("Partitions of the ownership topic this node "
                             "is assigned in the cluster's consumer group")
                       .Register(*registry)
                       .Add({});
    auto& family = prometheus::BuildCounter()
                       .Name("rsv_cluster_rebalances_total")
                       .Help("Rebalance callbacks of the cluster membership: "
                             "partitions assigned to, revoked from or lost "
                             "by this node")
                       .Register(*registry);
    assigned_total = &family.Add({{"kind", "assigned"}});
    revoked_total = &family.Add({{"kind", "revoked"}});
    lost_total = &family.Add({{"kind", "lost"}});
  }

  membership_config config;
  membership_handlers handlers;
  std::shared_ptr<prometheus::Registry> registry;

  prometheus::Counter* restarts = nullptr;
  prometheus::Gauge* owned_gauge = nullptr;
  prometheus::Counter* assigned_total = nullptr;
  prometheus::Counter* revoked_total = nullptr;
  prometheus::Counter* lost_total = nullptr;

  // Read from any thread, written by the poll thread.
  mutable std::mutex owned_mutex;
  std::vector<uint32_t> owned; // guarded by owned_mutex, sorted
  std::atomic<uint64_t> rebalance_count{0};
  std::atomic<int> partition_count{-1};
  std::atomic<bool> in_group{false};
  std::atomic<int64_t> last_answer_ms{0}; // steady_ms(); 0: never

  std::mutex mutex;
  std::condition_variable wake;
  bool started = false;  // guarded by mutex
  bool stopping = false; // guarded by mutex
  std::mutex join_mutex; // one stop() joins; the others wait for it
  std::thread thread;

  // Poll thread only.
  consumer_ptr consumer;
  topic_ptr topic;
  steady::time_point next_probe{};
  steady::time_point quiet_logs_until{};
  // A handler's exception, caught inside librdkafka's callback (it must not
  // unwind through C frames) and thrown again once the poll returned.
  std::exception_ptr handler_failure;

  bool is_stopping() {
    std::lock_guard<std::mutex> guard{mutex};
    return stopping;
  }

  /// The partitions of our topic in `list`, sorted.
  std::vector<uint32_t>
  our_partitions(const rd_kafka_topic_partition_list_t* list) const {
    std::vector<uint32_t> partitions;
    if (list == nullptr) return partitions;
    for (int i = 0; i < list->cnt; ++i)
      if (config.topic == list->elems[i].topic && list->elems[i].partition >= 0)
        partitions.push_back(static_cast<uint32_t>(list->elems[i].partition));
    std::sort(partitions.begin(), partitions.end());
    return partitions;
  }

  /// Adds `partitions` to the assignment (or takes them away) and returns
  /// how many are owned afterwards.
  std::size_t update_owned(const std::vector<uint32_t>& partitions, bool add) {
    std::lock_guard<std::mutex> guard{owned_mutex};
    std::vector<uint32_t> next;
    if (add)
      std::set_union(owned.begin(), owned.end(), partitions.begin(),
                     partitions.end(), std::back_inserter(next));
    else
      std::set_difference(owned.begin(), owned.end(), partitions.begin(),
                          partitions.end(), std::back_inserter(next));
    owned = std::move(next);
    if (owned_gauge != nullptr)
      owned_gauge->Set(static_cast<double>(owned.size()));
    return owned.size();
  }

  /// Runs a handler; an exception is kept for the poll loop to throw.
  void call(const std::function<void(std::vector<uint32_t>)>& handler,
            std::vector<uint32_t> partitions) {
    if (!handler) return;
    try {
      handler(std::move(partitions));
    } catch (...) {
      if (!handler_failure) handler_failure = std::current_exception();
    }
  }

  void on_assigned(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* list,
                   bool cooperative) {
    auto err = cooperative ? code_of(rd_kafka_incremental_assign(rk, list))
                           : rd_kafka_assign(rk, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // librdkafka refuses only an assignment that contradicts its own
      // state: a bug, for the supervisor to start over from.
      if (!handler_failure)
        handler_failure = std::make_exception_ptr(
            thread_fault(std::string{"cluster membership: assigning failed: "} +
                         rd_kafka_err2str(err)));
      return;
    }
    // Nothing is ever to be fetched: the group is only the assignment
    // service, and fetching would cost the brokers for nothing.
    if (list->cnt > 0) rd_kafka_pause_partitions(rk, list);
    auto partitions = our_partitions(list);
    auto count = update_owned(partitions, true);
    in_group = true;
    rebalance_count.fetch_add(1);
    if (assigned_total != nullptr) assigned_total->Increment();
    spdlog::info("cluster membership {}: assigned partitions [{}] of {}; "
                 "owns {}",
                 config.client_id, fmt::join(partitions, ","), config.topic,
                 count);
    call(handlers.assigned, std::move(partitions));
  }

  void on_revoked(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* list,
                  bool cooperative) {
    bool lost = rd_kafka_assignment_lost(rk) != 0;
    auto partitions = our_partitions(list);
    auto count = update_owned(partitions, false);
    rebalance_count.fetch_add(1);
    if (lost) {
      in_group = false;
      if (lost_total != nullptr) lost_total->Increment();
    } else if (revoked_total != nullptr) {
      revoked_total->Increment();
    }
    spdlog::info("cluster membership {}: {} partitions [{}] of {}; owns {}",
                 config.client_id, lost ? "lost" : "revoked",
                 fmt::join(partitions, ","), config.topic, count);
    // The node stops serving them before the group may give them to
    // another node: the partitions are released only when this returns.
    call(lost ? handlers.lost : handlers.revoked, std::move(partitions));
    auto err = cooperative ? code_of(rd_kafka_incremental_unassign(rk, list))
                           : rd_kafka_assign(rk, nullptr);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      spdlog::warn("cluster membership {}: unassigning failed: {}",
                   config.client_id, rd_kafka_err2str(err));
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* partitions,
                           void* opaque) {
    auto* self = static_cast<impl*>(opaque);
    bool cooperative =
        std::string_view{rd_kafka_rebalance_protocol(rk)} == "COOPERATIVE";
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
      self->on_assigned(rk, partitions, cooperative);
      break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
      self->on_revoked(rk, partitions, cooperative);
      break;
    default: {
      // librdkafka's documented answer to a failed rebalance: drop the
      // whole assignment; the group gives it out again.
      spdlog::warn("cluster membership {}: rebalance failed: {}",
                   self->config.client_id, rd_kafka_err2str(err));
      std::vector<uint32_t> all;
      {
        std::lock_guard<std::mutex> guard{self->owned_mutex};
        all = self->owned;
      }
      self->update_owned(all, false);
      self->in_group = false;
      self->rebalance_count.fetch_add(1);
      if (self->lost_total != nullptr) self->lost_total->Increment();
      self->call(self->handlers.lost, std::move(all));
      rd_kafka_assign(rk, nullptr);
      break;
    }
    }
  }

  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
    auto* self = static_cast<impl*>(opaque);
    auto code = static_cast<rd_kafka_resp_err_t>(err);
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->last_answer_ms = 0;
    // Brokers that are down repeat themselves: one line per 10 s.
    auto now = steady::now();
    if (code == RD_KAFKA_RESP_ERR__FATAL || now >= self->quiet_logs_until) {
      self->quiet_logs_until = now + std::chrono::seconds(10);
      spdlog::warn("cluster membership {}: kafka: {} ({})",
                   self->config.client_id, reason, rd_kafka_err2name(code));
    }
  }

  /// Makes the consumer and subscribes it; throws what librdkafka refused,
  /// so that the supervisor tries again after a backoff.
  void make_consumer() {
    kafka_settings settings{
        {"bootstrap.servers", config.brokers},
        {"group.id", config.group},
        // Survivors keep their partitions through a rebalance; only what
        // must move is revoked (KIP-429).
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"session.timeout.ms", std::to_string(config.session_timeout_ms)},
        {"heartbeat.interval.ms", std::to_string(config.heartbeat_interval_ms)},
        {"max.poll.interval.ms",
         std::to_string(limits::membership_max_poll_interval_ms)},
        // Nothing is consumed, so there is nothing to commit.
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
    };
    if (!config.client_id.empty())
      settings.emplace_back("client.id", config.client_id);
    for (const auto& property : config.properties)
      settings.push_back(property);
    std::string refused;
    rd_kafka_conf_t* conf = make_kafka_conf(settings, this, refused);
    if (conf == nullptr) throw thread_fault(refused);
    rd_kafka_conf_set_rebalance_cb(conf, &impl::on_rebalance);
    rd_kafka_conf_set_error_cb(conf, &impl::on_error);
    char errstr[512];
    // On success rd_kafka_new owns conf; on failure the caller does.
    consumer_ptr rk{
        rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))};
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      throw thread_fault(std::string{"kafka consumer: "} + errstr);
    }
    // Errors and logs are served by rd_kafka_consumer_poll, on this thread.
    rd_kafka_poll_set_consumer(rk.get());
    topic_ptr handle{
        rd_kafka_topic_new(rk.get(), config.topic.c_str(), nullptr)};
    if (!handle)
      throw thread_fault("kafka topic " + config.topic + ": " +
                         rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_topic_partition_list_t* subscription =
        rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subscription, config.topic.c_str(),
                                      RD_KAFKA_PARTITION_UA);
    auto err = rd_kafka_subscribe(rk.get(), subscription);
    rd_kafka_topic_partition_list_destroy(subscription);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw thread_fault("kafka subscribe to " + config.topic + ": " +
                         rd_kafka_err2str(err));
    topic = std::move(handle);
    consumer = std::move(rk);
    spdlog::info("cluster membership {}: joining group {} on topic {} "
                 "(cooperative-sticky, session timeout {} ms)",
                 config.client_id, config.group, config.topic,
                 config.session_timeout_ms);
  }

  /// Asks the brokers for the topic's metadata now and then: its partition
  /// count, and whether they answer at all (health).
  void probe_if_due() {
    auto now = steady::now();
    if (now < next_probe) return;
    next_probe =
        now + std::chrono::milliseconds(limits::membership_probe_interval_ms);
    const rd_kafka_metadata_t* metadata = nullptr;
    auto err = rd_kafka_metadata(consumer.get(), 0, topic.get(), &metadata,
                                 limits::membership_probe_timeout_ms);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata != nullptr) {
      last_answer_ms = steady_ms();
      for (int i = 0; i < metadata->topic_cnt; ++i) {
        const auto& t = metadata->topics[i];
        if (config.topic == t.topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR)
          partition_count = t.partition_cnt;
      }
    }
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    // librdkafka forgets the member id when the coordinator does not know
    // it any more (session timed out, fenced): then this node is out.
    char* member_id = rd_kafka_memberid(consumer.get());
    if (member_id == nullptr || *member_id == '\0') in_group = false;
    if (member_id != nullptr) rd_kafka_mem_free(consumer.get(), member_id);
  }

  void run() {
    if (is_stopping()) return;
    make_consumer();
    while (!is_stopping()) {
      rd_kafka_message_t* message =
          rd_kafka_consumer_poll(consumer.get(), limits::membership_poll_ms);
      if (message != nullptr) {
        if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
            message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          auto now = steady::now();
          if (now >= quiet_logs_until) {
            quiet_logs_until = now + std::chrono::seconds(10);
            spdlog::warn("cluster membership {}: {}", config.client_id,
                         rd_kafka_message_errstr(message));
          }
        }
        rd_kafka_message_destroy(message);
      }
      throw_handler_failure();
      probe_if_due();
    }
    // Leaves the group: the rebalance callback revokes every owned
    // partition (so the node stops serving them) before LeaveGroup is
    // sent, and the others are given them at once.
    auto err = rd_kafka_consumer_close(consumer.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      spdlog::warn("cluster membership {}: closing the consumer: {}",
                   config.client_id, rd_kafka_err2str(err));
    in_group = false;
    // The topic handle first: it belongs to the consumer.
    topic.reset();
    consumer.reset();
    throw_handler_failure();
  }

  void throw_handler_failure() {
    if (!handler_failure) return;
    auto failure = std::exchange(handler_failure, nullptr);
    std::rethrow_exception(failure);
  }

  /// Runs the poll loop; when it throws, reports the assignment lost, drops
  /// the consumer without leaving the group, and joins again.
  void supervise() {
    run_supervised([this] { run(); },
                   [this](const char* what) {
                     spdlog::error(
                         "cluster membership {} died: {}; it joins the group "
                         "again",
                         config.client_id, what);
                     in_group = false;
                     handler_failure = nullptr;
                     std::vector<uint32_t> all;
                     {
                       std::lock_guard<std::mutex> guard{owned_mutex};
                       all = owned;
                     }
                     // The dropped consumer's partitions go to others after its
                     // session times out; until then nobody may serve them
                     // twice.
                     if (!all.empty()) {
                       update_owned(all, false);
                       rebalance_count.fetch_add(1);
                       if (lost_total != nullptr) lost_total->Increment();
                       if (handlers.lost) handlers.lost(all);
                     }
                     topic.reset();
                     consumer.reset();
                   },
                   [this](std::chrono::milliseconds delay) {
                     std::unique_lock<std::mutex> lock{mutex};
                     wake.wait_for(lock, delay, [this] { return stopping; });
                   },
                   restarts);
  }
};

cluster_membership::cluster_membership(
    membership_config config, membership_handlers handlers,
    std::shared_ptr<prometheus::Registry> registry)
    : impl_(std::make_unique<impl>(std::move(config), std::move(handlers),
                                   std::move(registry))) {}

cluster_membership::~cluster_membership() {
  stop();
}

void cluster_membership::start() {
  std::lock_guard<std::mutex> guard{impl_->mutex};
  if (impl_->started || impl_->stopping) return;
  impl_->started = true;
  impl_->thread = std::thread([this] { impl_->supervise(); });
}

void cluster_membership::stop() {
  {
    std::lock_guard<std::mutex> guard{impl_->mutex};
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  std::lock_guard<std::mutex> guard{impl_->join_mutex};
  if (impl_->thread.joinable() &&
      impl_->thread.get_id() != std::this_thread::get_id())
    impl_->thread.join();
}

std::vector<uint32_t> cluster_membership::owned() const {
  std::lock_guard<std::mutex> guard{impl_->owned_mutex};
  return impl_->owned;
}

service_state cluster_membership::health() const {
  auto answered = impl_->last_answer_ms.load();
  bool recent = answered != 0 &&
                steady_ms() - answered < limits::membership_health_stale_ms;
  return impl_->in_group.load() && recent ? service_state::ok
                                          : service_state::down;
}

uint64_t cluster_membership::rebalances() const {
  return impl_->rebalance_count.load();
}

int cluster_membership::topic_partitions() const {
  return impl_->partition_count.load();
}

} // namespace rsv::messaging
