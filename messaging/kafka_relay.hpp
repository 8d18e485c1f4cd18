#pragma once

#include "core/limits.hpp"
#include "core/service_state.hpp"
#include "persistence/outbox.hpp"

#include <caf/error.hpp>
#include <chrono>
#include <memory>
#include <prometheus/registry.h>
#include <string>
#include <utility>
#include <vector>

namespace rsv {
struct crash_fault; // core/supervised.hpp
} // namespace rsv

namespace rsv::messaging {

struct kafka_relay_config {
  std::string brokers; // bootstrap.servers
  std::string topic = "reservation-events";
  /// Further librdkafka settings, e.g. security.protocol=SASL_SSL for MSK
  /// (docs/operations.md). They win over the defaults below, except that
  /// idempotence and acks=all cannot be turned off.
  std::vector<std::pair<std::string, std::string>> properties;
  /// How long librdkafka waits to fill a batch; measured in
  /// docs/benchmarks.md.
  int linger_ms = limits::kafka_linger_ms_default;
  std::string compression = "lz4";
  /// A delivery not acknowledged within this is failed and produced again
  /// from the outbox: it bounds how long a round can wait on dead brokers.
  int message_timeout_ms = 10'000;
  /// Outbox rows per round: produced together, acknowledged together.
  std::size_t rows_per_round = 500;
  /// After a round that was not full, how long to let commits gather
  /// before the next: bounds the rounds (and outbox reads) to a few hundred
  /// a second at the cost of that much latency.
  int round_gap_ms = 5;
  /// Where the rsv_relay_* metrics go; may be null.
  std::shared_ptr<prometheus::Registry> registry;
  /// The chaos facility's crashes of the relay thread; may be null.
  std::shared_ptr<crash_fault> crashes;
};

/// The outbox relay: reads the outbox in commit order (the outbox table and
/// the journal, which is the outbox of `journal` writers: outbox.hpp),
/// produces every record to Kafka (idempotent producer, acks=all), and lets
/// a row go only after every one of its records has a successful delivery
/// report. After a crash it starts again from the rows not let go, so
/// delivery is at least once; every record carries its unique id (header
/// `id` and field `id`) so that consumers drop the rare duplicate.
///
/// Lifecycle: `start` (validates the configuration and starts the relay's
/// thread, which owns the librdkafka producer and the outbox connection),
/// `poke` from any thread when rows committed, `stop` at shutdown. `health`
/// from any thread. Blocking work happens only on the relay's thread.
///
/// The thread runs supervised (core/supervised.hpp): if it throws, the
/// producer is dropped and the loop starts again after a backoff, from the
/// rows still in the outbox; `rsv_actor_restarts_total{kind="relay"}`.
class kafka_relay {
public:
  kafka_relay(kafka_relay_config config,
              std::unique_ptr<persistence::outbox_reader> outbox);
  ~kafka_relay();
  kafka_relay(const kafka_relay&) = delete;
  kafka_relay& operator=(const kafka_relay&) = delete;

  /// Creates the producer and starts relaying. An error for settings
  /// librdkafka refuses.
  caf::error start();

  /// New rows were committed: relay them now rather than at the next poll.
  void poke();

  /// ok while the brokers acknowledge deliveries (or answer while idle),
  /// down while they do not.
  service_state health() const;

  /// How a stop ended: `flushed` when the outbox had nothing left to relay
  /// (every committed record was acknowledged by Kafka); otherwise the drain
  /// time ran out (or the brokers were away) and `rows_left` outbox rows
  /// wait for the next start (-1 when the outbox could not be read).
  struct stop_report {
    bool flushed = false;
    int64_t rows_left = 0;
  };

  /// Relays what the outbox has for at most `drain`, then stops the thread.
  /// Only the first call drains; later ones report what it found.
  stop_report stop(std::chrono::milliseconds drain);

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace rsv::messaging
