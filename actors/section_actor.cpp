#include "actors/runtime.hpp"
#include "actors/section_state.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace rsv {

namespace {

/// The state of a section actor: the seats and a flag for its one timer.
struct section_actor_state {
  std::unique_ptr<section_state> seats;
  bool timer_pending = false;
  static inline const char* name = "section";
};

using section_self = caf::stateful_actor<section_actor_state>;

/// What a committed change means outside the section: metrics, the
/// customer's limit, the change sink. Runs in the store's acknowledgement,
/// which may be on another thread, so it only touches thread-safe things.
struct after_commit {
  runtime_deps deps;
  std::shared_ptr<const customer_shards> shards;
  bool customer_limit = false;

  void operator()(const seat_change& change) const {
    deps.sink->publish(change);
    auto& m = *deps.metrics;
    auto seats = static_cast<uint32_t>(change.seat_indexes.size());
    bool gives_back = false;
    switch (change.kind) {
    case change_kind::hold_created:
      m.holds_created.Increment();
      m.holds_active.Increment();
      break;
    case change_kind::hold_released:
      m.holds_released.Increment();
      m.holds_active.Decrement();
      gives_back = true;
      break;
    case change_kind::hold_expired:
      m.holds_expired.Increment();
      m.holds_active.Decrement();
      gives_back = true;
      break;
    case change_kind::booking_confirmed:
      m.bookings_confirmed.Increment();
      m.holds_active.Decrement();
      break;
    case change_kind::booking_cancelled:
      m.bookings_cancelled.Increment();
      gives_back = true;
      break;
    }
    if (gives_back && customer_limit)
      caf::anon_send(shards->for_customer(change.customer_id),
                     release_quota{change.customer_id, change.event_id, seats});
  }
};

} // namespace

caf::actor spawn_section(caf::actor_system& system,
                         std::shared_ptr<section_entry> entry,
                         const runtime_deps& deps,
                         std::shared_ptr<const customer_shards> shards,
                         int64_t hold_ttl_ms, bool customer_limit,
                         std::vector<recorded_hold> recorded) {
  auto restored =
      std::make_shared<std::vector<recorded_hold>>(std::move(recorded));
  auto behavior = [entry, deps, shards, hold_ttl_ms, customer_limit,
                   restored](section_self* self) -> caf::behavior {
    self->state.seats =
        std::make_unique<section_state>(entry->layout, hold_ttl_ms);
    self->state.seats->restore(std::move(*restored));
    deps.metrics->holds_active.Increment(
        static_cast<double>(self->state.seats->active_holds()));
    // Holds that expired while the node was down expire now (and are
    // written by finish() below).
    self->state.seats->expire_due(deps.clock->now_ms());
    entry->publish(self->state.seats->counts());
    deps.metrics->section_actors_live.Increment();
    auto metrics = deps.metrics;
    self->attach_functor([metrics](const caf::error&) {
      metrics->section_actors_live.Decrement();
    });
    after_commit committed{deps, shards, customer_limit};

    // Persists a change; `then` runs with the store's verdict. The counts are
    // published first, so that a client that reads the event right after
    // its answer sees its own change.
    auto commit = [self, entry, deps,
                   committed](seat_change change,
                              std::function<void(caf::error)> then) {
      entry->publish(self->state.seats->counts());
      deps.store->append(
          change, [committed, change, then = std::move(then)](caf::error err) {
            if (!err)
              committed(change);
            else
              spdlog::warn("store write failed: {} of event {} section {} slot "
                           "{}: {}",
                           to_string(change.kind), change.event_id,
                           change.section_id, change.slot, describe(err));
            then(std::move(err));
          });
    };

    // Persists the holds that expired before or during the last operation.
    // No client waits for these; a failed write is retried by expiry again
    // only in a durable store (the store issue), here it is logged by count.
    auto flush_expired = [self, commit] {
      for (auto& change : self->state.seats->take_expired())
        commit(std::move(change), [](caf::error) {});
    };

    // One timer at a time, for the earliest active expiry: every hold of a
    // section has the same TTL, so later holds never expire earlier.
    auto arm_timer = [self, deps] {
      if (self->state.timer_pending) return;
      if (auto next = self->state.seats->next_expiry()) {
        auto delay_ms = std::max<millis>(0, *next - deps.clock->now_ms()) + 1;
        self->state.timer_pending = true;
        self->delayed_send(self, std::chrono::milliseconds(delay_ms),
                           expire_tick_atom::value);
      }
    };

    // Before and after every message: expire what is due, publish counts.
    auto finish = [self, entry, flush_expired, arm_timer] {
      flush_expired();
      entry->publish(self->state.seats->counts());
      arm_timer();
    };

    // Answers an operation: errors and no-op outcomes at once, changes only
    // after the store acknowledged them. `notify` runs after the commit and
    // before the answer, so that what it tells is visible to the client's
    // next request.
    auto answer = [commit](auto result, auto reply, auto notify) {
      if (!result) {
        reply(std::move(result.error()));
        return;
      }
      if (!result->change) {
        reply(std::move(result->view));
        return;
      }
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
    auto nothing = [](const auto&) {};
    // Keeps the customer's `GET /v1/bookings` current.
    auto tell_shard = [shards](const std::string& customer_id) {
      return [shard = shards->for_customer(customer_id),
              customer_id](const booking_view& view) {
        caf::anon_send(shard, booking_changed{customer_id, view});
      };
    };

    finish();
    return {
        [=](hold_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          auto now = deps.clock->now_ms();
          auto& seats = *self->state.seats;
          auto result =
              req.seat_ids.empty()
                  ? seats.hold_best(req.customer_id, req.quantity, now)
                  : seats.hold_seats(req.customer_id, req.seat_ids, now);
          if (!result && req.quota_reserved) {
            auto count = req.seat_ids.empty()
                             ? req.quantity
                             : static_cast<uint32_t>(req.seat_ids.size());
            self->send(
                shards->for_customer(req.customer_id),
                release_quota{req.customer_id, entry->layout->event_id, count});
          }
          answer(std::move(result), req.reply, nothing);
          finish();
        },
        [=](get_hold_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          self->state.seats->expire_due(deps.clock->now_ms());
          req.reply(self->state.seats->get_hold(req.customer_id, req.slot));
          finish();
        },
        [=](release_hold_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          answer(self->state.seats->release_hold(req.customer_id, req.slot,
                                                 deps.clock->now_ms()),
                 req.reply, nothing);
          finish();
        },
        [=](book_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          answer(self->state.seats->book(req.customer_id, req.slot,
                                         deps.clock->now_ms()),
                 req.reply, tell_shard(req.customer_id));
          finish();
        },
        [=](get_booking_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          self->state.seats->expire_due(deps.clock->now_ms());
          req.reply(self->state.seats->get_booking(req.customer_id, req.slot));
          finish();
        },
        [=](cancel_booking_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          answer(self->state.seats->cancel_booking(req.customer_id, req.slot,
                                                   deps.clock->now_ms()),
                 req.reply, tell_shard(req.customer_id));
          finish();
        },
        [=](seat_map_request& req) {
          entry->queued.fetch_sub(1, std::memory_order_relaxed);
          self->state.seats->expire_due(deps.clock->now_ms());
          req.reply(self->state.seats->seat_map());
          finish();
        },
        [=](expire_tick_atom) {
          self->state.timer_pending = false;
          self->state.seats->expire_due(deps.clock->now_ms());
          finish();
        },
    };
  };
  return system.spawn(behavior);
}

} // namespace rsv
