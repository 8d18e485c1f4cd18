#include "actors/section_state.hpp"

#include "actors/hold_record.hpp"
#include "core/assert.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"

#include <algorithm>
#include <atomic>
#include <utility>

namespace rsv::actors {

namespace {

/// Instances count in the high 32 bits, changes in the low ones.
uint64_t next_instance_version() {
  static std::atomic<uint64_t> instances{0};
  return (instances.fetch_add(1, std::memory_order_relaxed) + 1) << 32;
}

} // namespace

section_state::section_state(std::shared_ptr<const section_layout> layout,
                             int64_t hold_ttl_ms, int64_t retention_ms)
    : layout_(std::move(layout)), hold_ttl_ms_(hold_ttl_ms),
      retention_ms_(retention_ms), version_(next_instance_version()) {
  RSV_ASSERT(layout_ != nullptr, "a section needs a layout");
  RSV_ASSERT(retention_ms_ >= 0, "a retention is not negative");
  owner_.assign(layout_->seat_count(), 0);
  row_free_.resize(layout_->row_count());
  for (uint32_t row = 0; row < layout_->row_count(); ++row)
    row_free_[row] = layout_->row_offset[row + 1] - layout_->row_offset[row];
  counts_.free = layout_->seat_count();
}

void section_state::restore(std::vector<hold_snapshot> holds) {
  RSV_ASSERT(records_ == 0 && next_slot() == 0,
             "restore needs a fresh section");
  std::vector<uint32_t> active;
  for (auto& snapshot : holds) {
    base_ = std::max(base_, snapshot.slot + 1);
    bool live = snapshot.status == hold_status::active ||
                snapshot.status == hold_status::booked;
    if (!live) continue; // ended: the store answers for it
    auto slot = snapshot.slot;
    auto [at, fresh] = older_.emplace(slot, std::move(snapshot));
    RSV_ASSERT(fresh, "a slot is recorded twice");
    ++records_;
    const auto& hold = at->second;
    bool holds_seats = hold.status == hold_status::active || !hold.cancelled;
    if (!holds_seats) continue;
    for (auto seat : hold.seats) {
      RSV_ASSERT(seat < owner_.size(), "a recorded seat is out of range");
      RSV_ASSERT(owner_[seat] == 0, "two records claim one seat");
      owner_[seat] = slot + 1;
      --row_free_[layout_->row_of(seat)];
    }
    auto count = static_cast<uint32_t>(hold.seats.size());
    counts_.free -= count;
    if (hold.status == hold_status::active) {
      counts_.held += count;
      ++active_by_customer_[hold.customer_id];
      active.push_back(slot);
    } else {
      counts_.booked += count;
    }
    changed();
  }
  std::sort(active.begin(), active.end(), [this](uint32_t a, uint32_t b) {
    auto at_a = older_.at(a).expires_at_ms, at_b = older_.at(b).expires_at_ms;
    return at_a != at_b ? at_a < at_b : a < b;
  });
  expiry_queue_.assign(active.begin(), active.end());
}

void section_state::changed() {
  ++version_;
  RSV_ASSERT(uint64_t{counts_.free} + counts_.held + counts_.booked ==
                 owner_.size(),
             "free + held + booked seats = the section's capacity");
}

const section_state::hold_record* section_state::record(uint32_t slot) const {
  if (slot >= base_) {
    auto offset = slot - base_;
    return offset < window_.size() ? window_[offset].get() : nullptr;
  }
  auto it = older_.find(slot);
  return it == older_.end() ? nullptr : &it->second;
}

section_state::hold_record* section_state::record(uint32_t slot) {
  const auto* self = this;
  return const_cast<hold_record*>(self->record(slot));
}

bool section_state::forgotten(uint32_t slot) const {
  return slot < next_slot() && record(slot) == nullptr;
}

template <class F>
void section_state::for_each_record(F&& f) const {
  for (const auto& [slot, hold] : older_)
    f(hold);
  for (const auto& hold : window_)
    if (hold) f(*hold);
}

std::vector<recorded_hold> section_state::live_records() const {
  std::vector<recorded_hold> out;
  auto live = [](const hold_record& hold) {
    return hold.status == hold_status::active ||
           hold.status == hold_status::booked;
  };
  for_each_record([&](const hold_record& hold) {
    if (live(hold)) out.push_back(hold);
  });
  if (next_slot() == 0) return out;
  auto last = next_slot() - 1;
  if (const auto* hold = record(last); hold == nullptr) {
    recorded_hold forgotten;
    forgotten.slot = last;
    forgotten.status = hold_status::released;
    out.push_back(std::move(forgotten));
  } else if (!live(*hold)) {
    out.push_back(*hold);
  }
  return out;
}

std::size_t section_state::active_holds() const {
  std::size_t count = 0;
  for (auto slot : expiry_queue_) {
    const auto* hold = record(slot);
    count += hold != nullptr && hold->status == hold_status::active ? 1 : 0;
  }
  return count;
}

std::unordered_map<std::string, int64_t>
section_state::seats_by_customer() const {
  std::unordered_map<std::string, int64_t> seats;
  for_each_record([&](const hold_record& hold) {
    if (hold.status == hold_status::active ||
        (hold.status == hold_status::booked && !hold.cancelled))
      seats[hold.customer_id] += static_cast<int64_t>(hold.seats.size());
  });
  return seats;
}

std::vector<std::pair<std::string, booking_view>>
section_state::bookings() const {
  std::vector<const hold_record*> booked;
  for_each_record([&](const hold_record& hold) {
    if (hold.status == hold_status::booked) booked.push_back(&hold);
  });
  std::sort(booked.begin(), booked.end(),
            [](const hold_record* a, const hold_record* b) {
              return a->slot < b->slot;
            });
  std::vector<std::pair<std::string, booking_view>> out;
  out.reserve(booked.size());
  for (const auto* hold : booked)
    out.emplace_back(hold->customer_id, booking_view_of(*layout_, *hold));
  return out;
}

seat_status section_state::status_of(uint32_t seat) const {
  auto owner = owner_[seat];
  if (owner == 0) return seat_status::free;
  const auto* hold = record(owner - 1);
  RSV_ASSERT(hold != nullptr, "a seat's owner is a live hold");
  return hold->status == hold_status::booked ? seat_status::booked
                                             : seat_status::held;
}

const section_state::hold_record*
section_state::find(const std::string& customer_id, uint32_t slot) const {
  // Another customer's hold answers exactly like an unknown one.
  const auto* hold = record(slot);
  if (hold == nullptr || hold->customer_id != customer_id) return nullptr;
  return hold;
}

section_state::hold_record* section_state::find(const std::string& customer_id,
                                                uint32_t slot) {
  const auto* self = this;
  return const_cast<hold_record*>(self->find(customer_id, slot));
}

seat_change section_state::change_of(change_kind kind, uint32_t slot,
                                     millis now) const {
  const auto* hold = record(slot);
  RSV_ASSERT(hold != nullptr, "a change of a hold in memory");
  seat_change change;
  change.kind = kind;
  change.event_id = layout_->event_id;
  change.section_id = layout_->section_id;
  change.section_no = layout_->section_no;
  change.fence = layout_->fence;
  change.slot = slot;
  change.customer_id = hold->customer_id;
  change.seat_indexes = hold->seats;
  change.at_ms = now;
  change.expires_at_ms = hold->expires_at_ms;
  change.amount_cents =
      layout_->price_cents * static_cast<int64_t>(hold->seats.size());
  return change;
}

seat_change section_state::restated(uint32_t slot, millis now) const {
  const auto* hold = record(slot);
  RSV_ASSERT(hold != nullptr, "restated: no such slot in memory");
  RSV_ASSERT(hold->status == hold_status::released ||
                 hold->status == hold_status::expired || hold->cancelled,
             "restated: the hold has not ended");
  auto kind = hold->cancelled ? change_kind::booking_cancelled
              : hold->status == hold_status::released
                  ? change_kind::hold_released
                  : change_kind::hold_expired;
  return change_of(kind, slot, now);
}

caf::expected<section_state::applied<hold_view>>
section_state::create_hold(const std::string& customer_id,
                           std::vector<uint32_t> seats, millis now) {
  auto& active = active_by_customer_[customer_id];
  if (active >= limits::active_holds_per_customer_max)
    return make_error(
        errc::limit_exceeded,
        "at most " + std::to_string(limits::active_holds_per_customer_max) +
            " active holds per customer in one section; book or release "
            "one first");
  ++active;
  auto slot = next_slot();
  // A hold lists its seats in row order, then seat order.
  std::sort(seats.begin(), seats.end());
  for (auto seat : seats) {
    RSV_ASSERT(owner_[seat] == 0, "holding a seat that is not free");
    owner_[seat] = slot + 1;
    --row_free_[layout_->row_of(seat)];
  }
  counts_.free -= static_cast<uint32_t>(seats.size());
  counts_.held += static_cast<uint32_t>(seats.size());
  changed();
  auto hold = std::make_unique<hold_record>();
  hold->slot = slot;
  hold->customer_id = customer_id;
  hold->seats = std::move(seats);
  hold->expires_at_ms = now + hold_ttl_ms_;
  window_.push_back(std::move(hold));
  ++records_;
  expiry_queue_.push_back(slot);
  return applied<hold_view>{hold_view_of(*layout_, *window_.back()),
                            change_of(change_kind::hold_created, slot, now)};
}

void section_state::free_seats(const hold_record& hold) {
  for (auto seat : hold.seats) {
    owner_[seat] = 0;
    ++row_free_[layout_->row_of(seat)];
  }
}

void section_state::end_hold(hold_record& hold, hold_status status,
                             millis now) {
  RSV_ASSERT(hold.status == hold_status::active, "ending an active hold");
  free_seats(hold);
  hold.status = status;
  auto count = static_cast<uint32_t>(hold.seats.size());
  counts_.held -= count;
  counts_.free += count;
  changed();
  auto active = active_by_customer_.find(hold.customer_id);
  RSV_ASSERT(active != active_by_customer_.end() && active->second > 0,
             "an active hold is counted for its customer");
  if (--active->second == 0) active_by_customer_.erase(active);
  ended_.emplace_back(now, hold.slot);
}

void section_state::forget_ended(millis now) {
  while (!ended_.empty() && ended_.front().first + retention_ms_ <= now) {
    auto slot = ended_.front().second;
    ended_.pop_front();
    if (slot >= base_) {
      window_[slot - base_].reset();
    } else {
      older_.erase(slot);
    }
    --records_;
  }
  // Past forgotten slots; a booking moves to the older records. Any other
  // hold stops the window until it is forgotten: at most its TTL and the
  // retention.
  while (!window_.empty()) {
    auto& front = window_.front();
    if (front && front->status != hold_status::booked) break;
    if (front) older_.emplace(base_, std::move(*front));
    window_.pop_front();
    ++base_;
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

section_state::hold_record*
section_state::find_at(const std::string& customer_id, uint32_t slot,
                       millis now) {
  expire_due(now);
  return find(customer_id, slot);
}

caf::error section_state::already_booked(uint32_t slot) const {
  return make_error(
      errc::hold_booked,
      make_booking_id({layout_->section_no, slot, layout_->event_hash}));
}

caf::expected<hold_view> section_state::get_hold(const std::string& customer_id,
                                                 uint32_t slot) const {
  const auto* hold = find(customer_id, slot);
  if (hold == nullptr) return no_such_hold();
  return hold_view_of(*layout_, *hold);
}

caf::expected<section_state::applied<hold_view>>
section_state::release_hold(const std::string& customer_id, uint32_t slot,
                            millis now) {
  auto* hold = find_at(customer_id, slot, now);
  if (hold == nullptr) return no_such_hold();
  if (hold->status == hold_status::booked) return already_booked(slot);
  if (hold->status != hold_status::active)
    return applied<hold_view>{hold_view_of(*layout_, *hold), {}};
  end_hold(*hold, hold_status::released, now);
  return applied<hold_view>{hold_view_of(*layout_, *hold),
                            change_of(change_kind::hold_released, slot, now)};
}

caf::expected<section_state::applied<booking_view>>
section_state::book(const std::string& customer_id, uint32_t slot, millis now) {
  auto* hold = find_at(customer_id, slot, now);
  if (hold == nullptr) return no_such_hold();
  switch (hold->status) {
  case hold_status::booked:
    return already_booked(slot);
  case hold_status::expired:
  case hold_status::released:
    return make_error(errc::hold_expired);
  case hold_status::active:
    break;
  }
  hold->status = hold_status::booked;
  hold->booked_at_ms = now;
  auto count = static_cast<uint32_t>(hold->seats.size());
  counts_.held -= count;
  counts_.booked += count;
  changed();
  auto active = active_by_customer_.find(customer_id);
  RSV_ASSERT(active != active_by_customer_.end() && active->second > 0,
             "an active hold is counted for its customer");
  if (--active->second == 0) active_by_customer_.erase(active);
  return applied<booking_view>{
      booking_view_of(*layout_, *hold),
      change_of(change_kind::booking_confirmed, slot, now)};
}

caf::expected<booking_view>
section_state::get_booking(const std::string& customer_id,
                           uint32_t slot) const {
  const auto* hold = find(customer_id, slot);
  if (hold == nullptr || hold->status != hold_status::booked)
    return no_such_booking();
  return booking_view_of(*layout_, *hold);
}

caf::expected<section_state::applied<booking_view>>
section_state::cancel_booking(const std::string& customer_id, uint32_t slot,
                              millis now) {
  auto* hold = find_at(customer_id, slot, now);
  if (hold == nullptr || hold->status != hold_status::booked)
    return no_such_booking();
  if (hold->cancelled)
    return applied<booking_view>{booking_view_of(*layout_, *hold), {}};
  hold->cancelled = true;
  free_seats(*hold);
  counts_.booked -= static_cast<uint32_t>(hold->seats.size());
  counts_.free += static_cast<uint32_t>(hold->seats.size());
  changed();
  return applied<booking_view>{
      booking_view_of(*layout_, *hold),
      change_of(change_kind::booking_cancelled, slot, now)};
}

std::vector<seat_change> section_state::take_expired() {
  return std::exchange(expired_, {});
}

void section_state::expire_due(millis now) {
  while (!expiry_queue_.empty()) {
    auto slot = expiry_queue_.front();
    auto* hold = record(slot);
    if (hold != nullptr && hold->status == hold_status::active) {
      if (hold->expires_at_ms > now) break;
      end_hold(*hold, hold_status::expired, now);
      expired_.push_back(change_of(change_kind::hold_expired, slot, now));
    }
    expiry_queue_.pop_front();
  }
  forget_ended(now);
}

std::optional<millis> section_state::next_expiry() {
  // Released and booked holds leave the queue lazily, here.
  while (!expiry_queue_.empty()) {
    const auto* hold = record(expiry_queue_.front());
    if (hold != nullptr && hold->status == hold_status::active)
      return hold->expires_at_ms;
    expiry_queue_.pop_front();
  }
  return std::nullopt;
}

seat_map_view section_state::seat_map() const {
  seat_map_view view;
  view.layout = layout_;
  view.statuses.resize(owner_.size());
  // Neighbouring seats mostly share their owner: look each owner up once.
  uint32_t last_owner = 0;
  auto last_status = seat_status::free;
  for (uint32_t seat = 0; seat < owner_.size(); ++seat) {
    if (owner_[seat] != last_owner) {
      last_owner = owner_[seat];
      last_status = status_of(seat);
    }
    view.statuses[seat] = last_owner == 0 ? seat_status::free : last_status;
  }
  return view;
}

std::size_t section_state::seat_state_bytes() const {
  return owner_.capacity() * sizeof(uint32_t) +
         row_free_.capacity() * sizeof(uint32_t);
}

} // namespace rsv::actors
