#include "actors/section_actor.hpp"

#include "actors/hold_record.hpp"
#include "core/assert.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace rsv::actors {

namespace {

/// Attaches the answer of an idempotent request to the change that answers
/// it, so that both commit in one transaction.
template <class View>
void attach_idempotency(const idempotency_capture_ptr<View>& capture,
                        const View& view, seat_change& change) {
  if (!capture) return;
  auto record = std::make_shared<idempotency_record>();
  record->customer_id = change.customer_id;
  record->key = capture->key;
  record->fingerprint = capture->fingerprint;
  record->response = capture->render(view);
  record->created_at_ms = change.at_ms;
  change.idempotency = std::move(record);
  capture->written->store(true);
}

caf::error stale_error() {
  return make_error(errc::unavailable,
                    std::string{"this section is reloading from the store; "
                                "retry shortly"});
}

caf::error failed_error() {
  return make_error(errc::unavailable,
                    std::string{"this section failed after too many restarts "
                                "and is out of service until the node "
                                "restarts"});
}

} // namespace

std::shared_ptr<section_memory>
make_section_memory(const std::shared_ptr<const section_layout>& layout,
                    int64_t hold_ttl_ms, std::vector<recorded_hold> recorded,
                    const runtime_deps& deps) {
  auto memory = std::make_shared<section_memory>();
  memory->seats = std::make_unique<section_state>(layout, hold_ttl_ms,
                                                  deps.hold_retention_ms);
  memory->seats->restore(std::move(recorded));
  deps.metrics->holds_active.Increment(
      static_cast<double>(memory->seats->active_holds()));
  return memory;
}

caf::actor spawn_section(caf::actor_system& system,
                         std::shared_ptr<section_entry> entry,
                         const runtime_deps& deps,
                         std::shared_ptr<const customer_shards> shards,
                         int64_t hold_ttl_ms, bool customer_limit,
                         std::shared_ptr<section_memory> memory,
                         section_start start) {
  RSV_ASSERT(memory && memory->seats, "a section starts with its memory");
  section_setup setup{std::move(entry), deps, std::move(shards), hold_ttl_ms,
                      customer_limit};
  // The front end sends through an untyped handle (section_entry::actor());
  // the section's messages are checked where it sends them itself.
  return caf::actor_cast<caf::actor>(system.spawn<section_actor_impl>(
      std::move(setup), std::move(memory), start));
}

section_actor_impl::section_actor_impl(caf::actor_config& config,
                                       section_setup setup,
                                       std::shared_ptr<section_memory> memory,
                                       section_start start)
    : section_actor::base(config), setup_(std::move(setup)),
      memory_(std::move(memory)), start_(start),
      failed_(start == section_start::failed) {}

section_actor_impl::behavior_type section_actor_impl::make_behavior() {
  auto metrics = setup_.deps.metrics;
  metrics->section_actors_live.Increment();
  attach_functor([metrics, memory = memory_](const caf::error& reason) {
    metrics->section_actors_live.Decrement();
    // Shut down, not crashed: the section leaves this node (its partition
    // went to another, or the node stops) and its memory with it, so its
    // part of the node's gauges goes too. A crashed section's memory goes
    // to its next incarnation, gauges and all. The actor has terminated:
    // nothing changes the memory any more.
    if (reason != caf::exit_reason::user_shutdown) return;
    metrics->holds_active.Decrement(
        static_cast<double>(memory->seats->active_holds()));
    metrics->hold_records.Decrement(
        static_cast<double>(memory->records_counted));
  });
  // A restart reloads before it serves: its predecessor's memory may be
  // ahead of the store (writes in flight when it died) or behind it. A
  // store that keeps nothing (--store memory) has nothing to reload, and
  // its acknowledgements came at once, so there the predecessor's memory
  // is the truth and is served on.
  if (start_ == section_start::restarted && setup_.deps.store->durable()) {
    spdlog::info("section {} of event {} restarted: reloading from the "
                 "store before it serves",
                 layout().section_id, layout().event_id);
    stale_ = true;
    request_reload();
  }
  // Every section of a store that keeps snapshots has one soon after it
  // starts: recovery reads the journal only past them.
  note_written();
  finish();
  using self = section_actor_impl;
  return {
      [this](const hold_request& req) { serve(req, &self::hold); },
      [this](const get_hold_request& req) { serve(req, &self::get_hold); },
      [this](const release_hold_request& req) {
        serve(req, &self::release_hold);
      },
      [this](const book_request& req) { serve(req, &self::book); },
      [this](const get_booking_request& req) {
        serve(req, &self::get_booking);
      },
      [this](const cancel_booking_request& req) {
        serve(req, &self::cancel_booking);
      },
      [this](const seat_map_request& req) { serve(req, &self::seat_map); },
      [this](expire_tick_atom) { on_expire_tick(); },
      [this](write_acknowledged& msg) { on_acknowledged(*msg.followup); },
      [this](reload_atom) { on_reload_timer(); },
      [this](section_reloaded& msg) { on_reloaded(msg); },
      [this](const snapshot_written& msg) { on_snapshot_written(msg); },
  };
}

// -- requests -----------------------------------------------------------------

template <class Request>
void section_actor_impl::serve(const Request& req,
                               request_handler<Request> handle) {
  setup_.entry->request_taken();
  disarm_quota_return(req);
  if (auto why = refusal()) {
    // Given back before the answer, so that a client who retries at once
    // is not refused over its limit by seats it never got.
    give_back_quota(req);
    req.reply(std::move(why));
    return;
  }
  (this->*handle)(req);
  finish();
}

// Every request of a stale section is answered 503 at once; it does not wait
// for the reload it may start.
caf::error section_actor_impl::refusal() {
  if (failed_) return failed_error();
  if (!stale_) return {};
  reload_if_due();
  return stale_error();
}

void section_actor_impl::disarm_quota_return(const hold_request& req) {
  // Taken: from here on this actor gives back what it must.
  if (req.unclaimed_quota) req.unclaimed_quota->disarm();
}

void section_actor_impl::give_back_quota(const hold_request& req) {
  if (!req.quota_reserved) return;
  auto count = req.seat_ids.empty()
                   ? req.quantity
                   : static_cast<uint32_t>(req.seat_ids.size());
  // Anonymous, like every message of a section to a shard: a typed actor
  // sends only to typed ones, and the shard answers nothing.
  caf::anon_send(setup_.shards->for_customer(req.customer_id),
                 adjust_quota{req.customer_id, layout().event_id,
                              -static_cast<int64_t>(count)});
}

void section_actor_impl::hold(const hold_request& req) {
  auto now = now_ms();
  auto result = req.seat_ids.empty()
                    ? seats().hold_best(req.customer_id, req.quantity, now)
                    : seats().hold_seats(req.customer_id, req.seat_ids, now);
  if (!result) give_back_quota(req);
  answer(std::move(result), req.reply, req.idempotency);
}

void section_actor_impl::get_hold(const get_hold_request& req) {
  seats().expire_due(now_ms());
  if (answer_if_forgotten(req, forgotten_hold::get)) return;
  req.reply(seats().get_hold(req.customer_id, req.slot));
}

void section_actor_impl::release_hold(const release_hold_request& req) {
  if (answer_if_forgotten(req, forgotten_hold::release)) return;
  answer_ending(req.slot,
                seats().release_hold(req.customer_id, req.slot, now_ms()),
                req.reply);
}

void section_actor_impl::book(const book_request& req) {
  if (answer_if_forgotten(req, forgotten_hold::book)) return;
  answer(seats().book(req.customer_id, req.slot, now_ms()), req.reply,
         req.idempotency, tell_shard(req.customer_id));
}

void section_actor_impl::get_booking(const get_booking_request& req) {
  seats().expire_due(now_ms());
  auto from_record = [](const section_layout& layout,
                        const std::string& customer,
                        const std::optional<recorded_hold>& record, millis) {
    return forgotten_hold::get_booking(layout, customer, record);
  };
  if (answer_if_forgotten(req, from_record)) return;
  req.reply(seats().get_booking(req.customer_id, req.slot));
}

void section_actor_impl::cancel_booking(const cancel_booking_request& req) {
  auto from_record = [](const section_layout& layout,
                        const std::string& customer,
                        const std::optional<recorded_hold>& record, millis) {
    return forgotten_hold::cancel_booking(layout, customer, record);
  };
  if (answer_if_forgotten(req, from_record)) return;
  answer_ending(req.slot,
                seats().cancel_booking(req.customer_id, req.slot, now_ms()),
                req.reply, tell_shard(req.customer_id));
}

void section_actor_impl::seat_map(const seat_map_request& req) {
  auto& state = seats();
  state.expire_due(now_ms());
  // The statuses are copied here (a byte per seat); rendering them is the
  // front end's work, off this actor (http/seat_maps).
  seat_map_snapshot snapshot{state.version(), std::nullopt};
  if (req.known_version != state.version()) snapshot.map = state.seat_map();
  req.reply(std::move(snapshot));
}

// Answers an operation: errors and no-op outcomes at once, changes only after
// the store acknowledged them. `notify` runs after the commit and before the
// answer, so that what it tells is visible to the client's next request.
// `capture`, when set, puts the request's idempotency record into the
// change's transaction.
template <class View>
void section_actor_impl::answer(applied_result<View> result,
                                const reply_fn<View>& reply,
                                const idempotency_capture_ptr<View>& capture,
                                notify_fn<View> notify) {
  if (!result) {
    reply(std::move(result.error()));
    return;
  }
  if (!result->change) {
    reply(std::move(result->view));
    return;
  }
  attach_idempotency(capture, result->view, *result->change);
  commit(std::move(*result->change),
         [reply, notify = std::move(notify),
          view = std::move(result->view)](caf::error err) mutable {
           if (err) {
             reply(std::move(err));
             return;
           }
           if (notify) notify(view);
           reply(std::move(view));
         });
}

// A release or a cancellation: a repeated one changes nothing in memory but
// is answered as answer_repeat says.
template <class View>
void section_actor_impl::answer_ending(uint32_t slot,
                                       applied_result<View> result,
                                       const reply_fn<View>& reply,
                                       notify_fn<View> notify) {
  if (result && !result->change)
    answer_repeat(slot, std::move(result->view), reply);
  else
    answer(std::move(result), reply, {}, std::move(notify));
}

// A repeated release or cancellation changes nothing in memory, but the write
// that ended the hold may not have committed yet (or may have failed, the
// section then reloading): its state is written again, with no other effect
// (counts, limits and notifications followed the first time), and the answer
// waits for that commit. A 2xx is never given for a state PostgreSQL may not
// have.
template <class View>
void section_actor_impl::answer_repeat(uint32_t slot, View view,
                                       const reply_fn<View>& reply) {
  write(seats().restated(slot, now_ms()), false,
        [reply, view = std::move(view)](caf::error err) mutable {
          if (err)
            reply(std::move(err));
          else
            reply(std::move(view));
        });
}

// A hold this section forgot (it ended longer than the retention ago): the
// store's record answers, read after the section's queued writes, so it has
// the write that ended the hold. `from_record(layout, customer, record, now)`
// (a forgotten_hold function) turns the record into the answer; it runs on
// the store's thread and touches only the immutable layout. A failed read is
// answered with its error.
template <class Request, class FromRecord>
bool section_actor_impl::answer_if_forgotten(const Request& req,
                                             FromRecord from_record) {
  if (!seats().forgotten(req.slot)) return false;
  setup_.deps.store->load_hold(
      layout().section_no, req.slot,
      [reply = req.reply, customer = req.customer_id,
       layout = setup_.entry->layout, from_record,
       now = now_ms()](caf::expected<std::optional<recorded_hold>> read) {
        if (!read)
          reply(std::move(read.error()));
        else
          reply(from_record(*layout, customer, *read, now));
      });
  return true;
}

auto section_actor_impl::tell_shard(const std::string& customer_id) const
    -> notify_fn<booking_view> {
  return [shard = setup_.shards->for_customer(customer_id),
          customer_id](const booking_view& view) {
    caf::anon_send(shard, booking_changed{customer_id, view});
  };
}

// -- after every message ------------------------------------------------------

// Expires what is due, persists it, publishes the counts, keeps the records
// gauge, and arms the timer. A stale or failed section serves nothing from
// memory, so it neither expires nor publishes.
void section_actor_impl::finish() {
  if (stale_ || failed_) return;
  auto& memory = *memory_;
  memory.seats->expire_due(now_ms());
  flush_expired();
  snapshot_if_due();
  setup_.entry->publish(memory.seats->counts());
  auto records = memory.seats->records_in_memory();
  if (records != memory.records_counted) {
    setup_.deps.metrics->hold_records.Increment(
        static_cast<double>(records) -
        static_cast<double>(memory.records_counted));
    memory.records_counted = records;
  }
  arm_timer();
}

// One timer at a time, for the next expiry or the next ended hold to forget,
// whichever is first: every hold of a section has the same TTL, so later
// holds never expire earlier. Re-armed when something earlier comes up (an
// earlier tick that arrives late only runs finish once more).
void section_actor_impl::arm_timer() {
  auto next = seats().next_expiry();
  if (auto forget = seats().next_forget())
    next = next ? std::min(*next, *forget) : *forget;
  if (writes_since_snapshot_ > 0 && !snapshot_pending_)
    next = next ? std::min(*next, snapshot_due_at_) : snapshot_due_at_;
  if (!next) return;
  if (timer_pending_ && timer_at_ <= *next) return;
  auto delay_ms = std::max<millis>(0, *next - now_ms()) + 1;
  timer_pending_ = true;
  timer_at_ = *next;
  delayed_send(this, std::chrono::milliseconds(delay_ms),
               expire_tick_atom::value);
}

void section_actor_impl::on_expire_tick() {
  timer_pending_ = false;
  finish();
}

} // namespace rsv::actors
