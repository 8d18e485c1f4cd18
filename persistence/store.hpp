#pragma once

#include "core/model.hpp"
#include "core/service_state.hpp"

#include <atomic>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace rsv::persistence {

/// Called exactly once per write, on any thread: an empty error means the
/// write is durable (as durable as the store is); anything else means it is
/// not and the client must not be told success.
using store_ack = std::function<void(caf::error)>;

/// Answers load_section: the section's live holds as recorded (active holds
/// and bookings) and its last hold whatever its state (it numbers the next
/// one), or why not. Holds that ended are not read: a section forgets them
/// (actors/section_state.hpp) and reads one by load_hold when it is asked.
using section_loaded =
    std::function<void(caf::expected<std::vector<recorded_hold>>)>;

/// Answers load_hold: the hold as recorded, nothing when the store has no
/// such hold, or why it cannot tell.
using hold_loaded =
    std::function<void(caf::expected<std::optional<recorded_hold>>)>;

/// Faults that the chaos facility (--chaos, docs/operations.md) injects into
/// a store's commits; zero means none. Set from any thread, read by the
/// store's writers before each batch.
struct store_faults {
  /// Every batch waits this long before it is written: a slow disk or a
  /// slow network to the database.
  std::atomic<int64_t> commit_delay_ms{0};
  /// This percentage of batches fails instead of being written (rolled
  /// back, answered unavailable): a database that refuses.
  std::atomic<int> commit_failure_percent{0};
  /// The next this many batches make their writer thread throw (its
  /// supervisor restarts it): a crash of the writer itself.
  std::atomic<int> writer_crashes{0};
};

/// How far the relational tables trail the acknowledged writes, on a store
/// that projects them from a journal (`--pg-batch-encoding journal`),
/// measured once a second.
struct projection_status {
  /// Journal rows not yet in the tables (all nodes).
  int64_t backlog_rows = 0;
  /// Age of the oldest of them: how stale a read of the tables may be.
  double lag_seconds = 0;
};

/// The seam between the actors and durable storage. Section actors apply a
/// change in memory, hand it to `append`, and answer their client only from
/// the acknowledgement. Implementations are thread-safe and never block the
/// caller: a durable store queues the write for its own writer actors and
/// acknowledges after the transaction commits.
class store {
public:
  virtual ~store() = default;

  /// A short name for logs and `/health`, e.g. "memory".
  virtual const char* name() const = 0;

  /// True when an acknowledged write survives a crash of the process.
  virtual bool durable() const = 0;

  /// Writes a new event. `fence` is the ownership of its partition the
  /// node creates it under (in a cluster; else none).
  virtual void create_event(const event_def& def,
                            std::vector<uint32_t> section_nos, store_ack done,
                            write_fence fence = {}) = 0;

  virtual void create_customer(const customer_record& record,
                               store_ack done) = 0;

  /// Writes a change, with the idempotency record it carries if any, in one
  /// transaction.
  virtual void append(const seat_change& change, store_ack done) = 0;

  /// Writes an idempotency record that no change carries (a 4xx answer).
  virtual void put_idempotency(const idempotency_record& record,
                               store_ack done) = 0;

  /// Reads one section's recorded holds, after every write appended before
  /// this call has been acknowledged: what a section actor reloads when a
  /// write of its own failed and its memory may be ahead of the store.
  virtual void load_section(uint32_t section_no, section_loaded done) = 0;

  /// Reads one hold, with its booking, after every write appended before
  /// this call has been acknowledged (as load_section): how a section
  /// answers for a hold it no longer keeps in memory. `done` runs on any
  /// thread.
  virtual void load_hold(uint32_t section_no, uint32_t slot,
                         hold_loaded done) = 0;

  /// True when this store keeps per-section snapshots (the journal,
  /// migration 0012): a section then hands it one from time to time.
  virtual bool keeps_snapshots() const { return false; }

  /// Writes a snapshot of a section, `body` (journal::encode_snapshot, with
  /// `holds` holds), after the writes the section appended before it. A
  /// refused snapshot changes nothing the section serves: it takes another.
  virtual void put_snapshot(uint32_t section_no, std::string body,
                            uint32_t holds, write_fence fence, store_ack done) {
    (void)section_no, (void)body, (void)holds, (void)fence;
    done({});
  }

  virtual service_state health() const = 0;

  /// The projection's backlog; none when the tables are written in the
  /// commit itself (or there are none).
  virtual std::optional<projection_status> projection() const {
    return std::nullopt;
  }

  /// Where the chaos facility injects faults into commits; null when this
  /// store has no writer to inject them into (the memory store).
  virtual store_faults* faults() { return nullptr; }

  /// Stops taking writes, commits what is queued and acknowledges every
  /// write, then returns (blocking). Later writes are answered unavailable.
  /// Called at shutdown while the acknowledgements can still be delivered.
  virtual void close() {}
};

/// Keeps nothing beyond the process: every write is acknowledged at once.
/// The actor core runs against it in tests and in `--store memory` mode.
/// Tests can make it fail writes to check that no client is told success;
/// with `keep_holds` it records the holds it acknowledged, so that a section
/// can reload from it, and read forgotten holds back, as it would from
/// PostgreSQL. Without, it has no hold to read: a hold its section forgot
/// answers 404.
class memory_store final : public store {
public:
  explicit memory_store(bool keep_holds = false) : keep_holds_(keep_holds) {}
  const char* name() const override { return "memory"; }
  bool durable() const override { return false; }

  // Writes are acknowledged at once, on the caller's thread (a section
  // actor's), unless failing. Only `append` keeps anything, and only with
  // keep_holds.
  void create_event(const event_def& def, std::vector<uint32_t> section_nos,
                    store_ack done, write_fence fence = {}) override;
  void create_customer(const customer_record& record, store_ack done) override;
  void append(const seat_change& change, store_ack done) override;
  void put_idempotency(const idempotency_record& record,
                       store_ack done) override;

  // Loads answer at once from the kept holds: none without keep_holds.
  void load_section(uint32_t section_no, section_loaded done) override;
  void load_hold(uint32_t section_no, uint32_t slot, hold_loaded done) override;

  /// Down while failing, else ok.
  service_state health() const override;

  /// While failing, every write and load is answered with errc::unavailable.
  void set_failing(bool failing) { failing_ = failing; }

private:
  const bool keep_holds_;
  std::atomic<bool> failing_{false};
  std::mutex mutex_;
  // section_no -> slot -> hold; only with keep_holds_. Guarded by mutex_.
  std::unordered_map<uint32_t, std::map<uint32_t, recorded_hold>> holds_;
};

} // namespace rsv::persistence
