#pragma once

#include "actors/protocol.hpp"
#include "actors/runtime.hpp"
#include "actors/section_state.hpp"

#include <caf/typed_event_based_actor.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

/// The section actor's class, private to actors/: the rest of the node spawns
/// it with spawn_section (runtime.hpp) and talks to it through the messages
/// of `section_actor` (protocol.hpp).
namespace rsv::actors {

/// What every incarnation of one section is built on; the registry keeps it
/// for the section's restarts.
struct section_setup {
  std::shared_ptr<section_entry> entry; // its layout is set
  runtime_deps deps;
  std::shared_ptr<const customer_shards> shards;
  int64_t hold_ttl_ms = 0;
  /// Whether customer shards count seats against a per-customer limit, so
  /// that seats given back must be told to them.
  bool customer_limit = false;
};

/// One section actor: owns a section's seats, holds and bookings (its
/// `section_memory`), its expiry timer, and whether its memory may be ahead
/// of the store. Spawned and supervised by the registry; runs on a CAF
/// scheduler thread and never blocks (the store is asynchronous). One member
/// function per message; `serve` is the opening and closing every request
/// shares, `finish` what runs after every message.
///
/// Reconciling after a failed write: the section reloads itself from the
/// store rather than retrying the write. A failed commit may still have
/// committed (the connection can die after COMMIT reached the server), and
/// later changes in memory may build on the failed one; only the store knows
/// which, so the store is asked. Until the reload arrives the section is
/// stale and answers every request 503, so that nothing is told from memory
/// that the store may lack. The store orders the load after every write the
/// section queued before it, so the load sees their outcome.
///
/// While the store cannot answer, a failed load is retried when a request
/// arrives (the section is wanted; at most one load per `request_gap_ms`) and
/// on a backoff timer (for idle sections), never more than one load at once.
///
/// Acknowledgements: the store's thread only posts its verdict on a write
/// (write_acknowledged, in the section's commit order); what follows the
/// write (the change sink, the counters, the client's answer) runs on this
/// actor, or at once when the store answered inside `append` (the memory
/// store). The answer is rendered on the client's I/O thread
/// (http/api_context.hpp), not here. A section killed before its
/// acknowledgement arrives cannot run it: it runs where the message dies, so
/// a committed write is still answered 2xx (write_followup in protocol.hpp).
///
/// A restarted section (its predecessor died, see registry_actor.cpp) starts
/// stale, with its predecessor's memory, which it never serves from: it
/// loads itself from the store before it answers anything, and corrects the
/// gauge and the customers' counts by the difference, exactly as after a
/// failed write. A failed section (too many restarts) answers 503 only.
class section_actor_impl : public section_actor::base {
public:
  section_actor_impl(caf::actor_config& config, section_setup setup,
                     std::shared_ptr<section_memory> memory,
                     section_start start);

  const char* name() const override { return "section"; }

protected:
  behavior_type make_behavior() override;

private:
  template <class View>
  using applied_result = caf::expected<section_state::applied<View>>;
  template <class View>
  using notify_fn = std::function<void(const View&)>;
  template <class Request>
  using request_handler = void (section_actor_impl::*)(const Request&);

  // -- requests (section_actor.cpp) -----------------------------------------

  /// The opening and closing of every request: counts it taken from the
  /// mailbox, refuses it while stale or failed, runs `handle`, finishes.
  template <class Request>
  void serve(const Request& req, request_handler<Request> handle);
  /// Why the section answers no request now (unavailable: failed, or stale,
  /// a reload then perhaps started), or no error.
  caf::error refusal();
  // A hold request may carry seats a customer shard counted against the
  // customer's limit: once taken, the section gives back what it refuses.
  // The other requests carry none.
  void disarm_quota_return(const hold_request& req);
  void give_back_quota(const hold_request& req);
  template <class Request>
  void disarm_quota_return(const Request&) {}
  template <class Request>
  void give_back_quota(const Request&) {}

  void hold(const hold_request& req);
  void get_hold(const get_hold_request& req);
  void release_hold(const release_hold_request& req);
  void book(const book_request& req);
  void get_booking(const get_booking_request& req);
  void cancel_booking(const cancel_booking_request& req);
  void seat_map(const seat_map_request& req);

  template <class View>
  void answer(applied_result<View> result, const reply_fn<View>& reply,
              const idempotency_capture_ptr<View>& capture,
              notify_fn<View> notify = {});
  template <class View>
  void answer_ending(uint32_t slot, applied_result<View> result,
                     const reply_fn<View>& reply, notify_fn<View> notify = {});
  template <class View>
  void answer_repeat(uint32_t slot, View view, const reply_fn<View>& reply);
  template <class Request, class FromRecord>
  bool answer_if_forgotten(const Request& req, FromRecord from_record);
  /// Keeps the customer's `GET /v1/bookings` current.
  notify_fn<booking_view> tell_shard(const std::string& customer_id) const;

  // -- after every message (section_actor.cpp) ------------------------------

  void finish();
  void arm_timer();
  void on_expire_tick();

  // -- writes and reloads (section_actor_store.cpp) -------------------------

  void write(seat_change change, bool effects,
             std::function<void(caf::error)> then);
  void commit(seat_change change, std::function<void(caf::error)> then);
  void flush_expired();
  void apply_effects(const seat_change& change);
  void request_reload();
  void reload_if_due();
  void adopt(std::vector<recorded_hold> holds);
  void on_acknowledged(write_followup& followup);
  void on_store_failed();
  void on_reload_timer();
  void on_reloaded(section_reloaded& msg);
  void retry_reload_later(const caf::error& why);

  // -- snapshots (section_actor_store.cpp) ----------------------------------

  void note_written();
  void snapshot_if_due();
  void on_snapshot_written(const snapshot_written& msg);

  section_state& seats() { return *memory_->seats; }
  millis now_ms() const { return setup_.deps.clock->now_ms(); }
  const section_layout& layout() const { return *setup_.entry->layout; }

  section_setup setup_;
  // Shared with the supervisor, which hands it to the next incarnation.
  std::shared_ptr<section_memory> memory_;
  section_start start_;
  bool failed_ = false; // a restart storm: 503 for everything, no reload
  bool timer_pending_ = false;
  millis timer_at_ = 0;         // when the pending timer fires
  bool stale_ = false;          // a write failed; a reload is due
  bool reload_pending_ = false; // a load_section is under way
  millis reload_backoff_ms_ = 0;
  // When the last load failed: a request may start the next one a gap later.
  std::chrono::steady_clock::time_point reload_failed_at_{};
  // When the timer is to retry, after the backoff of the last failed load.
  std::chrono::steady_clock::time_point reload_due_at_{};
  // One reload timer at a time, however many loads failed meanwhile (each
  // request may start one): a timer that fires early waits for the rest.
  bool reload_timer_pending_ = false;
  // With a store that keeps snapshots: writes since the last snapshot was
  // taken, when the next is due (by time), and whether one is in flight.
  uint32_t writes_since_snapshot_ = 0;
  millis snapshot_due_at_ = 0;
  bool snapshot_pending_ = false;
};

} // namespace rsv::actors
