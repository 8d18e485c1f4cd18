#include "core/model.hpp"

#include "core/assert.hpp"
#include "core/ids.hpp"
#include "core/partition.hpp"

#include <algorithm>

namespace rsv {

std::optional<uint32_t> section_layout::seat_index(std::string_view id) const {
  auto ref = parse_seat_id(id);
  if (!ref) return std::nullopt;
  auto row = row_by_label.find(std::string{ref->row_label});
  if (row == row_by_label.end()) return std::nullopt;
  auto first = row_offset[row->second];
  auto size = row_offset[row->second + 1] - first;
  if (ref->number < 1 || ref->number > size) return std::nullopt;
  return first + ref->number - 1;
}

uint32_t section_layout::row_of(uint32_t index) const {
  RSV_ASSERT(index < seat_count(), "seat index out of range");
  auto it = std::upper_bound(row_offset.begin(), row_offset.end(), index);
  return static_cast<uint32_t>(it - row_offset.begin() - 1);
}

std::string section_layout::seat_id(uint32_t index) const {
  auto row = row_of(index);
  return row_labels[row] + '-' + std::to_string(index - row_offset[row] + 1);
}

std::shared_ptr<const section_layout>
section_layout::make(const std::string& event_id, const section_def& def,
                     uint32_t section_no, write_fence fence) {
  auto layout = std::make_shared<section_layout>();
  layout->event_id = event_id;
  layout->section_id = def.id;
  layout->name = def.name;
  layout->section_no = section_no;
  layout->event_hash = fnv1a_64(event_id);
  layout->fence = fence;
  layout->price_cents = def.price_cents;
  layout->row_offset.reserve(def.rows.size() + 1);
  uint32_t offset = 0;
  for (const auto& row : def.rows) {
    layout->row_by_label.emplace(
        row.label, static_cast<uint32_t>(layout->row_labels.size()));
    layout->row_labels.push_back(row.label);
    layout->row_offset.push_back(offset);
    offset += row.seats;
  }
  layout->row_offset.push_back(offset);
  return layout;
}

const char* to_string(hold_status status) {
  return hold_status_names.name(status);
}

bool listed_before(const booking_view& a, const booking_view& b) {
  if (a.created_at_ms != b.created_at_ms)
    return a.created_at_ms > b.created_at_ms;
  // Ties by the record behind the id, numerically (the id spells it in
  // variable-length hex), highest first: within a section a later hold has
  // a higher slot. A total order, since two bookings never share an id.
  auto ref_a = parse_booking_id(a.booking_id);
  auto ref_b = parse_booking_id(b.booking_id);
  if (ref_a && ref_b) {
    if (ref_a->section_no != ref_b->section_no)
      return ref_a->section_no > ref_b->section_no;
    return ref_a->slot > ref_b->slot;
  }
  return a.booking_id > b.booking_id;
}

const char* to_string(booking_status status) {
  return booking_status_names.name(status);
}

const char* to_string(seat_status status) {
  return seat_status_names.name(status);
}

const char* to_string(change_kind kind) {
  return change_kind_names.name(kind);
}

void apply_to_record(recorded_hold& hold, const seat_change& change) {
  switch (change.kind) {
  case change_kind::hold_created:
    hold.slot = change.slot;
    hold.customer_id = change.customer_id;
    hold.seats = change.seat_indexes;
    hold.status = hold_status::active;
    hold.expires_at_ms = change.expires_at_ms;
    break;
  case change_kind::hold_released:
    if (hold.status == hold_status::active) hold.status = hold_status::released;
    break;
  case change_kind::hold_expired:
    if (hold.status == hold_status::active) hold.status = hold_status::expired;
    break;
  case change_kind::booking_confirmed:
    hold.status = hold_status::booked;
    hold.booked_at_ms = change.at_ms;
    break;
  case change_kind::booking_cancelled:
    if (hold.status == hold_status::booked) hold.cancelled = true;
    break;
  }
}

} // namespace rsv
