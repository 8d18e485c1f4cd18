// The section actor's side of the store: its writes and what follows them,
// and its reloads after a failed write or a restart (section_actor.hpp says
// why it reloads rather than retries).

#include "actors/section_actor.hpp"
#include "core/assert.hpp"
#include "persistence/journal_codec.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace rsv::actors {

namespace {

/// What a committed change means outside the section: the change sink and
/// the counters of committed changes. Runs after the store's
/// acknowledgement, on the section actor or, if the section died meanwhile,
/// wherever its write_followup dies, so it only touches thread-safe things.
struct after_commit {
  runtime_deps deps;

  void operator()(const seat_change& change) const {
    deps.sink->publish(change);
    deps.metrics->committed(change.kind).Increment();
  }
};

// The section actor that is inside store::append on this thread, if any. An
// acknowledgement given inside that call (the memory store always; a durable
// store refusing at once, its queue full or closed) is already on the
// actor's thread, and runs there at once, without a round trip through the
// mailbox. An acknowledgement from the store's own thread is posted.
thread_local const section_actor_impl* appending = nullptr;

/// Marks `section` as inside store::append on this thread while it lives.
class appending_scope {
public:
  explicit appending_scope(const section_actor_impl* section)
      : outer_(std::exchange(appending, section)) {}
  ~appending_scope() { appending = outer_; }
  appending_scope(const appending_scope&) = delete;
  appending_scope& operator=(const appending_scope&) = delete;

private:
  const section_actor_impl* outer_;
};

} // namespace

// -- writes -------------------------------------------------------------------

// Persists a change; `then` runs with the store's verdict, on this actor (see
// on_acknowledged; the store's thread only posts the verdict). With
// `effects`, the change is applied first (gauges, customer limits) and the
// counts published, so that a client that reads the event right after its
// answer sees its own change, and a committed change is told to the change
// sink. A restated change has neither: they followed the first time. A
// failed write makes the section stale; a fenced one gives its partition up.
void section_actor_impl::write(seat_change change, bool effects,
                               std::function<void(caf::error)> then) {
  if (effects) {
    apply_effects(change);
    setup_.entry->publish(seats().counts());
  }
  const auto& deps = setup_.deps;
  write_followup::callback followup =
      [committed = after_commit{deps}, change, effects,
       on_fenced = deps.on_fenced,
       then = std::move(then)](const caf::error& err) {
        if (!err) {
          if (effects) committed(change);
        } else {
          // The partition moved to another node: this one stops serving it.
          if (code_of(err) == errc::fenced && on_fenced)
            on_fenced(change.fence.partition);
          spdlog::warn("store write failed: {} of event {} section {} slot "
                       "{}: {}",
                       to_string(change.kind), change.event_id,
                       change.section_id, change.slot, describe(err));
        }
        then(err);
      };
  note_written();
  appending_scope inside{this};
  deps.store->append(
      change, [this, me = caf::actor_cast<section_actor>(this),
               followup = std::move(followup)](caf::error err) mutable {
        if (appending == this) {
          // Inside append, on this actor's own thread: `this` is alive.
          write_followup now{std::move(err), std::move(followup)};
          on_acknowledged(now);
          return;
        }
        caf::anon_send(me, write_acknowledged{std::make_shared<write_followup>(
                               std::move(err), std::move(followup))});
      });
}

void section_actor_impl::commit(seat_change change,
                                std::function<void(caf::error)> then) {
  write(std::move(change), true, std::move(then));
}

// Persists the holds that expired before or during the last operation. No
// client waits for these; a failed one makes the section reload.
void section_actor_impl::flush_expired() {
  for (auto& change : seats().take_expired())
    commit(std::move(change), [](caf::error) {});
}

// What a change means at once, when it is applied in memory: the active
// holds gauge and the customer's limit follow memory, and a reload after a
// failed write corrects both by the difference it finds.
void section_actor_impl::apply_effects(const seat_change& change) {
  auto& active = setup_.deps.metrics->holds_active;
  bool gives_back = false;
  switch (change.kind) {
  case change_kind::hold_created:
    active.Increment();
    break;
  case change_kind::hold_released:
  case change_kind::hold_expired:
    active.Decrement();
    gives_back = true;
    break;
  case change_kind::booking_confirmed:
    active.Decrement();
    break;
  case change_kind::booking_cancelled:
    gives_back = true;
    break;
  }
  if (gives_back && setup_.customer_limit)
    caf::anon_send(
        setup_.shards->for_customer(change.customer_id),
        adjust_quota{change.customer_id, change.event_id,
                     -static_cast<int64_t>(change.seat_indexes.size())});
}

// -- reloads ------------------------------------------------------------------

void section_actor_impl::request_reload() {
  RSV_ASSERT(!reload_pending_, "at most one load of a section at a time");
  reload_pending_ = true;
  setup_.deps.store->load_section(
      layout().section_no,
      [me = caf::actor_cast<section_actor>(this)](
          caf::expected<std::vector<recorded_hold>> holds) {
        caf::anon_send(me, section_reloaded{std::move(holds)});
      });
}

// A request to a stale section means a customer wants it now: rather than
// leave them 503 until the timer (up to its maximum backoff after the store
// is back), load at once, unless a load is under way or the last one failed
// less than a gap ago, so that a down store sees at most one load per section
// per gap however many requests arrive.
void section_actor_impl::reload_if_due() {
  if (reload_pending_) return;
  auto gap = std::chrono::milliseconds(setup_.deps.reload.request_gap_ms);
  if (std::chrono::steady_clock::now() - reload_failed_at_ < gap) return;
  request_reload();
}

// Swaps in the recorded state and corrects, by the difference, what followed
// memory: the active holds gauge, the customers' limits and their bookings
// lists.
void section_actor_impl::adopt(std::vector<recorded_hold> holds) {
  const auto& deps = setup_.deps;
  const auto& shards = *setup_.shards;
  auto fresh = std::make_unique<section_state>(
      setup_.entry->layout, setup_.hold_ttl_ms, deps.hold_retention_ms);
  fresh->restore(std::move(holds));
  auto& old = seats();
  deps.metrics->holds_active.Increment(
      static_cast<double>(fresh->active_holds()) -
      static_cast<double>(old.active_holds()));
  if (setup_.customer_limit) {
    auto before = old.seats_by_customer();
    auto after = fresh->seats_by_customer();
    for (const auto& [customer, counted] : before)
      after[customer] -= counted;
    for (const auto& [customer, delta] : after)
      if (delta != 0)
        caf::anon_send(shards.for_customer(customer),
                       adjust_quota{customer, layout().event_id, delta});
  }
  for (auto& [customer, booking] : fresh->bookings())
    caf::anon_send(shards.for_customer(customer),
                   booking_changed{customer, std::move(booking)});
  memory_->seats = std::move(fresh);
  // What the store had may be older than the section's snapshot.
  note_written();
}

// What follows a write, on this actor, once the store has answered it. A
// failed write makes the section stale first, so that no request after its
// 503 is served from memory the store may lack. Continuations run in the
// order the acknowledgements arrive: the order of the section's commits,
// since the section always writes through one writer of the store, which
// acknowledges in commit order from its one thread; a write the store
// refuses at once is answered at once. If this actor dies before a posted
// acknowledgement arrives, the write_followup runs where its message dies
// (protocol.hpp), without the stale step: the next incarnation reloads.
void section_actor_impl::on_acknowledged(write_followup& followup) {
  if (followup.verdict()) on_store_failed();
  followup.run();
}

void section_actor_impl::on_store_failed() {
  // A reload is already coming, or there is nothing to reload for.
  if (stale_ || failed_) return;
  spdlog::warn("section {} of event {} reloads from the store after a failed "
               "write",
               layout().section_id, layout().event_id);
  stale_ = true;
  reload_backoff_ms_ = 0;
  setup_.deps.metrics->section_reloads.Increment();
  request_reload();
}

void section_actor_impl::on_reload_timer() {
  reload_timer_pending_ = false;
  // Not stale: reloaded meanwhile. A load under way: its failure arms the
  // timer again.
  if (!stale_ || reload_pending_) return;
  auto now = std::chrono::steady_clock::now();
  if (now < reload_due_at_) {
    // A request's load failed after this timer was armed.
    reload_timer_pending_ = true;
    delayed_send(this, reload_due_at_ - now, reload_atom::value);
    return;
  }
  request_reload();
}

void section_actor_impl::on_reloaded(section_reloaded& msg) {
  reload_pending_ = false;
  if (!msg.holds) {
    retry_reload_later(msg.holds.error());
    return;
  }
  adopt(std::move(*msg.holds));
  stale_ = false;
  spdlog::info("section {} of event {} reloaded from the store",
               layout().section_id, layout().event_id);
  finish();
}

// A load failed: the next one starts at a request a gap from now, or at the
// timer after a backoff that doubles with every failure.
void section_actor_impl::retry_reload_later(const caf::error& why) {
  const auto& policy = setup_.deps.reload;
  reload_backoff_ms_ = std::clamp<millis>(
      reload_backoff_ms_ * 2, policy.backoff_first_ms, policy.backoff_max_ms);
  auto backoff = std::chrono::milliseconds(reload_backoff_ms_);
  reload_failed_at_ = std::chrono::steady_clock::now();
  reload_due_at_ = reload_failed_at_ + backoff;
  spdlog::warn("section {} of event {}: reload failed, again at the next "
               "request or in {} ms: {}",
               layout().section_id, layout().event_id, reload_backoff_ms_,
               describe(why));
  if (!reload_timer_pending_) {
    reload_timer_pending_ = true;
    delayed_send(this, backoff, reload_atom::value);
  }
}

// -- snapshots ----------------------------------------------------------------

// With a store that keeps snapshots (the journal): counts a write, and starts
// the interval with the first since the last snapshot. Sections that start
// together do not snapshot together: each takes off up to a quarter of the
// interval, by its number.
void section_actor_impl::note_written() {
  if (!setup_.deps.store->keeps_snapshots()) return;
  if (writes_since_snapshot_++ > 0) return;
  auto interval = setup_.deps.snapshots.interval_ms;
  auto spread =
      static_cast<millis>(layout().section_no) * 997 % (interval / 4 + 1);
  snapshot_due_at_ = now_ms() + interval - spread;
}

// Hands the store a snapshot when enough writes or enough time passed since
// the last, one at a time. Taken after this message's writes were handed to
// the store, so it holds exactly what they and those before them wrote. A
// stale section's memory may be ahead of the store: it waits for its reload.
void section_actor_impl::snapshot_if_due() {
  if (writes_since_snapshot_ == 0 || snapshot_pending_ || stale_ || failed_ ||
      reload_pending_)
    return;
  auto enough = std::max<std::size_t>(setup_.deps.snapshots.writes,
                                      seats().records_in_memory());
  if (writes_since_snapshot_ < enough && now_ms() < snapshot_due_at_) return;
  persistence::journal::section_snapshot snapshot{layout().section_no,
                                                  seats().live_records()};
  auto holds = static_cast<uint32_t>(snapshot.holds.size());
  writes_since_snapshot_ = 0;
  snapshot_pending_ = true;
  setup_.deps.store->put_snapshot(
      layout().section_no, persistence::journal::encode_snapshot(snapshot),
      holds, layout().fence,
      [me = caf::actor_cast<section_actor>(this)](caf::error err) {
        caf::anon_send(me, snapshot_written{std::move(err)});
      });
}

// A refused snapshot changes nothing the section serves (the store may have
// refused it because a write before it failed): the next is due an interval
// from now.
void section_actor_impl::on_snapshot_written(const snapshot_written& msg) {
  snapshot_pending_ = false;
  if (msg.error) {
    spdlog::debug("section {} of event {}: snapshot not written: {}",
                  layout().section_id, layout().event_id, describe(msg.error));
    note_written();
  }
  finish();
}

} // namespace rsv::actors
