#include "actors/runtime.hpp"
#include "core/limits.hpp"
#include "persistence/cluster_store.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <unordered_map>

namespace rsv::actors {

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

namespace {

/// The per-customer state of the customers hashing to this shard: seats
/// counted against an event's max_seats_per_customer, the bookings list and
/// the idempotency records. Spawned by the runtime; runs on the actor
/// threads, one message at a time, so its state needs no lock.
class customer_shard : public caf::event_based_actor {
public:
  customer_shard(caf::actor_config& cfg, const runtime_deps& deps)
      : caf::event_based_actor(cfg), clock_(deps.clock), store_(deps.store),
        cluster_db_(deps.cluster_db) {}

  const char* name() const override { return "customer_shard"; }

  caf::behavior make_behavior() override {
    delayed_send(this, purge_interval, purge_tick_atom::value);
    return {
        [this](reserve_quota_request& req) { reserve_quota(req); },
        [this](load_customer& msg) { load(msg); },
        [this](const adjust_quota& msg) {
          auto& used = customers_[msg.customer_id].seats_by_event[msg.event_id];
          used = std::max<int64_t>(0, used + msg.seats);
        },
        [this](booking_changed& msg) { booking_changed_to(msg); },
        [this](list_bookings_request& req) { list_bookings(req); },
        [this](idempotency_begin& req) { begin_request(req); },
        [this](idempotency_looked_up& msg) { looked_up(msg); },
        [this](event_seats& msg) {
          for (auto& [customer, seats] : msg.seats_by_customer)
            customers_[customer].seats_by_event[msg.event_id] = seats;
        },
        [this](const forget_events& msg) {
          for (auto& [id, customer] : customers_)
            for (const auto& event_id : msg.event_ids)
              customer.seats_by_event.erase(event_id);
        },
        [this](idempotency_finish& msg) { finish_request(msg); },
        [this](purge_tick_atom) { purge(); },
    };
  }

private:
  /// Counts a hold's seats against the customer's limit in its event and
  /// passes it on to its section, or refuses it.
  void reserve_quota(reserve_quota_request& req) {
    auto& used = customers_[req.hold.customer_id].seats_by_event[req.event_id];
    auto wanted = req.hold.seat_ids.empty()
                      ? static_cast<int64_t>(req.hold.quantity)
                      : static_cast<int64_t>(req.hold.seat_ids.size());
    if (used + wanted > req.seats_max) {
      // The section will not see this request: undo the front end's queue
      // count for it.
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
        caf::actor_cast<caf::actor>(this),
        adjust_quota{req.hold.customer_id, req.event_id, -wanted});
    send(req.section->actor(), std::move(req.hold));
  }

  void load(load_customer& msg) {
    auto& customer = customers_[msg.customer_id];
    customer.seats_by_event = std::move(msg.seats_by_event);
    customer.bookings = std::move(msg.bookings);
    // Recovery reads bookings in no particular order; keeping the list
    // sorted here makes it the one a live node shows.
    std::sort(customer.bookings.begin(), customer.bookings.end(),
              listed_before);
    for (auto& recorded : msg.idempotency) {
      auto& record = customer.idempotency[recorded.key];
      remember(record, std::move(recorded));
    }
  }

  void booking_changed_to(booking_changed& msg) {
    auto& bookings = customers_[msg.customer_id].bookings;
    auto same = [&](const booking_view& b) {
      return b.booking_id == msg.booking.booking_id;
    };
    // Sorted, not appended: the answers of different sections arrive in any
    // order, and a reload tells a booking again.
    auto it = std::find_if(bookings.begin(), bookings.end(), same);
    if (it != bookings.end()) bookings.erase(it);
    auto at = std::upper_bound(bookings.begin(), bookings.end(), msg.booking,
                               listed_before);
    bookings.insert(at, std::move(msg.booking));
  }

  void list_bookings(list_bookings_request& req) {
    std::vector<booking_view> result;
    auto customer = customers_.find(req.customer_id);
    if (customer != customers_.end()) result = customer->second.bookings;
    req.reply(std::move(result));
  }

  /// A request with an Idempotency-Key begins: go on, replay, or refuse.
  void begin_request(idempotency_begin& req) {
    auto& records = customers_[req.customer_id].idempotency;
    idempotency_decision decision;
    if (records.size() >= limits::idempotency_keys_per_customer_max &&
        records.find(req.key) == records.end()) {
      decision.what = idempotency_decision::kind::too_many_keys;
      decision.retry_after_seconds =
          seconds_until_a_key_expires(records, clock_->now_ms());
      req.reply(std::move(decision));
      return;
    }
    auto [it, inserted] = records.try_emplace(req.key);
    if (inserted) it->second.fingerprint = req.fingerprint;
    if (inserted && cluster_db_) {
      // In a cluster another node may have answered this key (for another
      // event): PostgreSQL decides. Meanwhile the key is in use here.
      look_up(std::move(req));
      return;
    }
    if (inserted)
      decision.what = idempotency_decision::kind::proceed;
    else if (it->second.fingerprint != req.fingerprint)
      decision.what = idempotency_decision::kind::key_reused;
    else if (!it->second.finished)
      decision.what = idempotency_decision::kind::in_use;
    else {
      decision.what = idempotency_decision::kind::replay;
      decision.response = it->second.response;
    }
    req.reply(std::move(decision));
  }

  void look_up(idempotency_begin req) {
    auto me = caf::actor_cast<caf::actor>(this);
    auto customer_id = req.customer_id;
    auto key = req.key;
    cluster_db_->find_idempotency(
        std::move(customer_id), std::move(key),
        [me, req = std::move(req)](
            caf::expected<std::optional<idempotency_record>> found) mutable {
          caf::anon_send(
              me, idempotency_looked_up{std::move(req), std::move(found)});
        });
  }

  void looked_up(idempotency_looked_up& msg) {
    auto& req = msg.request;
    auto& records = customers_[req.customer_id].idempotency;
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
    remember(records[req.key], recorded); // a copy: the answer needs it too
    if (recorded.fingerprint != req.fingerprint) {
      decision.what = idempotency_decision::kind::key_reused;
    } else {
      decision.what = idempotency_decision::kind::replay;
      decision.response = std::move(recorded.response);
    }
    req.reply(std::move(decision));
  }

  /// The request finished: its answer is kept (and stored when no change
  /// carried it) or its key is freed.
  void finish_request(idempotency_finish& msg) {
    auto customer = customers_.find(msg.customer_id);
    if (customer == customers_.end()) return;
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
    it->second.finished_at_ms = clock_->now_ms();
    if (msg.written) return; // committed with the change it answers
    // An answer without a change (a 4xx) is written on its own. The client
    // already has it; if this write is lost, a retry after a crash runs
    // again and meets the same refusal or a fresh outcome.
    idempotency_record record{msg.customer_id, msg.key, msg.fingerprint,
                              std::move(msg.response),
                              it->second.finished_at_ms};
    store_->put_idempotency(record, [](caf::error err) {
      if (err) spdlog::warn("idempotency record not stored: {}", describe(err));
    });
  }

  void purge() {
    auto cutoff = clock_->now_ms() - limits::idempotency_ttl_seconds * 1000;
    for (auto& [id, customer] : customers_)
      for (auto it = customer.idempotency.begin();
           it != customer.idempotency.end();)
        it = it->second.finished && it->second.finished_at_ms < cutoff
                 ? customer.idempotency.erase(it)
                 : std::next(it);
    delayed_send(this, purge_interval, purge_tick_atom::value);
  }

  /// Fills `record` from one stored (recovered, or found in PostgreSQL).
  static void remember(key_state& record, idempotency_record recorded) {
    record.fingerprint = std::move(recorded.fingerprint);
    record.finished = true;
    record.response = std::move(recorded.response);
    record.finished_at_ms = recorded.created_at_ms;
  }

  std::shared_ptr<clock_source> clock_;
  std::shared_ptr<persistence::store> store_;
  std::shared_ptr<persistence::cluster_store> cluster_db_;
  std::unordered_map<std::string, customer_data> customers_;
};

} // namespace

caf::actor spawn_customer_shard(caf::actor_system& system,
                                const runtime_deps& deps) {
  return system.spawn<customer_shard>(deps);
}

const caf::actor&
customer_shards::for_customer(const std::string& customer_id) const {
  return actors[std::hash<std::string>{}(customer_id) % actors.size()];
}

} // namespace rsv::actors
