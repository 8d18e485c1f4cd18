#include "actors/section_state.hpp"

#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"

#include <algorithm>
#include <atomic>
#include <utility>

namespace rsv {

namespace {

/// Instances count in the high 32 bits, changes in the low ones.
uint64_t next_instance_version() {
  static std::atomic<uint64_t> instances{0};
  return (instances.fetch_add(1, std::memory_order_relaxed) + 1) << 32;
}

} // namespace

section_state::section_state(std::shared_ptr<const section_layout> layout,
                             int64_t hold_ttl_ms)
    : layout_(std::move(layout)), hold_ttl_ms_(hold_ttl_ms),
      version_(next_instance_version()) {
  RSV_ASSERT(layout_ != nullptr, "a section needs a layout");
  owner_.assign(layout_->seat_count(), 0);
  row_free_.resize(layout_->row_count());
  for (uint32_t row = 0; row < layout_->row_count(); ++row)
    row_free_[row] = layout_->row_offset[row + 1] - layout_->row_offset[row];
  counts_.free = layout_->seat_count();
}

void section_state::restore(std::vector<hold_snapshot> holds) {
  RSV_ASSERT(holds_.empty(), "restore needs a fresh section");
  if (holds.empty()) return;
  std::sort(holds.begin(), holds.end(),
            [](const hold_snapshot& a, const hold_snapshot& b) {
              return a.slot < b.slot;
            });
  holds_.resize(holds.back().slot + 1);
  for (auto& placeholder : holds_)
    placeholder.status = hold_status::released; // no customer: 404 to all
  std::vector<uint32_t> active;
  for (auto& snapshot : holds) {
    auto& hold = holds_[snapshot.slot];
    RSV_ASSERT(hold.customer_id.empty(), "a slot is recorded twice");
    hold.customer_id = std::move(snapshot.customer_id);
    hold.seats = std::move(snapshot.seats);
    hold.status = snapshot.status;
    hold.expires_at_ms = snapshot.expires_at_ms;
    hold.booked_at_ms = snapshot.booked_at_ms;
    hold.cancelled = snapshot.cancelled;
    bool holds_seats = hold.status == hold_status::active ||
                       (hold.status == hold_status::booked && !hold.cancelled);
    if (!holds_seats) continue;
    for (auto seat : hold.seats) {
      RSV_ASSERT(seat < owner_.size(), "a recorded seat is out of range");
      RSV_ASSERT(owner_[seat] == 0, "two records claim one seat");
      owner_[seat] = snapshot.slot + 1;
      --row_free_[layout_->row_of(seat)];
    }
    auto count = static_cast<uint32_t>(hold.seats.size());
    counts_.free -= count;
    ++version_;
    if (hold.status == hold_status::active) {
      counts_.held += count;
      active.push_back(snapshot.slot);
    } else {
      counts_.booked += count;
    }
  }
  std::stable_sort(active.begin(), active.end(),
                   [this](uint32_t a, uint32_t b) {
                     return holds_[a].expires_at_ms < holds_[b].expires_at_ms;
                   });
  expiry_queue_.assign(active.begin(), active.end());
}

std::size_t section_state::active_holds() const {
  std::size_t count = 0;
  for (auto slot : expiry_queue_)
    count += holds_[slot].status == hold_status::active ? 1 : 0;
  return count;
}

std::unordered_map<std::string, int64_t>
section_state::seats_by_customer() const {
  std::unordered_map<std::string, int64_t> seats;
  for (const auto& hold : holds_)
    if (hold.status == hold_status::active ||
        (hold.status == hold_status::booked && !hold.cancelled))
      seats[hold.customer_id] += static_cast<int64_t>(hold.seats.size());
  return seats;
}

std::vector<std::pair<std::string, booking_view>>
section_state::bookings() const {
  std::vector<std::pair<std::string, booking_view>> out;
  for (uint32_t slot = 0; slot < holds_.size(); ++slot)
    if (holds_[slot].status == hold_status::booked)
      out.emplace_back(holds_[slot].customer_id, booking_of(slot));
  return out;
}

seat_status section_state::status_of(uint32_t seat) const {
  auto owner = owner_[seat];
  if (owner == 0) return seat_status::free;
  return holds_[owner - 1].status == hold_status::booked ? seat_status::booked
                                                         : seat_status::held;
}

const section_state::hold_record*
section_state::find(const std::string& customer_id, uint32_t slot) const {
  // Another customer's hold answers exactly like an unknown one, and so
  // does a recovery placeholder (it has no customer).
  if (slot >= holds_.size() || holds_[slot].customer_id.empty() ||
      holds_[slot].customer_id != customer_id)
    return nullptr;
  return &holds_[slot];
}

section_state::hold_record* section_state::find(const std::string& customer_id,
                                                uint32_t slot) {
  const auto* self = this;
  return const_cast<hold_record*>(self->find(customer_id, slot));
}

hold_view section_state::view_of(uint32_t slot) const {
  const auto& hold = holds_[slot];
  hold_view view;
  view.hold_id = make_hold_id({layout_->section_no, slot, layout_->event_hash});
  view.event_id = layout_->event_id;
  view.section_id = layout_->section_id;
  view.seats.reserve(hold.seats.size());
  for (auto seat : hold.seats)
    view.seats.push_back(layout_->seat_id(seat));
  view.status = hold.status;
  view.expires_at_ms = hold.expires_at_ms;
  view.total_cents =
      layout_->price_cents * static_cast<int64_t>(hold.seats.size());
  return view;
}

booking_view section_state::booking_of(uint32_t slot) const {
  const auto& hold = holds_[slot];
  booking_view view;
  view.booking_id =
      make_booking_id({layout_->section_no, slot, layout_->event_hash});
  view.hold_id = make_hold_id({layout_->section_no, slot, layout_->event_hash});
  view.event_id = layout_->event_id;
  view.section_id = layout_->section_id;
  view.seats.reserve(hold.seats.size());
  for (auto seat : hold.seats)
    view.seats.push_back(layout_->seat_id(seat));
  view.total_cents =
      layout_->price_cents * static_cast<int64_t>(hold.seats.size());
  view.status =
      hold.cancelled ? booking_status::cancelled : booking_status::confirmed;
  view.created_at_ms = hold.booked_at_ms;
  return view;
}

seat_change section_state::change_of(change_kind kind, uint32_t slot,
                                     millis now) const {
  const auto& hold = holds_[slot];
  seat_change change;
  change.kind = kind;
  change.event_id = layout_->event_id;
  change.section_id = layout_->section_id;
  change.section_no = layout_->section_no;
  change.fence = layout_->fence;
  change.slot = slot;
  change.customer_id = hold.customer_id;
  change.seat_indexes = hold.seats;
  change.at_ms = now;
  change.expires_at_ms = hold.expires_at_ms;
  change.amount_cents =
      layout_->price_cents * static_cast<int64_t>(hold.seats.size());
  return change;
}

seat_change section_state::restated(uint32_t slot, millis now) const {
  RSV_ASSERT(slot < holds_.size(), "restated: no such slot");
  const auto& hold = holds_[slot];
  RSV_ASSERT(hold.status == hold_status::released ||
                 hold.status == hold_status::expired || hold.cancelled,
             "restated: the hold has not ended");
  auto kind = hold.cancelled ? change_kind::booking_cancelled
              : hold.status == hold_status::released
                  ? change_kind::hold_released
                  : change_kind::hold_expired;
  return change_of(kind, slot, now);
}

section_state::applied<hold_view>
section_state::create_hold(const std::string& customer_id,
                           std::vector<uint32_t> seats, millis now) {
  auto slot = static_cast<uint32_t>(holds_.size());
  // A hold lists its seats in row order, then seat order.
  std::sort(seats.begin(), seats.end());
  for (auto seat : seats) {
    RSV_ASSERT(owner_[seat] == 0, "holding a seat that is not free");
    owner_[seat] = slot + 1;
    --row_free_[layout_->row_of(seat)];
  }
  counts_.free -= static_cast<uint32_t>(seats.size());
  ++version_;
  counts_.held += static_cast<uint32_t>(seats.size());
  hold_record record;
  record.customer_id = customer_id;
  record.seats = std::move(seats);
  record.expires_at_ms = now + hold_ttl_ms_;
  holds_.push_back(std::move(record));
  expiry_queue_.push_back(slot);
  return {view_of(slot), change_of(change_kind::hold_created, slot, now)};
}

void section_state::free_seats(const hold_record& hold) {
  for (auto seat : hold.seats) {
    owner_[seat] = 0;
    ++row_free_[layout_->row_of(seat)];
  }
}

caf::expected<section_state::applied<hold_view>>
section_state::hold_seats(const std::string& customer_id,
                          const std::vector<std::string>& seat_ids,
                          millis now) {
  expire_due(now);
  std::vector<uint32_t> seats;
  seats.reserve(seat_ids.size());
  std::vector<std::string> unknown;
  for (const auto& id : seat_ids) {
    if (auto index = layout_->seat_index(id))
      seats.push_back(*index);
    else
      unknown.push_back(id);
  }
  if (!unknown.empty())
    return make_error(errc::unknown_seat, std::move(unknown));
  std::vector<std::string> unavailable;
  for (std::size_t i = 0; i < seats.size(); ++i)
    if (owner_[seats[i]] != 0) unavailable.push_back(seat_ids[i]);
  if (!unavailable.empty())
    return make_error(errc::seats_unavailable, std::move(unavailable));
  return create_hold(customer_id, std::move(seats), now);
}

caf::expected<section_state::applied<hold_view>>
section_state::hold_best(const std::string& customer_id, uint32_t quantity,
                         millis now) {
  expire_due(now);
  if (quantity == 0 || counts_.free < quantity)
    return make_error(errc::insufficient_seats);
  // Adjacent seats in one row, front rows first, lowest numbers first.
  for (uint32_t row = 0; row < layout_->row_count(); ++row) {
    if (row_free_[row] < quantity) continue;
    uint32_t run = 0;
    for (auto seat = layout_->row_offset[row];
         seat < layout_->row_offset[row + 1]; ++seat) {
      run = owner_[seat] == 0 ? run + 1 : 0;
      if (run == quantity) {
        std::vector<uint32_t> seats(quantity);
        for (uint32_t i = 0; i < quantity; ++i)
          seats[i] = seat + 1 - quantity + i;
        return create_hold(customer_id, std::move(seats), now);
      }
    }
  }
  // No row has such a block: the first free seats in the same order.
  std::vector<uint32_t> seats;
  seats.reserve(quantity);
  for (uint32_t row = 0; row < layout_->row_count() && seats.size() < quantity;
       ++row) {
    if (row_free_[row] == 0) continue;
    for (auto seat = layout_->row_offset[row];
         seat < layout_->row_offset[row + 1] && seats.size() < quantity; ++seat)
      if (owner_[seat] == 0) seats.push_back(seat);
  }
  RSV_ASSERT(seats.size() == quantity, "free count disagrees with the seats");
  return create_hold(customer_id, std::move(seats), now);
}

caf::expected<hold_view> section_state::get_hold(const std::string& customer_id,
                                                 uint32_t slot) const {
  if (find(customer_id, slot) == nullptr) return no_such_hold();
  return view_of(slot);
}

caf::expected<section_state::applied<hold_view>>
section_state::release_hold(const std::string& customer_id, uint32_t slot,
                            millis now) {
  expire_due(now);
  auto* hold = find(customer_id, slot);
  if (hold == nullptr) return no_such_hold();
  if (hold->status == hold_status::booked)
    return make_error(
        errc::hold_booked,
        make_booking_id({layout_->section_no, slot, layout_->event_hash}));
  if (hold->status != hold_status::active)
    return applied<hold_view>{view_of(slot), {}};
  free_seats(*hold);
  hold->status = hold_status::released;
  counts_.held -= static_cast<uint32_t>(hold->seats.size());
  counts_.free += static_cast<uint32_t>(hold->seats.size());
  ++version_;
  return applied<hold_view>{view_of(slot),
                            change_of(change_kind::hold_released, slot, now)};
}

caf::expected<section_state::applied<booking_view>>
section_state::book(const std::string& customer_id, uint32_t slot, millis now) {
  expire_due(now);
  auto* hold = find(customer_id, slot);
  if (hold == nullptr) return no_such_hold();
  switch (hold->status) {
  case hold_status::booked:
    return make_error(
        errc::hold_booked,
        make_booking_id({layout_->section_no, slot, layout_->event_hash}));
  case hold_status::expired:
  case hold_status::released:
    return make_error(errc::hold_expired);
  case hold_status::active:
    break;
  }
  hold->status = hold_status::booked;
  hold->booked_at_ms = now;
  counts_.held -= static_cast<uint32_t>(hold->seats.size());
  counts_.booked += static_cast<uint32_t>(hold->seats.size());
  ++version_;
  return applied<booking_view>{
      booking_of(slot), change_of(change_kind::booking_confirmed, slot, now)};
}

caf::expected<booking_view>
section_state::get_booking(const std::string& customer_id,
                           uint32_t slot) const {
  const auto* hold = find(customer_id, slot);
  if (hold == nullptr || hold->status != hold_status::booked)
    return no_such_booking();
  return booking_of(slot);
}

caf::expected<section_state::applied<booking_view>>
section_state::cancel_booking(const std::string& customer_id, uint32_t slot,
                              millis now) {
  expire_due(now);
  auto* hold = find(customer_id, slot);
  if (hold == nullptr || hold->status != hold_status::booked)
    return no_such_booking();
  if (hold->cancelled) return applied<booking_view>{booking_of(slot), {}};
  hold->cancelled = true;
  free_seats(*hold);
  counts_.booked -= static_cast<uint32_t>(hold->seats.size());
  counts_.free += static_cast<uint32_t>(hold->seats.size());
  ++version_;
  return applied<booking_view>{
      booking_of(slot), change_of(change_kind::booking_cancelled, slot, now)};
}

std::vector<seat_change> section_state::take_expired() {
  return std::exchange(expired_, {});
}

void section_state::expire_due(millis now) {
  while (!expiry_queue_.empty()) {
    auto slot = expiry_queue_.front();
    auto& hold = holds_[slot];
    if (hold.status == hold_status::active) {
      if (hold.expires_at_ms > now) break;
      free_seats(hold);
      hold.status = hold_status::expired;
      counts_.held -= static_cast<uint32_t>(hold.seats.size());
      counts_.free += static_cast<uint32_t>(hold.seats.size());
      ++version_;
      expired_.push_back(change_of(change_kind::hold_expired, slot, now));
    }
    expiry_queue_.pop_front();
  }
}

std::optional<millis> section_state::next_expiry() {
  // Released and booked holds leave the queue lazily, here.
  while (!expiry_queue_.empty() &&
         holds_[expiry_queue_.front()].status != hold_status::active)
    expiry_queue_.pop_front();
  if (expiry_queue_.empty()) return std::nullopt;
  return holds_[expiry_queue_.front()].expires_at_ms;
}

seat_map_view section_state::seat_map() const {
  seat_map_view view;
  view.layout = layout_;
  view.statuses.resize(owner_.size());
  for (uint32_t seat = 0; seat < owner_.size(); ++seat)
    view.statuses[seat] = status_of(seat);
  return view;
}

std::size_t section_state::seat_state_bytes() const {
  return owner_.capacity() * sizeof(uint32_t) +
         row_free_.capacity() * sizeof(uint32_t);
}

} // namespace rsv
