#include "actors/runtime.hpp"

#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"

#include <caf/all.hpp>
#include <future>
#include <unordered_map>

namespace rsv::actors {

runtime::runtime(caf::actor_system& system, runtime_deps deps,
                 std::size_t customer_shard_count)
    : system_(system), deps_(std::move(deps)),
      directory_(std::make_shared<directory>()),
      shards_(std::make_shared<customer_shards>()) {
  RSV_ASSERT(customer_shard_count > 0, "at least one customer shard");
  RSV_ASSERT(deps_.store && deps_.sink && deps_.clock && deps_.metrics,
             "every runtime dependency is set");
  for (std::size_t i = 0; i < customer_shard_count; ++i)
    shards_->actors.push_back(spawn_customer_shard(system_, deps_));
  accounts_ = spawn_accounts(system_, deps_);
  registry_ = spawn_registry(system_, deps_, directory_, shards_);
}

runtime::~runtime() {
  auto stop = [this](const caf::actor& actor) {
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  };
  chaos_stop();
  for (const auto& section : directory_->snapshot()->sections_by_no)
    if (section) stop(section->actor());
  for (const auto& shard : shards_->actors)
    stop(shard);
  stop(accounts_);
  stop(registry_);
}

void runtime::chaos_kill_random(millis interval_ms, millis duration_ms) {
  std::lock_guard<std::mutex> guard{chaos_mutex_};
  if (chaos_killer_)
    caf::anon_send_exit(chaos_killer_, caf::exit_reason::user_shutdown);
  chaos_killer_ = spawn_chaos_killer(system_, directory_, deps_.metrics,
                                     interval_ms, duration_ms);
  chaos_until_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(duration_ms);
}

bool runtime::chaos_killing() {
  std::lock_guard<std::mutex> guard{chaos_mutex_};
  return chaos_killer_ && std::chrono::steady_clock::now() < chaos_until_;
}

bool runtime::chaos_stop() {
  std::lock_guard<std::mutex> guard{chaos_mutex_};
  if (!chaos_killer_) return false;
  caf::anon_send_exit(chaos_killer_, caf::exit_reason::user_shutdown);
  chaos_killer_ = nullptr;
  return true;
}

caf::expected<std::size_t>
runtime::recover(persistence::recovered_state state) {
  // What each customer has: seats per event (for limits) and bookings.
  std::unordered_map<std::string, load_customer> customers;
  for (const auto& event : state.events) {
    for (std::size_t i = 0; i < event.def.sections.size(); ++i) {
      auto no = event.section_nos[i];
      auto holds = state.holds.find(no);
      if (holds == state.holds.end()) continue;
      const auto& layout = event.layouts[i];
      for (const auto& hold : holds->second) {
        auto& customer = customers[hold.customer_id];
        customer.customer_id = hold.customer_id;
        bool booked = hold.status == hold_status::booked;
        if (hold.status == hold_status::active || (booked && !hold.cancelled))
          customer.seats_by_event[event.def.id] +=
              static_cast<int64_t>(hold.seats.size());
        if (!booked) continue;
        booking_view view;
        view.booking_id = make_booking_id({no, hold.slot, layout->event_hash});
        view.hold_id = make_hold_id({no, hold.slot, layout->event_hash});
        view.event_id = event.def.id;
        view.section_id = layout->section_id;
        for (auto seat : hold.seats)
          view.seats.push_back(layout->seat_id(seat));
        view.total_cents =
            layout->price_cents * static_cast<int64_t>(hold.seats.size());
        view.status = hold.cancelled ? booking_status::cancelled
                                     : booking_status::confirmed;
        view.created_at_ms = hold.booked_at_ms;
        customer.bookings.push_back(std::move(view));
      }
    }
  }
  for (auto& record : state.idempotency) {
    auto& customer = customers[record.customer_id];
    customer.customer_id = record.customer_id;
    customer.idempotency.push_back(std::move(record));
  }
  caf::anon_send(accounts_, load_customers{std::move(state.customers)});
  // The shard sorts each customer's bookings into their listing order.
  for (auto& [id, customer] : customers)
    caf::anon_send(shards_->for_customer(id), std::move(customer));
  recover_events_request request;
  request.events = std::move(state.events);
  request.holds = std::move(state.holds);
  request.next_section_no = state.next_section_no;
  // Shared: a late reply after the deadline must not touch a dead promise.
  auto done = std::make_shared<std::promise<caf::expected<std::size_t>>>();
  auto future = done->get_future();
  request.reply = reply_fn<std::size_t>{
      [done](caf::expected<std::size_t> n) { done->set_value(std::move(n)); }};
  caf::anon_send(registry_, std::move(request));
  if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
    return make_error(errc::unavailable,
                      std::string{"recovery did not finish within 60 s"});
  return future.get();
}

} // namespace rsv::actors

namespace rsv::actors {

std::unordered_map<std::string, std::unordered_map<std::string, int64_t>>
seats_by_event_and_customer(
    const std::vector<persistence::recovered_event>& events,
    const std::unordered_map<uint32_t, std::vector<recorded_hold>>& holds) {
  std::unordered_map<std::string, std::unordered_map<std::string, int64_t>> out;
  for (const auto& event : events) {
    auto& by_customer = out[event.def.id];
    for (auto no : event.section_nos) {
      auto recorded = holds.find(no);
      if (recorded == holds.end()) continue;
      for (const auto& hold : recorded->second)
        if (hold.status == hold_status::active ||
            (hold.status == hold_status::booked && !hold.cancelled))
          by_customer[hold.customer_id] +=
              static_cast<int64_t>(hold.seats.size());
    }
  }
  return out;
}

} // namespace rsv::actors
