#include "messaging/kafka_relay.hpp"

#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/metrics.hpp"
#include "core/supervised.hpp"
#include "messaging/kafka_support.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <librdkafka/rdkafka.h>
#include <map>
#include <mutex>
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>
#include <string_view>
#include <thread>

namespace rsv::messaging {

namespace {

using steady = std::chrono::steady_clock;

millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct producer_deleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using producer_ptr = std::unique_ptr<rd_kafka_t, producer_deleter>;

struct topic_deleter {
  void operator()(rd_kafka_topic_t* topic) const {
    rd_kafka_topic_destroy(topic);
  }
};
using topic_ptr = std::unique_ptr<rd_kafka_topic_t, topic_deleter>;

/// One outbox row in a round: how many of its records still wait for their
/// delivery report.
struct row_progress {
  millis created_at_ms = 0;
  int64_t outstanding = 0;
};

/// The delivery reports of one round, filled by librdkafka's callback on the
/// relay's thread (inside rd_kafka_poll).
struct round_state {
  std::vector<row_progress> rows;
  int64_t outstanding = 0;
  int64_t failed = 0;
  std::string first_error;
};

/// What the delivery-report callback reaches through the message opaque.
struct delivery_ticket {
  round_state* round = nullptr;
  std::size_t row = 0;
};

} // namespace

struct kafka_relay::impl {
  impl(kafka_relay_config cfg,
       std::unique_ptr<persistence::outbox_reader> reader)
      : config(std::move(cfg)), outbox(std::move(reader)) {
    if (!config.registry) return;
    auto& registry = *config.registry;
    restarts = &actor_restarts(registry, "relay");
    crashes_injected = &chaos_faults(registry, "relay_crash");
    records_relayed = &prometheus::BuildCounter()
                           .Name("rsv_relay_records_total")
                           .Help("Outbox records Kafka acknowledged")
                           .Register(registry)
                           .Add({});
    rounds_failed = &prometheus::BuildCounter()
                         .Name("rsv_relay_failed_rounds_total")
                         .Help("Relay rounds with a failed delivery, "
                               "produced again from the outbox")
                         .Register(registry)
                         .Add({});
    auto& lag = prometheus::BuildGauge()
                    .Name("rsv_relay_lag")
                    .Help("What the relay has not delivered yet: outbox "
                          "rows, records, and the age of the oldest in "
                          "seconds")
                    .Register(registry);
    lag_rows = &lag.Add({{"unit", "rows"}});
    lag_records = &lag.Add({{"unit", "records"}});
    lag_seconds = &lag.Add({{"unit", "seconds"}});
    delivery_seconds =
        &prometheus::BuildHistogram()
             .Name("rsv_relay_delivery_seconds")
             .Help("From an outbox row's write (its batch's COMMIT follows) to "
                   "Kafka's acknowledgement "
                   "of its last record")
             .Register(registry)
             .Add({}, prometheus::Histogram::BucketBoundaries{
                          0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                          0.5, 1, 2.5, 5, 10, 30, 60});
  }

  kafka_relay_config config;
  std::unique_ptr<persistence::outbox_reader> outbox;

  prometheus::Counter* restarts = nullptr;
  prometheus::Counter* crashes_injected = nullptr;
  prometheus::Counter* records_relayed = nullptr;
  prometheus::Counter* rounds_failed = nullptr;
  prometheus::Gauge* lag_rows = nullptr;
  prometheus::Gauge* lag_records = nullptr;
  prometheus::Gauge* lag_seconds = nullptr;
  prometheus::Histogram* delivery_seconds = nullptr;

  std::atomic<bool> brokers_up{false};
  std::mutex mutex;
  std::condition_variable wake;
  bool poked = false;    // guarded by mutex
  bool stopping = false; // guarded by mutex
  // The thread waits in `idle`, where a poke ends the wait (guarded by
  // mutex): pokes come with every commit, and waking the thread while it
  // pauses between rounds, only for it to sleep again, cost a context switch
  // per commit.
  bool awaiting_poke = false;
  steady::time_point drain_deadline{};
  std::thread thread;
  // Written by the relay thread before it ends, read after the join.
  bool flushed = false;
  std::optional<kafka_relay::stop_report> report;

  // Relay thread only (and start(), before the thread exists).
  producer_ptr producer;
  topic_ptr topic;
  steady::time_point next_backlog{};
  steady::time_point next_probe{};
  steady::time_point quiet_logs_until{};
  steady::time_point next_trim{};
  std::size_t untrimmed_rows = 0; // delivered, not yet deleted

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* message,
                          void*) {
    auto* ticket = static_cast<delivery_ticket*>(message->_private);
    if (ticket == nullptr) return;
    auto& round = *ticket->round;
    --round.outstanding;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (round.failed++ == 0)
        round.first_error = rd_kafka_err2str(message->err);
      return;
    }
    --round.rows[ticket->row].outstanding;
  }

  static void on_error(rd_kafka_t* rk, int err, const char* reason,
                       void* opaque) {
    auto* self = static_cast<impl*>(opaque);
    auto code = static_cast<rd_kafka_resp_err_t>(err);
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        code == RD_KAFKA_RESP_ERR__TRANSPORT ||
        code == RD_KAFKA_RESP_ERR__RESOLVE)
      self->brokers_up = false;
    // Brokers that are down repeat themselves: one line per 10 s.
    auto now = steady::now();
    if (code == RD_KAFKA_RESP_ERR__FATAL || now >= self->quiet_logs_until) {
      self->quiet_logs_until = now + std::chrono::seconds(10);
      spdlog::warn("kafka: {} ({})", reason, rd_kafka_err2name(code));
    }
    (void)rk;
  }

  caf::error make_producer() {
    kafka_settings settings{
        {"bootstrap.servers", config.brokers},
        {"client.id", "reservations-relay"},
        {"compression.type", config.compression},
        {"linger.ms", std::to_string(config.linger_ms)},
        {"message.timeout.ms", std::to_string(config.message_timeout_ms)},
        // The same partition for a key as Java clients choose.
        {"partitioner", "murmur2_random"},
        // Nagle's algorithm holds small produce requests back until the
        // previous one is acknowledged: with delayed ACKs that is tens of
        // milliseconds per round, and linger.ms already batches.
        {"socket.nagle.disable", "true"},
    };
    for (const auto& property : config.properties)
      settings.push_back(property);
    // Last, so that no property can weaken them: off by default in
    // librdkafka 2.0.2, and what makes retries neither reorder nor
    // duplicate within a partition.
    settings.emplace_back("enable.idempotence", "true");
    settings.emplace_back("acks", "all");
    std::string refused;
    rd_kafka_conf_t* conf = make_kafka_conf(settings, this, refused);
    if (conf == nullptr)
      return make_error(errc::validation_failed, std::move(refused));
    rd_kafka_conf_set_dr_msg_cb(conf, &impl::on_delivery);
    rd_kafka_conf_set_error_cb(conf, &impl::on_error);
    char errstr[512];
    // On success rd_kafka_new owns conf; on failure the caller does.
    producer_ptr rk{
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))};
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      return make_error(errc::validation_failed,
                        std::string{"kafka producer: "} + errstr);
    }
    topic_ptr handle{
        rd_kafka_topic_new(rk.get(), config.topic.c_str(), nullptr)};
    if (!handle)
      return make_error(errc::validation_failed,
                        "kafka topic " + config.topic + ": " +
                            rd_kafka_err2str(rd_kafka_last_error()));
    topic = std::move(handle);
    producer = std::move(rk);
    return {};
  }

  /// The outbox reader's promises, checked where a broken one would
  /// reorder or repeat records in Kafka: at most a round of rows, and each
  /// stream's rows in commit order.
  void check_round(const std::vector<persistence::outbox_row>& rows) const {
    RSV_ASSERT(rows.size() <= config.rows_per_round,
               "the outbox gave more rows than a round asks for");
    std::map<std::pair<persistence::outbox_table, std::string_view>, int64_t>
        last_seq;
    for (const auto& row : rows) {
      auto [last, first] =
          last_seq.try_emplace({row.table, row.stream}, row.seq);
      RSV_ASSERT(first || last->second < row.seq,
                 "the outbox gave a stream's rows out of commit order");
      last->second = row.seq;
    }
  }

  /// Produces every record of `rows` and waits for all their delivery
  /// reports. True when Kafka acknowledged every one.
  bool relay_round(const std::vector<persistence::outbox_row>& rows) {
    round_state round;
    round.rows.resize(rows.size());
    std::vector<std::vector<persistence::outbox_record>> records(rows.size());
    std::size_t total = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      records[i] = persistence::split_outbox_records(rows[i].payload);
      round.rows[i] = {rows[i].created_at_ms,
                       static_cast<int64_t>(records[i].size())};
      total += records[i].size();
    }
    std::vector<delivery_ticket> tickets;
    tickets.reserve(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i)
      tickets.push_back({&round, i});
    bool produced_all = true;
    for (std::size_t i = 0; i < rows.size() && produced_all; ++i) {
      for (const auto& record : records[i]) {
        if (!produce(record, tickets[i])) {
          produced_all = false;
          break;
        }
        ++round.outstanding;
      }
    }
    wait_for_reports(round);
    bool ok = produced_all && round.failed == 0;
    count_round(round, ok, total);
    renew_producer_if_fatal();
    return ok;
  }

  /// Queues one record in the producer, waiting while its queue is full.
  /// The rows outlive the round, and the round waits for every report:
  /// librdkafka may point into them instead of copying.
  bool produce(const persistence::outbox_record& record,
               delivery_ticket& ticket) {
    rd_kafka_vu_t fields[5] = {};
    fields[0].vtype = RD_KAFKA_VTYPE_RKT;
    fields[0].u.rkt = topic.get();
    fields[1].vtype = RD_KAFKA_VTYPE_KEY;
    fields[1].u.mem = {const_cast<char*>(record.key.data()), record.key.size()};
    fields[2].vtype = RD_KAFKA_VTYPE_VALUE;
    fields[2].u.mem = {const_cast<char*>(record.value.data()),
                       record.value.size()};
    fields[3].vtype = RD_KAFKA_VTYPE_HEADER;
    fields[3].u.header = {"id", record.id.data(),
                          static_cast<ssize_t>(record.id.size())};
    fields[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
    fields[4].u.ptr = &ticket;
    rd_kafka_resp_err_t err;
    for (;;) {
      rd_kafka_error_t* error = rd_kafka_produceva(producer.get(), fields, 5);
      err = error == nullptr ? RD_KAFKA_RESP_ERR_NO_ERROR
                             : rd_kafka_error_code(error);
      if (error != nullptr) rd_kafka_error_destroy(error);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      rd_kafka_poll(producer.get(), 10);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return true;
    spdlog::warn("kafka: producing failed: {}", rd_kafka_err2str(err));
    return false;
  }

  /// Polls until every produced record of `round` is reported. Every report
  /// comes within message.timeout.ms; past a margin the rest is purged,
  /// which reports it failed at once.
  void wait_for_reports(round_state& round) {
    auto deadline = steady::now() +
                    std::chrono::milliseconds(config.message_timeout_ms) +
                    std::chrono::seconds(5);
    while (round.outstanding > 0) {
      rd_kafka_poll(producer.get(), 50);
      // A round can wait long on brokers that are gone: the backlog the
      // operator sees must not wait with it.
      refresh_backlog_if_due();
      if (steady::now() > deadline || past_drain_deadline()) {
        rd_kafka_purge(producer.get(),
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        deadline = steady::now() + std::chrono::seconds(5);
      }
    }
  }

  /// The round's outcome in the metrics and the brokers' state.
  void count_round(const round_state& round, bool ok, std::size_t total) {
    brokers_up = ok;
    if (ok) {
      auto now = now_ms();
      if (records_relayed == nullptr) return;
      records_relayed->Increment(static_cast<double>(total));
      for (const auto& row : round.rows)
        delivery_seconds->Observe(
            static_cast<double>(std::max<millis>(0, now - row.created_at_ms)) /
            1000.0);
      return;
    }
    if (rounds_failed != nullptr) rounds_failed->Increment();
    if (round.failed > 0)
      spdlog::warn("kafka: {} of {} records not delivered ({}); producing "
                   "them again",
                   round.failed, total, round.first_error);
  }

  /// A producer that failed for good is replaced by a new one.
  void renew_producer_if_fatal() {
    char reason[512];
    if (rd_kafka_fatal_error(producer.get(), reason, sizeof(reason)) ==
        RD_KAFKA_RESP_ERR_NO_ERROR)
      return;
    spdlog::error("kafka: the producer failed for good ({}); starting a new "
                  "one",
                  reason);
    topic.reset();
    producer.reset();
    if (auto err = make_producer()) spdlog::error("kafka: {}", describe(err));
  }

  void refresh_backlog_if_due() {
    auto now = steady::now();
    if (now < next_backlog) return;
    next_backlog = now + std::chrono::seconds(1);
    refresh_backlog();
  }

  void refresh_backlog() {
    auto backlog = outbox->backlog();
    if (!backlog || lag_rows == nullptr) return;
    lag_rows->Set(static_cast<double>(backlog->rows));
    lag_records->Set(static_cast<double>(backlog->records));
    lag_seconds->Set(backlog->rows == 0
                         ? 0.0
                         : static_cast<double>(std::max<millis>(
                               0, now_ms() - backlog->oldest_created_at_ms)) /
                               1000.0);
  }

  /// While nothing is delivered, ask the brokers now and then whether they
  /// are there, so that /health tells the truth on a quiet node.
  void probe_brokers() {
    const rd_kafka_metadata_t* metadata = nullptr;
    auto err =
        rd_kafka_metadata(producer.get(), 0, topic.get(), &metadata, 1000);
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    brokers_up = err == RD_KAFKA_RESP_ERR_NO_ERROR;
  }

  bool past_drain_deadline() {
    std::lock_guard<std::mutex> guard{mutex};
    return stopping && steady::now() >= drain_deadline;
  }

  /// Waits for a poke, a stop or `timeout`; true when stopping.
  bool idle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock{mutex};
    awaiting_poke = true;
    wake.wait_for(lock, timeout, [this] { return poked || stopping; });
    awaiting_poke = false;
    poked = false;
    return stopping;
  }

  /// Runs the relay's loop; when it throws, drops the producer (a new one
  /// is made, and the rows of the round are produced again: at least once)
  /// and starts again (core/supervised.hpp).
  void supervise() {
    run_supervised(
        [this] { run(); },
        [this](const char* what) {
          spdlog::error("outbox relay died: {}; it restarts and produces its "
                        "round again",
                        what);
          brokers_up = false;
          // The topic handle first: it belongs to the producer, and
          // destroying it after its producer hung the restarted relay.
          topic.reset();
          producer.reset();
        },
        [this](std::chrono::milliseconds delay) { pause(delay); }, restarts);
  }

  void run() {
    std::chrono::milliseconds backoff{0};
    for (;;) {
      bool draining = false;
      {
        std::lock_guard<std::mutex> guard{mutex};
        draining = stopping;
        poked = false;
      }
      if (past_drain_deadline()) break;
      crash_if_due(config.crashes.get(), crashes_injected, "relay");
      auto now = steady::now();
      refresh_backlog_if_due();
      if (!producer) {
        if (auto err = make_producer())
          spdlog::error("kafka: {}", describe(err));
        if (!producer && idle(std::chrono::seconds(1)) && draining) break;
        continue;
      }
      rd_kafka_poll(producer.get(), 0);
      auto rows = outbox->read(config.rows_per_round);
      if (!rows) {
        if (now >= quiet_logs_until) {
          quiet_logs_until = now + std::chrono::seconds(10);
          // A row that cannot be rendered stops the relay until repaired.
          auto level = code_of(rows.error()) == errc::validation_failed
                           ? spdlog::level::err
                           : spdlog::level::warn;
          spdlog::log(level, "outbox relay: {}", describe(rows.error()));
        }
        if (idle(std::chrono::milliseconds(500)) && draining) break;
        continue;
      }
      check_round(*rows);
      trim_if_due(false);
      if (rows->empty()) {
        if (draining) {
          flushed = true;
          break;
        }
        if (now >= next_probe) {
          next_probe = now + std::chrono::seconds(1);
          probe_brokers();
        }
        idle(std::chrono::milliseconds(100));
        continue;
      }
      if (relay_round(*rows)) {
        backoff = std::chrono::milliseconds(0);
        next_probe = steady::now() + std::chrono::seconds(1);
        outbox->delivered(*rows);
        untrimmed_rows += rows->size();
        // A round per commit would cost a read per commit; a short pause
        // lets a few commits gather into one round (the producer's linger
        // batches again). A full round goes on at once: there is more.
        if (rows->size() < config.rows_per_round && !draining)
          pause(std::chrono::milliseconds(config.round_gap_ms));
        continue;
      }
      backoff = std::clamp(backoff * 2, std::chrono::milliseconds(100),
                           std::chrono::milliseconds(2000));
      idle(backoff);
      if (past_drain_deadline()) break;
    }
    trim_if_due(true);
    if (producer) rd_kafka_flush(producer.get(), 1000);
  }

  /// Deletes delivered rows in one statement every 250 ms or 1,000 rows,
  /// instead of one per round.
  void trim_if_due(bool now_anyway) {
    auto now = steady::now();
    if (untrimmed_rows == 0 ||
        (!now_anyway && untrimmed_rows < 1000 && now < next_trim))
      return;
    next_trim = now + std::chrono::milliseconds(250);
    if (auto err = outbox->trim()) {
      spdlog::warn("outbox relay: {} (the rows are relayed again if the "
                   "node restarts before they are deleted)",
                   describe(err));
      return;
    }
    untrimmed_rows = 0;
  }

  /// Waits `how_long` unless stopping; pokes do not cut it short.
  void pause(std::chrono::milliseconds how_long) {
    std::unique_lock<std::mutex> lock{mutex};
    wake.wait_for(lock, how_long, [this] { return stopping; });
  }
};

kafka_relay::kafka_relay(kafka_relay_config config,
                         std::unique_ptr<persistence::outbox_reader> outbox)
    : impl_(std::make_unique<impl>(std::move(config), std::move(outbox))) {}

kafka_relay::~kafka_relay() {
  stop(std::chrono::milliseconds(0));
}

caf::error kafka_relay::start() {
  if (auto err = impl_->make_producer()) return err;
  impl_->thread = std::thread([this] { impl_->supervise(); });
  return {};
}

void kafka_relay::poke() {
  bool waiting = false;
  {
    std::lock_guard<std::mutex> guard{impl_->mutex};
    impl_->poked = true;
    waiting = impl_->awaiting_poke;
  }
  if (waiting) impl_->wake.notify_one();
}

service_state kafka_relay::health() const {
  return impl_->brokers_up.load() ? service_state::ok : service_state::down;
}

kafka_relay::stop_report kafka_relay::stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard<std::mutex> guard{impl_->mutex};
    if (!impl_->stopping) {
      impl_->stopping = true;
      impl_->drain_deadline = steady::now() + drain;
    }
  }
  impl_->wake.notify_one();
  bool ran = impl_->thread.joinable();
  if (ran) impl_->thread.join();
  if (!impl_->report) {
    // The thread has ended: the outbox connection is this thread's now.
    stop_report report;
    report.flushed = impl_->flushed;
    report.rows_left = report.flushed ? 0 : -1;
    if (ran && !report.flushed) {
      auto backlog = impl_->outbox->backlog();
      report.rows_left = backlog ? backlog->rows : -1;
    }
    impl_->report = report;
  }
  return *impl_->report;
}

} // namespace rsv::messaging
