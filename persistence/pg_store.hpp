#pragma once

#include "core/limits.hpp"
#include "persistence/recovery.hpp"
#include "persistence/store.hpp"

#include <functional>
#include <memory>
#include <prometheus/registry.h>
#include <string>

namespace rsv::persistence {

/// How a batch becomes SQL. `pipeline`: its rows of the tables, through
/// prepared statements taking one array per column (unnest), one execute
/// per kind of row, sent in libpq's pipeline mode (pg_tables.hpp).
/// `journal`: its seat changes and idempotency records as one journal row
/// (journal_codec.hpp, migration 0008), which a projector thread applies
/// to the tables in large batches; events and customers as in `pipeline`.
/// docs/benchmarks.md compares them.
enum class batch_encoding { pipeline, journal };

struct pg_store_config {
  std::string dsn; // empty: libpq's PG* variables
  /// Rows per transaction at most: bounds a batch's latency and the size of
  /// its one statement text.
  std::size_t batch_rows_max = 2000;
  /// Writes waiting for each writer at most; beyond it `append` answers
  /// unavailable at once instead of queueing without bound.
  std::size_t queue_max = 200'000;
  /// How long a failed connection waits before the next attempt.
  int64_t reconnect_delay_ms = 200;
  batch_encoding encoding = batch_encoding::pipeline;
  /// Names this node's journal streams (`<node>/<process start>/<writer>`).
  std::string node = "node";
  /// The projector applies journal rows at most once per this interval
  /// while they keep coming (journal_projector.hpp).
  int64_t journal_step_interval_ms = limits::journal_step_interval_ms_default;
  /// Writer connections, each committing its own batches; sections are
  /// spread over them by number. Several let one batch's commit wait on
  /// the disk while the next is written (docs/benchmarks.md).
  std::size_t writers = 1;
  /// The transactional outbox (docs/events.md): when not empty, every
  /// transaction also writes its changes' Kafka records. `pipeline`: as
  /// one outbox row of stream `<outbox_node>/<writer>`. `journal`: in its
  /// journal row, which is the outbox then (the row's `records` say the
  /// relay must read it before it goes). Empty: no records (Kafka
  /// disabled), and journal rows go as soon as they are projected.
  std::string outbox_node = {};
  /// Called on a writer thread after a transaction with records (an outbox
  /// row, or a journal row with records) committed, so that the relay need
  /// not poll; must not block.
  std::function<void()> on_outbox_commit = {};
  /// In a cluster, every transaction with writes made under an ownership
  /// epoch first checks that the epochs are current (rsv_fence). False
  /// only in tests that show what the fence prevents: the check then
  /// counts stale batches (rsv_store_unfenced_stale_batches_total) and
  /// lets them commit.
  bool fencing = true;
  /// Where rsv_store_batch_rows and rsv_store_commit_seconds go; may be null.
  std::shared_ptr<prometheus::Registry> registry = nullptr;
};

/// The durable store: group commit into PostgreSQL.
///
/// Callers (section actors, the registry, the accounts actor) hand writes to
/// `append` and friends, which only queue them. Each writer thread owns one
/// libpq connection: it takes everything queued for it (up to
/// batch_rows_max), writes it as one transaction in one round trip, and
/// acknowledges every write of the batch after COMMIT returns
/// (synchronous_commit = on), or with errc::unavailable when the
/// transaction failed. While one batch commits, the next one gathers: that
/// is the group commit. A section always writes through the same writer, so
/// its changes commit in order. Thread-safe.
///
/// Each writer thread runs supervised (core/supervised.hpp): if it throws,
/// every write and load of the batch it was on is answered unavailable (so
/// their sections reload), its connection is dropped (its transaction's
/// outcome is unknown, as after a lost connection), and it starts again
/// after a backoff; `rsv_actor_restarts_total{kind="store_writer"}` counts
/// it.
class pg_store final : public store {
public:
  explicit pg_store(pg_store_config config);
  ~pg_store() override;

  const char* name() const override { return "postgres"; }
  bool durable() const override { return true; }
  void create_event(const event_def& def, std::vector<uint32_t> section_nos,
                    store_ack done, write_fence fence = {}) override;
  void create_customer(const customer_record& record, store_ack done) override;
  void append(const seat_change& change, store_ack done) override;
  void put_idempotency(const idempotency_record& record,
                       store_ack done) override;
  void load_section(uint32_t section_no, section_loaded done) override;
  void load_hold(uint32_t section_no, uint32_t slot, hold_loaded done) override;
  bool keeps_snapshots() const override;
  void put_snapshot(uint32_t section_no, std::string body, uint32_t holds,
                    write_fence fence, store_ack done) override;
  service_state health() const override;
  std::optional<projection_status> projection() const override;
  store_faults* faults() override;
  void close() override;

  /// Teaches the writer the layouts of recovered events, so that it can
  /// write their holds' seat ids. Call before the node serves.
  void learn(const std::vector<recovered_event>& events);

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace rsv::persistence
