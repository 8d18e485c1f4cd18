#pragma once

#include "core/clock.hpp"
#include "core/model.hpp"
#include "persistence/recovery.hpp"
#include "persistence/store.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rsv::persistence {

/// A row of cluster_partitions: who owns a partition, under which epoch.
struct partition_owner {
  uint32_t partition = 0;
  uint64_t epoch = 0;
  std::string owner; // the owner's advertised HOST:PORT; empty: never owned
  millis updated_at_ms = 0;
};

/// What a clustered node asks PostgreSQL besides its group commits: the
/// partitions' epochs and owners (taking partitions over), the events of the
/// partitions it is assigned, fresh section numbers, and the reads a single
/// node answered from memory but that another node's writes now feed
/// (customers, idempotency records, bookings across events, the event list).
///
/// Owns one libpq connection and one thread of its own, which runs the jobs
/// one at a time in the order they were queued. Any thread may call it; no
/// call blocks but `init`. Each callback is called exactly once and must only
/// post (to an actor, a promise), never block: on the caller's thread, at
/// once, when the queue holds limits::cluster_store_queue_max jobs or the
/// store is closed (errc::unavailable) or an argument is out of bounds
/// (errc::validation_failed); otherwise on the store's thread. An
/// unreachable database answers errc::unavailable; the connection is tried
/// again at most every limits::cluster_store_reconnect_delay_ms. Destroying the
/// store finishes the job in progress, answers the queued ones unavailable and
/// joins the thread.
class cluster_store {
public:
  template <class T>
  using callback = std::function<void(caf::expected<T>)>;

  /// `dsn` empty means libpq's PG* variables. Connects on its thread.
  explicit cluster_store(std::string dsn);
  ~cluster_store();

  cluster_store(const cluster_store&) = delete;
  cluster_store& operator=(const cluster_store&) = delete;

  /// Blocking, at start, from the main thread, after the migrations: writes
  /// the partition count if none is recorded, else compares it
  /// (errc::validation_failed naming both counts when they differ); makes
  /// sure cluster_partitions has rows 0..partitions-1 (epoch 0, owner '');
  /// moves section_no_seq past every section number in use.
  static caf::error init(const std::string& dsn, uint32_t partitions);

  /// Raises the epoch of each partition by one and makes `address` its
  /// owner, in one transaction, locking the rows in partition order (as
  /// rsv_fence does). A batch that passed rsv_fence holds its rows until it
  /// commits, so this waits for it, with lock_timeout, and tries again up
  /// to limits::cluster_bump_attempts_max times before it answers
  /// errc::unavailable. Answers partition -> new epoch; a partition without
  /// a row is errc::validation_failed and raises nothing.
  void bump(std::vector<uint32_t> partitions, std::string address,
            callback<std::map<uint32_t, uint64_t>> done);

  /// Every partition row, by partition.
  void owners(callback<std::vector<partition_owner>> done);

  /// The events of these partitions (among `partition_count`) with their
  /// sections, layouts and waiting rooms, and every recorded hold of those
  /// sections, read in one REPEATABLE READ snapshot. Customers and
  /// idempotency records are left empty; next_section_no is past the
  /// sections read (a cluster takes numbers from reserve_section_nos).
  void load_partitions(std::vector<uint32_t> partitions,
                       uint32_t partition_count,
                       callback<recovered_state> done);

  /// `n` fresh section numbers from section_no_seq, at most
  /// limits::sections_per_event_max.
  void reserve_section_nos(std::size_t n, callback<std::vector<uint32_t>> done);

  /// The customer with this email (normalised by the caller, as stored).
  void find_customer(std::string email,
                     callback<std::optional<customer_record>> done);

  /// The customer's record for this key, if younger than
  /// limits::idempotency_ttl_seconds (what a node replays).
  void find_idempotency(std::string customer_id, std::string key,
                        callback<std::optional<idempotency_record>> done);

  /// The customer's bookings, confirmed and cancelled, across all events,
  /// as `GET /v1/bookings` shows them, sorted by listed_before.
  void list_bookings(std::string customer_id,
                     callback<std::vector<booking_view>> done);

  /// Every event with its seat counts, by starts_at, then id.
  void list_events(callback<std::vector<event_summary>> done);

  /// ok while the connection works; down after it failed until it works
  /// again.
  service_state health() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace rsv::persistence
