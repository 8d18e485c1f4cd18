#include "actors/runtime.hpp"
#include "core/limits.hpp"
#include "persistence/cluster_store.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <unordered_map>

namespace rsv {

namespace {

/// An idempotency key's record: in progress until the request finishes.
struct key_state {
  std::string fingerprint;
  bool finished = false;
  stored_response response;
  millis finished_at_ms = 0;
};

/// Everything the node keeps per customer.
struct customer_data {
  std::unordered_map<std::string, int64_t> seats_by_event; // held + booked
  std::vector<booking_view> bookings; // sorted by listed_before
  std::unordered_map<std::string, key_state> idempotency;
};

struct shard_state {
  std::unordered_map<std::string, customer_data> customers;
  static inline const char* name = "customer_shard";
};

using shard_self = caf::stateful_actor<shard_state>;

constexpr auto purge_interval = std::chrono::seconds(60);

/// When the oldest finished record of `records` is purged (its 24 hours and
/// at most one purge interval later), in whole seconds from `now`, at least 1.
int64_t seconds_until_a_key_expires(
    const std::unordered_map<std::string, key_state>& records, millis now) {
  auto oldest = now;
  for (const auto& [key, record] : records)
    if (record.finished) oldest = std::min(oldest, record.finished_at_ms);
  auto purged_at = oldest + limits::idempotency_ttl_seconds * 1000 +
                   std::chrono::milliseconds(purge_interval).count();
  return std::max<int64_t>(1, (purged_at - now + 999) / 1000);
}

} // namespace

quota_return::~quota_return() {
  if (armed_.load()) caf::anon_send(shard_, std::move(give_back_));
}

caf::actor spawn_customer_shard(caf::actor_system& system,
                                const runtime_deps& deps) {
  auto clock = deps.clock;
  auto store = deps.store;
  auto cluster_db = deps.cluster_db;
  auto behavior = [clock, store,
                   cluster_db](shard_self* self) -> caf::behavior {
    self->delayed_send(self, purge_interval, purge_tick_atom::value);
    return {
        [=](reserve_quota_request& req) {
          auto& used = self->state.customers[req.hold.customer_id]
                           .seats_by_event[req.event_id];
          auto wanted = req.hold.seat_ids.empty()
                            ? static_cast<int64_t>(req.hold.quantity)
                            : static_cast<int64_t>(req.hold.seat_ids.size());
          if (used + wanted > req.seats_max) {
            // The section will not see this request: undo the front end's
            // queue count for it.
            req.section->request_taken();
            req.hold.reply(make_error(errc::limit_exceeded,
                                      "the customer may hold or book at most " +
                                          std::to_string(req.seats_max) +
                                          " seats in this event and has " +
                                          std::to_string(used)));
            return;
          }
          used += wanted;
          req.hold.quota_reserved = true;
          req.hold.unclaimed_quota = std::make_shared<quota_return>(
              caf::actor_cast<caf::actor>(self),
              adjust_quota{req.hold.customer_id, req.event_id, -wanted});
          self->send(req.section->actor(), std::move(req.hold));
        },
        [=](load_customer& msg) {
          auto& customer = self->state.customers[msg.customer_id];
          customer.seats_by_event = std::move(msg.seats_by_event);
          customer.bookings = std::move(msg.bookings);
          // Recovery reads bookings in no particular order; keeping the list
          // sorted here makes it the one a live node shows.
          std::sort(customer.bookings.begin(), customer.bookings.end(),
                    listed_before);
          for (auto& recorded : msg.idempotency) {
            auto& record = customer.idempotency[recorded.key];
            record.fingerprint = std::move(recorded.fingerprint);
            record.finished = true;
            record.response = std::move(recorded.response);
            record.finished_at_ms = recorded.created_at_ms;
          }
        },
        [=](const adjust_quota& msg) {
          auto& used = self->state.customers[msg.customer_id]
                           .seats_by_event[msg.event_id];
          used = std::max<int64_t>(0, used + msg.seats);
        },
        [=](booking_changed& msg) {
          auto& bookings = self->state.customers[msg.customer_id].bookings;
          auto same = [&](const booking_view& b) {
            return b.booking_id == msg.booking.booking_id;
          };
          // Sorted, not appended: the answers of different sections arrive
          // in any order, and a reload tells a booking again.
          auto it = std::find_if(bookings.begin(), bookings.end(), same);
          if (it != bookings.end()) bookings.erase(it);
          auto at = std::upper_bound(bookings.begin(), bookings.end(),
                                     msg.booking, listed_before);
          bookings.insert(at, std::move(msg.booking));
        },
        [=](list_bookings_request& req) {
          std::vector<booking_view> result;
          auto customer = self->state.customers.find(req.customer_id);
          if (customer != self->state.customers.end())
            result = customer->second.bookings;
          req.reply(std::move(result));
        },
        [=](idempotency_begin& req) {
          auto& records = self->state.customers[req.customer_id].idempotency;
          idempotency_decision decision;
          if (records.size() >= limits::idempotency_keys_per_customer_max &&
              records.find(req.key) == records.end()) {
            decision.what = idempotency_decision::kind::too_many_keys;
            decision.retry_after_seconds =
                seconds_until_a_key_expires(records, clock->now_ms());
            req.reply(std::move(decision));
            return;
          }
          auto [it, inserted] = records.try_emplace(req.key);
          if (inserted && cluster_db) {
            // In a cluster another node may have answered this key (for
            // another event): PostgreSQL decides. Meanwhile the key is in
            // use here.
            it->second.fingerprint = req.fingerprint;
            auto me = caf::actor_cast<caf::actor>(self);
            auto customer_id = req.customer_id;
            auto key = req.key;
            cluster_db->find_idempotency(
                std::move(customer_id), std::move(key),
                [me, req = std::move(req)](
                    caf::expected<std::optional<idempotency_record>>
                        found) mutable {
                  caf::anon_send(me, idempotency_looked_up{std::move(req),
                                                           std::move(found)});
                });
            return;
          }
          if (inserted) {
            it->second.fingerprint = req.fingerprint;
            decision.what = idempotency_decision::kind::proceed;
          } else if (it->second.fingerprint != req.fingerprint) {
            decision.what = idempotency_decision::kind::key_reused;
          } else if (!it->second.finished) {
            decision.what = idempotency_decision::kind::in_use;
          } else {
            decision.what = idempotency_decision::kind::replay;
            decision.response = it->second.response;
          }
          req.reply(std::move(decision));
        },
        [=](idempotency_looked_up& msg) {
          auto& req = msg.request;
          auto& records = self->state.customers[req.customer_id].idempotency;
          if (!msg.found) {
            records.erase(req.key);
            req.reply(std::move(msg.found.error()));
            return;
          }
          idempotency_decision decision;
          if (!*msg.found) {
            decision.what = idempotency_decision::kind::proceed;
            req.reply(std::move(decision));
            return;
          }
          // Recorded elsewhere: it is this node's record from now on.
          auto& recorded = **msg.found;
          auto& record = records[req.key];
          record.fingerprint = recorded.fingerprint;
          record.finished = true;
          record.response = recorded.response;
          record.finished_at_ms = recorded.created_at_ms;
          if (recorded.fingerprint != req.fingerprint) {
            decision.what = idempotency_decision::kind::key_reused;
          } else {
            decision.what = idempotency_decision::kind::replay;
            decision.response = std::move(recorded.response);
          }
          req.reply(std::move(decision));
        },
        [=](event_seats& msg) {
          for (auto& [customer, seats] : msg.seats_by_customer)
            self->state.customers[customer].seats_by_event[msg.event_id] =
                seats;
        },
        [=](const forget_events& msg) {
          for (auto& [id, customer] : self->state.customers)
            for (const auto& event_id : msg.event_ids)
              customer.seats_by_event.erase(event_id);
        },
        [=](idempotency_finish& msg) {
          auto customer = self->state.customers.find(msg.customer_id);
          if (customer == self->state.customers.end()) return;
          auto& records = customer->second.idempotency;
          auto it = records.find(msg.key);
          if (it == records.end() || it->second.fingerprint != msg.fingerprint)
            return;
          if (!msg.keep) {
            records.erase(it);
            return;
          }
          it->second.finished = true;
          it->second.response = msg.response;
          it->second.finished_at_ms = clock->now_ms();
          if (msg.written) return; // committed with the change it answers
          // An answer without a change (a 4xx) is written on its own. The
          // client already has it; if this write is lost, a retry after a
          // crash runs again and meets the same refusal or a fresh outcome.
          idempotency_record record{msg.customer_id, msg.key, msg.fingerprint,
                                    std::move(msg.response),
                                    it->second.finished_at_ms};
          store->put_idempotency(record, [](caf::error err) {
            if (err)
              spdlog::warn("idempotency record not stored: {}", describe(err));
          });
        },
        [=](purge_tick_atom) {
          auto cutoff =
              clock->now_ms() - limits::idempotency_ttl_seconds * 1000;
          for (auto& [id, customer] : self->state.customers)
            for (auto it = customer.idempotency.begin();
                 it != customer.idempotency.end();)
              it = it->second.finished && it->second.finished_at_ms < cutoff
                       ? customer.idempotency.erase(it)
                       : std::next(it);
          self->delayed_send(self, purge_interval, purge_tick_atom::value);
        },
    };
  };
  return system.spawn(behavior);
}

const caf::actor&
customer_shards::for_customer(const std::string& customer_id) const {
  return actors[std::hash<std::string>{}(customer_id) % actors.size()];
}

} // namespace rsv
