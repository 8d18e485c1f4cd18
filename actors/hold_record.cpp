#include "actors/hold_record.hpp"

#include "core/errc.hpp"
#include "core/ids.hpp"

namespace rsv::actors {

namespace {

record_ref ref_of(const section_layout& layout, uint32_t slot) {
  return {layout.section_no, slot, layout.event_hash};
}

std::vector<std::string> seat_ids(const section_layout& layout,
                                  const std::vector<uint32_t>& seats) {
  std::vector<std::string> ids;
  ids.reserve(seats.size());
  for (auto seat : seats)
    ids.push_back(layout.seat_id(seat));
  return ids;
}

int64_t total_of(const section_layout& layout, const recorded_hold& hold) {
  return layout.price_cents * static_cast<int64_t>(hold.seats.size());
}

/// The record when it is this customer's, else nothing: another customer's
/// hold is as unknown as one that never was.
const recorded_hold* owned(const std::string& customer_id,
                           const std::optional<recorded_hold>& record) {
  if (!record || record->customer_id.empty() ||
      record->customer_id != customer_id)
    return nullptr;
  return &*record;
}

/// The record's status as of `now`: an active hold past its expiry has
/// expired, whether or not its expiry reached the store.
hold_status status_at(const recorded_hold& hold, millis now) {
  if (hold.status == hold_status::active && hold.expires_at_ms <= now)
    return hold_status::expired;
  return hold.status;
}

caf::error still_settling() {
  return make_error(errc::unavailable,
                    std::string{"this hold's last change is being written "
                                "again; retry shortly"});
}

caf::error booked(const section_layout& layout, const recorded_hold& hold) {
  return make_error(errc::hold_booked,
                    make_booking_id(ref_of(layout, hold.slot)));
}

/// What a release or a booking of the record meets unless the hold ended
/// (expired or released): the booking, or a hold still settling; nothing
/// once it ended.
caf::error unless_ended(const section_layout& layout, const recorded_hold& hold,
                        millis now) {
  switch (status_at(hold, now)) {
  case hold_status::booked:
    return booked(layout, hold);
  case hold_status::active:
    return still_settling();
  case hold_status::expired:
  case hold_status::released:
    break;
  }
  return {};
}

} // namespace

hold_view hold_view_of(const section_layout& layout,
                       const recorded_hold& hold) {
  hold_view view;
  view.hold_id = make_hold_id(ref_of(layout, hold.slot));
  view.event_id = layout.event_id;
  view.section_id = layout.section_id;
  view.seats = seat_ids(layout, hold.seats);
  view.status = hold.status;
  view.expires_at_ms = hold.expires_at_ms;
  view.total_cents = total_of(layout, hold);
  return view;
}

booking_view booking_view_of(const section_layout& layout,
                             const recorded_hold& hold) {
  booking_view view;
  view.booking_id = make_booking_id(ref_of(layout, hold.slot));
  view.hold_id = make_hold_id(ref_of(layout, hold.slot));
  view.event_id = layout.event_id;
  view.section_id = layout.section_id;
  view.seats = seat_ids(layout, hold.seats);
  view.total_cents = total_of(layout, hold);
  view.status =
      hold.cancelled ? booking_status::cancelled : booking_status::confirmed;
  view.created_at_ms = hold.booked_at_ms;
  return view;
}

namespace forgotten_hold {

caf::expected<hold_view> get(const section_layout& layout,
                             const std::string& customer_id,
                             const std::optional<recorded_hold>& record,
                             millis now) {
  const auto* hold = owned(customer_id, record);
  if (hold == nullptr) return no_such_hold();
  auto view = hold_view_of(layout, *hold);
  view.status = status_at(*hold, now);
  return view;
}

caf::expected<hold_view> release(const section_layout& layout,
                                 const std::string& customer_id,
                                 const std::optional<recorded_hold>& record,
                                 millis now) {
  const auto* hold = owned(customer_id, record);
  if (hold == nullptr) return no_such_hold();
  if (auto err = unless_ended(layout, *hold, now)) return err;
  return get(layout, customer_id, record, now);
}

caf::error book(const section_layout& layout, const std::string& customer_id,
                const std::optional<recorded_hold>& record, millis now) {
  const auto* hold = owned(customer_id, record);
  if (hold == nullptr) return no_such_hold();
  if (auto err = unless_ended(layout, *hold, now)) return err;
  return make_error(errc::hold_expired);
}

caf::expected<booking_view>
get_booking(const section_layout& layout, const std::string& customer_id,
            const std::optional<recorded_hold>& record) {
  const auto* hold = owned(customer_id, record);
  if (hold == nullptr || hold->status != hold_status::booked)
    return no_such_booking();
  return booking_view_of(layout, *hold);
}

caf::expected<booking_view>
cancel_booking(const section_layout& layout, const std::string& customer_id,
               const std::optional<recorded_hold>& record) {
  const auto* hold = owned(customer_id, record);
  if (hold == nullptr || hold->status != hold_status::booked)
    return no_such_booking();
  // Bookings are never forgotten; a confirmed one here is memory and store
  // disagreeing for a moment (a reload is coming).
  if (!hold->cancelled) return still_settling();
  return booking_view_of(layout, *hold);
}

} // namespace forgotten_hold

} // namespace rsv::actors
