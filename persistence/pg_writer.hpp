#pragma once

// Private to persistence/: pg_store's writers (pg_store.hpp). A writer is a
// thread with its own connection and queue that commits what is queued for
// it as one transaction (the group commit) and answers every write of the
// batch after COMMIT; pg_store spreads sections over its writers.

#include "core/errc.hpp"
#include "core/model.hpp"
#include "core/service_state.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/pg_tables.hpp"

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace prometheus {
class Counter;
class Histogram;
} // namespace prometheus

namespace rsv::persistence::pg {

struct event_write {
  event_def def;
  std::vector<uint32_t> section_nos;
  write_fence fence;
};

/// A read of one section's live holds, or of one hold (`slot`), ordered
/// after the writes queued before it.
struct section_load {
  uint32_t section_no = 0;
  std::optional<uint32_t> slot;
  section_loaded done;
};

/// A section's snapshot (migration 0012): its state after the writes it
/// queued before this one, encoded by the section (journal::encode_snapshot).
struct snapshot_write {
  uint32_t section_no = 0;
  std::string body;
  uint32_t holds = 0;
  write_fence fence;
};

struct pending_write {
  std::variant<event_write, customer_record, seat_change, idempotency_record,
               section_load, snapshot_write>
      what;
  store_ack done; // empty for a section_load, which answers through its own

  bool is_load() const { return std::holds_alternative<section_load>(what); }

  /// The section whose state the write changes or snapshots, if any.
  std::optional<uint32_t> section() const {
    if (const auto* change = std::get_if<seat_change>(&what))
      return change->section_no;
    if (const auto* snapshot = std::get_if<snapshot_write>(&what))
      return snapshot->section_no;
    return std::nullopt;
  }

  /// Answers the write, or the load, once: later calls do nothing, so that
  /// a writer restarted in the middle of a batch answers only what it had
  /// not answered yet.
  void answer(caf::error err) {
    if (auto* load = std::get_if<section_load>(&what)) {
      auto loaded = std::exchange(load->done, nullptr);
      if (loaded) loaded(std::move(err));
      return;
    }
    auto acknowledge = std::exchange(done, nullptr);
    if (acknowledge) acknowledge(std::move(err));
  }
};

/// The sections of one writer with a write that failed since their last
/// load. The section's memory was ahead of the store: a snapshot of it
/// queued before the section heard of the failure may hold what the store
/// refused, and is not written, until the section's reload passes through
/// the writer. Thread-safe: a write refused at the queue is marked on the
/// caller's thread.
class failed_sections {
public:
  /// `write` failed: marks its section, if it changes one.
  void mark(const pending_write& write);
  /// The section loads: its later snapshots follow what the store has.
  void clear(uint32_t section_no);
  /// Answers `write` and returns true when it is a snapshot of a marked
  /// section: the section takes another later.
  bool refuse_stale_snapshot(pending_write& write);

private:
  std::mutex mutex_;
  std::set<uint32_t> sections_;
};

/// What one transaction of a writer writes besides its fence.
struct batch_content {
  table_rows rows;
  journal::encoder journal_row;
  /// Kafka records in the journal row (journal_codec.hpp, migration 0009):
  /// 0 when it needs no relay.
  int64_t journal_records = 0;
  /// The sections whose seat changes the journal row holds.
  pg::array_param journal_sections;
  /// Snapshots, written after the journal row (migration 0012).
  std::vector<const snapshot_write*> snapshots;
  /// The `pipeline` encoding with Kafka: the outbox row's record lines.
  std::string outbox_payload;
  int64_t outbox_records = 0;
};

/// The distinct ownership fences a batch's writes were made under, as the
/// two array parameters of rsv_fence; empty when none was (a single node).
struct batch_fences {
  pg::array_param partitions;
  pg::array_param epochs;
  std::size_t count = 0;
};

batch_fences fences_of(const std::vector<const pending_write*>& batch);

/// A PostgreSQL backend, told apart from a later one with the same pid by
/// when it started.
struct backend_id {
  int pid = 0; // 0: none
  std::string started;
};

/// The backend that serves `conn`; pid 0 when it cannot be read.
backend_id backend_of(PGconn* conn);

/// Ends `former`, the backend of a writer's connection that was lost, and
/// waits until it is gone, so that a COMMIT it may still be carrying out
/// has its outcome before the writer commits its next row: a stream's rows
/// then become visible in the order they are numbered, which the relay and
/// the projector rely on when they read a stream after a cursor. True when
/// it is gone (or was never there), or when the server cannot end it
/// (logged); false while it is still there.
bool end_former_backend(PGconn* conn, const backend_id& former);

struct shared_state {
  explicit shared_state(pg_store_config cfg);

  /// A transaction PostgreSQL refused, as its writes are answered.
  caf::error refused(errc refusal, const std::string& message);

  /// A group commit the fence refused: counted once, whatever its writes
  /// meet when they are tried again one by one.
  void fenced(const caf::error& err);

  /// With fencing off (a test switch): a batch the fence would have
  /// refused.
  void stale_batch();

  /// The layout of a section this node knows; null for another.
  std::shared_ptr<const section_layout> layout(uint32_t section_no);

  void learn(std::shared_ptr<const section_layout> layout);

  /// Sorts a batch's writes into what its transaction writes. The tables'
  /// statements (pg_tables.hpp) take everything of the `pipeline`
  /// encoding; with the journal, seat changes and idempotency records go to
  /// its row instead, while events and customers, rare and checked by
  /// unique indexes, always go to their tables. With Kafka (an outbox
  /// node), each event and seat change also has its record: in the journal
  /// row, which is the outbox of the journal encoding (an event's entry is
  /// there only for its record), or rendered into an outbox row. `now_ms`
  /// is when events happen. False when a change's section is unknown.
  bool gather(const std::vector<const pending_write*>& batch, millis now_ms,
              batch_content& out);

  pg_store_config config;
  const std::string journal_streams;
  /// Called on a writer thread after a journal row committed: wakes the
  /// projector. Set before the writers start.
  std::function<void()> on_journal_commit;
  /// The same after a commit that wrote snapshots.
  std::function<void()> on_snapshot_commit;
  // Group commit at work: rows per transaction and the time COMMIT takes.
  prometheus::Histogram* batch_rows = nullptr;
  prometheus::Histogram* commit_seconds = nullptr;
  prometheus::Counter* fenced_batches = nullptr;
  prometheus::Counter* stale_batches = nullptr;
  // Supervision and the chaos facility's faults (store.hpp).
  store_faults faults;
  prometheus::Counter* writer_restarts = nullptr;
  prometheus::Counter* delays_injected = nullptr;
  prometheus::Counter* failures_injected = nullptr;
  prometheus::Counter* crashes_injected = nullptr;

private:
  std::shared_mutex layouts_mutex;
  pg::layout_map layouts; // guarded by layouts_mutex
};

/// One writer: a connection, its queue and the thread that commits it. A
/// section's writes and loads always go to the same writer, so they commit
/// in the order the section made them. Thread-safe.
class writer {
public:
  writer(shared_state& shared, std::size_t index);
  ~writer();

  /// Queues a write; answers it unavailable at once when the queue is full
  /// or the writer stopped.
  void push(pending_write write);

  /// Queues a load after the writes queued before it. The queue's bound
  /// does not apply: a load replaces writes, it does not add to them, and a
  /// section must be able to recover.
  void push_load(section_load load);

  /// Commits what is queued, then ends the thread; later pushes fail.
  void stop();

  service_state state() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace rsv::persistence::pg
