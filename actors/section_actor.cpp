#include "actors/hold_record.hpp"
#include "actors/runtime.hpp"
#include "actors/section_state.hpp"
#include "core/assert.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace rsv {

namespace {

/// The state of a section actor: the seats, a flag for its one timer, and
/// whether its memory may be ahead of the store.
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
/// A restarted section (its predecessor died, see registry_actor.cpp) starts
/// stale, with its predecessor's memory, which it never serves from: it
/// loads itself from the store before it answers anything, and corrects the
/// gauge and the customers' counts by the difference, exactly as after a
/// failed write. A failed section (too many restarts) answers 503 only.
struct section_actor_state {
  // Shared with the supervisor, which hands it to the next incarnation.
  std::shared_ptr<section_memory> memory;
  bool failed = false; // a restart storm: 503 for everything, no reload
  bool timer_pending = false;
  millis timer_at = 0;         // when the pending timer fires
  bool stale = false;          // a write failed; a reload is due
  bool reload_pending = false; // a load_section is under way
  millis reload_backoff_ms = 0;
  // When the last load failed: a request may start the next one a gap later.
  std::chrono::steady_clock::time_point reload_failed_at{};
  // When the timer is to retry, after the backoff of the last failed load.
  std::chrono::steady_clock::time_point reload_due_at{};
  // One reload timer at a time, however many loads failed meanwhile (each
  // request may start one): a timer that fires early waits for the rest.
  bool reload_timer_pending = false;
  static inline const char* name = "section";
};

using section_self = caf::stateful_actor<section_actor_state>;

/// What a committed change means outside the section: the change sink and
/// the counters of committed changes. Runs in the store's acknowledgement,
/// which may be on another thread, so it only touches thread-safe things.
struct after_commit {
  runtime_deps deps;

  void operator()(const seat_change& change) const {
    deps.sink->publish(change);
    auto& m = *deps.metrics;
    switch (change.kind) {
    case change_kind::hold_created:
      m.holds_created.Increment();
      break;
    case change_kind::hold_released:
      m.holds_released.Increment();
      break;
    case change_kind::hold_expired:
      m.holds_expired.Increment();
      break;
    case change_kind::booking_confirmed:
      m.bookings_confirmed.Increment();
      break;
    case change_kind::booking_cancelled:
      m.bookings_cancelled.Increment();
      break;
    }
  }
};

/// What a change means at once, when it is applied in memory: the active
/// holds gauge and the customer's limit follow memory, and a reload after a
/// failed write corrects both by the difference it finds.
struct on_apply {
  runtime_deps deps;
  std::shared_ptr<const customer_shards> shards;
  bool customer_limit = false;

  void operator()(const seat_change& change) const {
    auto& active = deps.metrics->holds_active;
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
    if (gives_back && customer_limit)
      caf::anon_send(
          shards->for_customer(change.customer_id),
          adjust_quota{change.customer_id, change.event_id,
                       -static_cast<int64_t>(change.seat_indexes.size())});
  }
};

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
  auto behavior = [entry, deps, shards, hold_ttl_ms, customer_limit, memory,
                   start](section_self* self) -> caf::behavior {
    self->state.memory = memory;
    self->state.failed = start == section_start::failed;
    deps.metrics->section_actors_live.Increment();
    auto metrics = deps.metrics;
    self->attach_functor([metrics, memory](const caf::error& reason) {
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
    after_commit committed{deps};
    on_apply applied{deps, shards, customer_limit};

    // Persists a change; `then` runs with the store's verdict. With
    // `effects`, the change is applied first (gauges, customer limits) and
    // the counts published, so that a client that reads the event right
    // after its answer sees its own change, and a committed change is told
    // to the change sink. A restated change has neither: they followed the
    // first time. A failed write makes the section stale; a fenced one gives
    // its partition up.
    auto write = [self, entry, deps, committed,
                  applied](seat_change change, bool effects,
                           std::function<void(caf::error)> then) {
      if (effects) {
        applied(change);
        entry->publish(self->state.memory->seats->counts());
      }
      auto me = caf::actor_cast<caf::actor>(self);
      deps.store->append(change, [committed, change, me, effects,
                                  on_fenced = deps.on_fenced,
                                  then = std::move(then)](caf::error err) {
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
          caf::anon_send(me, store_failed_atom::value);
        }
        then(std::move(err));
      });
    };
    auto commit = [write](seat_change change,
                          std::function<void(caf::error)> then) {
      write(std::move(change), true, std::move(then));
    };

    // Persists the holds that expired before or during the last operation.
    // No client waits for these; a failed one makes the section reload.
    auto flush_expired = [self, commit] {
      for (auto& change : self->state.memory->seats->take_expired())
        commit(std::move(change), [](caf::error) {});
    };

    // One timer at a time, for the earliest active expiry: every hold of a
    // section has the same TTL, so later holds never expire earlier.
    // One timer for the next expiry or the next ended hold to forget,
    // whichever is first; re-armed when something earlier comes up (an
    // earlier tick that arrives late only runs finish once more).
    auto arm_timer = [self, deps] {
      auto& seats = *self->state.memory->seats;
      auto next = seats.next_expiry();
      if (auto forget = seats.next_forget())
        next = next ? std::min(*next, *forget) : *forget;
      if (!next) return;
      if (self->state.timer_pending && self->state.timer_at <= *next) return;
      auto delay_ms = std::max<millis>(0, *next - deps.clock->now_ms()) + 1;
      self->state.timer_pending = true;
      self->state.timer_at = *next;
      self->delayed_send(self, std::chrono::milliseconds(delay_ms),
                         expire_tick_atom::value);
    };

    // After every message: expire what is due, publish counts.
    auto finish = [self, entry, deps, flush_expired, arm_timer] {
      if (self->state.stale || self->state.failed) return;
      auto& mem = *self->state.memory;
      mem.seats->expire_due(deps.clock->now_ms());
      flush_expired();
      entry->publish(mem.seats->counts());
      auto records = mem.seats->records_in_memory();
      if (records != mem.records_counted) {
        deps.metrics->hold_records.Increment(
            static_cast<double>(records) -
            static_cast<double>(mem.records_counted));
        mem.records_counted = records;
      }
      arm_timer();
    };

    // Answers an operation: errors and no-op outcomes at once, changes only
    // after the store acknowledged them. `notify` runs after the commit and
    // before the answer, so that what it tells is visible to the client's
    // next request. `capture`, when set, puts the request's idempotency
    // record into the change's transaction.
    auto answer = [commit](auto result, auto reply, auto notify,
                           const auto& capture) {
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
             [reply, notify,
              view = std::move(result->view)](caf::error err) mutable {
               if (err) {
                 reply(std::move(err));
                 return;
               }
               notify(view);
               reply(std::move(view));
             });
    };
    // A repeated release or cancellation changes nothing in memory, but the
    // write that ended the hold may not have committed yet (or may have
    // failed, the section then reloading): its state is written again, with
    // no other effect (counts, limits and notifications followed the first
    // time), and the answer waits for that commit. A 2xx is never given for
    // a state PostgreSQL may not have.
    auto answer_repeat = [self, deps, write](uint32_t slot, auto view,
                                             auto reply) {
      write(self->state.memory->seats->restated(slot, deps.clock->now_ms()),
            false, [reply, view = std::move(view)](caf::error err) mutable {
              if (err)
                reply(std::move(err));
              else
                reply(std::move(view));
            });
    };
    auto nothing = [](const auto&) {};
    const idempotency_capture_ptr<hold_view> no_hold_capture;
    const idempotency_capture_ptr<booking_view> no_booking_capture;
    // Keeps the customer's `GET /v1/bookings` current.
    auto tell_shard = [shards](const std::string& customer_id) {
      return [shard = shards->for_customer(customer_id),
              customer_id](const booking_view& view) {
        caf::anon_send(shard, booking_changed{customer_id, view});
      };
    };

    // A hold this section forgot (it ended longer than the retention ago):
    // the store's record answers, read after the section's queued writes,
    // so it has the write that ended the hold. `respond` turns the record
    // into the answer; it runs on the store's thread and touches only the
    // immutable layout.
    auto from_store = [entry, deps](uint32_t slot, auto respond) {
      deps.store->load_hold(
          entry->layout->section_no, slot,
          [respond = std::move(respond), layout = entry->layout](
              caf::expected<std::optional<recorded_hold>> read) {
            respond(*layout, std::move(read));
          });
    };
    // Whether `slot` is forgotten; if so, answers it through the store.
    // `answer_record(layout, customer, record, now)` is a forgotten_hold
    // function; a failed read is answered with its error.
    auto forgotten = [self, deps, from_store, finish](const auto& req,
                                                      auto answer_record) {
      if (!self->state.memory->seats->forgotten(req.slot)) return false;
      finish();
      auto now = deps.clock->now_ms();
      from_store(req.slot,
                 [reply = req.reply, customer = req.customer_id, answer_record,
                  now](const section_layout& layout,
                       caf::expected<std::optional<recorded_hold>> read) {
                   if (!read)
                     reply(std::move(read.error()));
                   else
                     reply(answer_record(layout, customer, *read, now));
                 });
      return true;
    };

    auto request_reload = [self, entry, deps] {
      RSV_ASSERT(!self->state.reload_pending,
                 "at most one load of a section at a time");
      self->state.reload_pending = true;
      auto me = caf::actor_cast<caf::actor>(self);
      deps.store->load_section(
          entry->layout->section_no,
          [me](caf::expected<std::vector<recorded_hold>> holds) {
            caf::anon_send(me, section_reloaded{std::move(holds)});
          });
    };

    // Swaps in the recorded state and corrects, by the difference, what
    // followed memory: the active holds gauge, the customers' limits and
    // their bookings lists.
    auto adopt = [self, entry, deps, shards, hold_ttl_ms,
                  customer_limit](std::vector<recorded_hold> holds) {
      auto fresh = std::make_unique<section_state>(entry->layout, hold_ttl_ms,
                                                   deps.hold_retention_ms);
      fresh->restore(std::move(holds));
      auto& old = *self->state.memory->seats;
      deps.metrics->holds_active.Increment(
          static_cast<double>(fresh->active_holds()) -
          static_cast<double>(old.active_holds()));
      if (customer_limit) {
        auto before = old.seats_by_customer();
        auto after = fresh->seats_by_customer();
        for (const auto& [customer, seats] : before)
          after[customer] -= seats;
        for (const auto& [customer, delta] : after)
          if (delta != 0)
            caf::anon_send(
                shards->for_customer(customer),
                adjust_quota{customer, entry->layout->event_id, delta});
      }
      for (auto& [customer, booking] : fresh->bookings())
        caf::anon_send(shards->for_customer(customer),
                       booking_changed{customer, std::move(booking)});
      self->state.memory->seats = std::move(fresh);
    };

    // A request to a stale section means a customer wants it now: rather
    // than leave them 503 until the timer (up to its maximum backoff after
    // the store is back), load at once, unless a load is under way or the
    // last one failed less than a gap ago, so that a down store sees at most
    // one load per section per gap however many requests arrive.
    auto reload_if_due = [self, deps, request_reload] {
      auto& st = self->state;
      if (st.reload_pending) return;
      auto gap = std::chrono::milliseconds(deps.reload.request_gap_ms);
      if (std::chrono::steady_clock::now() - st.reload_failed_at < gap) return;
      request_reload();
    };

    // Every request of a stale section is answered 503 at once; it does not
    // wait for the reload it may start.
    auto refuse_if_stale = [self, reload_if_due](const auto& reply) {
      if (self->state.failed) {
        reply(failed_error());
        return true;
      }
      if (!self->state.stale) return false;
      reply(stale_error());
      reload_if_due();
      return true;
    };

    // A restart reloads before it serves: its predecessor's memory may be
    // ahead of the store (writes in flight when it died) or behind it. A
    // store that keeps nothing (--store memory) has nothing to reload, and
    // its acknowledgements came at once, so there the predecessor's memory
    // is the truth and is served on.
    if (start == section_start::restarted && deps.store->durable()) {
      spdlog::info("section {} of event {} restarted: reloading from the "
                   "store before it serves",
                   entry->layout->section_id, entry->layout->event_id);
      self->state.stale = true;
      request_reload();
    }
    finish();
    return {
        [=](hold_request& req) {
          entry->request_taken();
          // Taken: from here on this handler gives back what it must.
          if (req.unclaimed_quota) req.unclaimed_quota->disarm();
          auto count = req.seat_ids.empty()
                           ? req.quantity
                           : static_cast<uint32_t>(req.seat_ids.size());
          auto give_back = [&] {
            if (req.quota_reserved)
              self->send(shards->for_customer(req.customer_id),
                         adjust_quota{req.customer_id, entry->layout->event_id,
                                      -static_cast<int64_t>(count)});
          };
          if (refuse_if_stale(req.reply)) {
            give_back();
            return;
          }
          auto now = deps.clock->now_ms();
          auto& seats = *self->state.memory->seats;
          auto result =
              req.seat_ids.empty()
                  ? seats.hold_best(req.customer_id, req.quantity, now)
                  : seats.hold_seats(req.customer_id, req.seat_ids, now);
          if (!result) give_back();
          answer(std::move(result), req.reply, nothing, req.idempotency);
          finish();
        },
        [=](get_hold_request& req) {
          entry->request_taken();
          if (refuse_if_stale(req.reply)) return;
          self->state.memory->seats->expire_due(deps.clock->now_ms());
          if (forgotten(req, forgotten_hold::get)) return;
          req.reply(
              self->state.memory->seats->get_hold(req.customer_id, req.slot));
          finish();
        },
        [=](release_hold_request& req) {
          entry->request_taken();
          if (refuse_if_stale(req.reply)) return;
          if (forgotten(req, forgotten_hold::release)) return;
          auto released = self->state.memory->seats->release_hold(
              req.customer_id, req.slot, deps.clock->now_ms());
          if (released && !released->change)
            answer_repeat(req.slot, std::move(released->view), req.reply);
          else
            answer(std::move(released), req.reply, nothing, no_hold_capture);
          finish();
        },
        [=](book_request& req) {
          entry->request_taken();
          if (refuse_if_stale(req.reply)) return;
          auto refuse_booking = [](const section_layout& layout,
                                   const std::string& customer,
                                   const std::optional<recorded_hold>& record,
                                   millis now) -> caf::expected<booking_view> {
            return forgotten_hold::book(layout, customer, record, now);
          };
          if (forgotten(req, refuse_booking)) return;
          answer(self->state.memory->seats->book(req.customer_id, req.slot,
                                                 deps.clock->now_ms()),
                 req.reply, tell_shard(req.customer_id), req.idempotency);
          finish();
        },
        [=](get_booking_request& req) {
          entry->request_taken();
          if (refuse_if_stale(req.reply)) return;
          self->state.memory->seats->expire_due(deps.clock->now_ms());
          auto read_booking =
              [](const section_layout& layout, const std::string& customer,
                 const std::optional<recorded_hold>& record, millis) {
                return forgotten_hold::get_booking(layout, customer, record);
              };
          if (forgotten(req, read_booking)) return;
          req.reply(self->state.memory->seats->get_booking(req.customer_id,
                                                           req.slot));
          finish();
        },
        [=](cancel_booking_request& req) {
          entry->request_taken();
          if (refuse_if_stale(req.reply)) return;
          auto cancel_recorded =
              [](const section_layout& layout, const std::string& customer,
                 const std::optional<recorded_hold>& record, millis) {
                return forgotten_hold::cancel_booking(layout, customer, record);
              };
          if (forgotten(req, cancel_recorded)) return;
          auto cancelled = self->state.memory->seats->cancel_booking(
              req.customer_id, req.slot, deps.clock->now_ms());
          if (cancelled && !cancelled->change)
            answer_repeat(req.slot, std::move(cancelled->view), req.reply);
          else
            answer(std::move(cancelled), req.reply, tell_shard(req.customer_id),
                   no_booking_capture);
          finish();
        },
        [=](seat_map_request& req) {
          entry->request_taken();
          if (refuse_if_stale(req.reply)) return;
          auto& seats = *self->state.memory->seats;
          seats.expire_due(deps.clock->now_ms());
          // The statuses are copied here (a byte per seat); rendering them
          // is the front end's work, off this actor (http/seat_maps).
          seat_map_snapshot snapshot{seats.version(), std::nullopt};
          if (req.known_version != seats.version())
            snapshot.map = seats.seat_map();
          req.reply(std::move(snapshot));
          finish();
        },
        [=](expire_tick_atom) {
          self->state.timer_pending = false;
          finish();
        },
        [=](store_failed_atom) {
          // A reload is already coming, or there is nothing to reload for.
          if (self->state.stale || self->state.failed) return;
          spdlog::warn("section {} of event {} reloads from the store after a "
                       "failed write",
                       entry->layout->section_id, entry->layout->event_id);
          self->state.stale = true;
          self->state.reload_backoff_ms = 0;
          deps.metrics->section_reloads.Increment();
          request_reload();
        },
        [=](reload_atom) {
          auto& st = self->state;
          st.reload_timer_pending = false;
          // Not stale: reloaded meanwhile. A load under way: its failure
          // arms the timer again.
          if (!st.stale || st.reload_pending) return;
          auto now = std::chrono::steady_clock::now();
          if (now < st.reload_due_at) {
            // A request's load failed after this timer was armed.
            st.reload_timer_pending = true;
            self->delayed_send(self, st.reload_due_at - now,
                               reload_atom::value);
            return;
          }
          request_reload();
        },
        [=](section_reloaded& msg) {
          auto& st = self->state;
          st.reload_pending = false;
          if (!msg.holds) {
            const auto& policy = deps.reload;
            st.reload_backoff_ms = std::clamp<millis>(st.reload_backoff_ms * 2,
                                                      policy.backoff_first_ms,
                                                      policy.backoff_max_ms);
            auto backoff = std::chrono::milliseconds(st.reload_backoff_ms);
            st.reload_failed_at = std::chrono::steady_clock::now();
            st.reload_due_at = st.reload_failed_at + backoff;
            spdlog::warn("section {} of event {}: reload failed, again at the "
                         "next request or in {} ms: {}",
                         entry->layout->section_id, entry->layout->event_id,
                         st.reload_backoff_ms, describe(msg.holds.error()));
            if (!st.reload_timer_pending) {
              st.reload_timer_pending = true;
              self->delayed_send(self, backoff, reload_atom::value);
            }
            return;
          }
          adopt(std::move(*msg.holds));
          self->state.stale = false;
          spdlog::info("section {} of event {} reloaded from the store",
                       entry->layout->section_id, entry->layout->event_id);
          finish();
        },
    };
  };
  return system.spawn(behavior);
}

} // namespace rsv
