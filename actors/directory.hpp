#pragma once

#include "core/model.hpp"

#include <atomic>
#include <caf/actor.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace rsv::actors {

/// One section as the router sees it: the actor that owns it, its layout, and
/// its seat counts, which the actor publishes after every change as one
/// atomic word, so reads of an event's counts need no message at all.
///
/// The actor changes when its supervisor (the registry) restarts a section
/// actor that died; any thread reads the current one with `actor()`, only
/// the registry calls `set_actor`.
struct section_entry {
  std::shared_ptr<const section_layout> layout;
  /// free | held << 21 | booked << 42: 21 bits each hold 0..1,000,000.
  std::atomic<uint64_t> packed_counts{0};
  seat_counts counts() const;
  void publish(seat_counts counts);

  caf::actor actor() const {
    auto current = actor_.load(std::memory_order_acquire);
    return current ? *current : caf::actor{};
  }
  void set_actor(caf::actor next) {
    actor_.store(std::make_shared<const caf::actor>(std::move(next)),
                 std::memory_order_release);
  }

  // The count of requests sent to the actor and not yet taken from its
  // mailbox, which the front end sheds load by. Every request that reaches
  // the actor counts once up before it is sent and once down when a
  // handler takes it (or whoever drops it on the way).

  /// Counts a request that is about to be sent, unless
  /// limits::section_mailbox_max are waiting already: then false, and the
  /// caller answers 503 instead of sending it.
  bool admit_request();
  /// Counts a request that is sent whatever the queue (the front end does
  /// not shed requests on an existing hold or booking).
  void count_request() { queued_.fetch_add(1, std::memory_order_relaxed); }
  /// A counted request was taken from the mailbox, or will never reach it.
  void request_taken() { queued_.fetch_sub(1, std::memory_order_relaxed); }
  /// A new incarnation of the actor: requests counted for the dead one died
  /// with its mailbox (only the registry calls it).
  void restart_count() { queued_.store(0, std::memory_order_relaxed); }
  int64_t requests_waiting() const {
    return queued_.load(std::memory_order_relaxed);
  }

private:
  std::atomic<int64_t> queued_{0};
  std::atomic<std::shared_ptr<const caf::actor>> actor_;
};

/// One event: its definition (rows live in the section layouts) and its
/// sections in the order the event lists them. Immutable once published.
struct event_entry {
  event_def def; // sections' rows are cleared; see section layouts
  std::vector<std::shared_ptr<section_entry>> sections;
  std::unordered_map<std::string, std::size_t> section_index;

  std::shared_ptr<section_entry>
  find_section(const std::string& section_id) const;
  uint32_t seat_count() const;
};

/// An immutable picture of every event and section of the node.
struct directory_snapshot {
  std::unordered_map<std::string, std::shared_ptr<const event_entry>> events;
  /// By starts_at, then id: the order of `GET /v1/events`.
  std::vector<std::shared_ptr<const event_entry>> events_ordered;
  /// Indexed by section_no; hold and booking ids carry it.
  std::vector<std::shared_ptr<section_entry>> sections_by_no;
};

/// The one routing step from ids to owners. Any thread reads the current
/// snapshot without locking; only the registry actor publishes a new one,
/// copy-on-write, when an event is created. A cluster adds owner nodes here.
class directory {
public:
  directory();

  std::shared_ptr<const directory_snapshot> snapshot() const {
    return current_.load(std::memory_order_acquire);
  }

  void publish(std::shared_ptr<const directory_snapshot> next) {
    current_.store(std::move(next), std::memory_order_release);
  }

  std::shared_ptr<const event_entry> find_event(const std::string& id) const;
  std::shared_ptr<section_entry> find_section(uint32_t section_no) const;

private:
  std::atomic<std::shared_ptr<const directory_snapshot>> current_;
};

} // namespace rsv::actors
