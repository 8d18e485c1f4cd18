#pragma once

#include "core/limits.hpp"
#include "core/model.hpp"

#include <caf/expected.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace rsv::actors {

/// The seats, holds and bookings of one section: the domain logic of a
/// section actor without the actor, so that it can be tested with a
/// controllable clock.
///
/// Memory: one 32-bit owner word per seat (0 = free, otherwise the owning
/// hold's slot + 1) and a per-row free count; a hold keeps its seat indexes.
/// A seat's status follows from its owner: held while the hold is active,
/// booked once it is booked.
///
/// Hold records: a hold that ended (released or expired) is forgotten once
/// it has been over for the retention; the store has it, and
/// forgotten(slot) tells the owner to ask the store (actors/hold_record.hpp).
/// Active holds and bookings (confirmed or cancelled) stay. Records live in
/// a window of recent slots, one pointer each (null once forgotten), whose
/// front moves on past forgotten slots, handing bookings to a map of older
/// live records; an active hold at the front holds it until it ends, at
/// most its TTL. So memory is the live holds, the bookings, and the holds of
/// the last TTL plus retention, not every hold ever made.
///
/// Not thread-safe: exactly one section actor owns an instance. Every
/// operation takes `now` and first expires what is due, so a hold past its
/// expiry is never booked, whatever the timer did.
class section_state {
public:
  section_state(std::shared_ptr<const section_layout> layout,
                int64_t hold_ttl_ms,
                int64_t retention_ms = limits::ended_hold_retention_ms);

  /// A change applied in memory, with what to answer once it is durable.
  using hold_snapshot = recorded_hold;

  /// Rebuilds a fresh section from its recorded holds, in any order: its
  /// live ones (active holds and bookings) and at least its last one, which
  /// numbers the next hold. Ended holds among them are not kept: like every
  /// slot below the next one that is not live (a hold that ended long ago,
  /// or a write the store refused), they are forgotten, for the store to
  /// answer. Holds whose time passed while the node was down are expired by
  /// the next operation or expire_due(). Two records that claim one seat are
  /// a corrupted store: that is an assertion.
  void restore(std::vector<hold_snapshot> holds);

  /// True when `slot` was numbered here but its record is no longer in
  /// memory: the hold ended longer than the retention ago (or was never
  /// written). Its answers come from the store's record, through
  /// forgotten_hold (actors/hold_record.hpp); every operation below answers
  /// 404 for it.
  bool forgotten(uint32_t slot) const;

  template <class View>
  struct applied {
    View view;
    std::optional<seat_change> change; // empty when nothing changed
  };

  caf::expected<applied<hold_view>>
  hold_seats(const std::string& customer_id,
             const std::vector<std::string>& seat_ids, millis now);

  caf::expected<applied<hold_view>> hold_best(const std::string& customer_id,
                                              uint32_t quantity, millis now);

  caf::expected<hold_view> get_hold(const std::string& customer_id,
                                    uint32_t slot) const;

  /// Releases an active hold; `change` is empty when there was nothing to
  /// release (already expired or released).
  caf::expected<applied<hold_view>> release_hold(const std::string& customer_id,
                                                 uint32_t slot, millis now);

  caf::expected<applied<booking_view>> book(const std::string& customer_id,
                                            uint32_t slot, millis now);

  caf::expected<booking_view> get_booking(const std::string& customer_id,
                                          uint32_t slot) const;

  /// Cancels a confirmed booking; cancelling again answers the same booking
  /// with an empty change.
  caf::expected<applied<booking_view>>
  cancel_booking(const std::string& customer_id, uint32_t slot, millis now);

  /// The change that brought an ended hold where it is (released, expired,
  /// or its booking cancelled), to be written again: a repeated release or
  /// cancellation finds nothing to change, but the write that made it so
  /// may still be on its way to the store, or may have failed; its answer
  /// waits for this one.
  seat_change restated(uint32_t slot, millis now) const;

  /// Expires every active hold whose time has come. Every operation above
  /// calls it first; the changes wait in take_expired() for the owner to
  /// persist.
  void expire_due(millis now);

  /// The hold_expired changes made since the last call.
  std::vector<seat_change> take_expired();

  /// When the next active hold expires, if any.
  std::optional<millis> next_expiry();

  seat_counts counts() const { return counts_; }
  /// Changes with every seat whose status changes; unique to this instance
  /// (a section rebuilt after a restart never repeats an old version), so
  /// a seat map rendered for one version is that map.
  uint64_t version() const { return version_; }
  /// Holds now active (after restore: before expire_due).
  std::size_t active_holds() const;
  seat_map_view seat_map() const;

  /// Seats each customer holds or has booked here: what counts against the
  /// per-customer limit.
  std::unordered_map<std::string, int64_t> seats_by_customer() const;

  /// Every booking of the section, confirmed or cancelled, in slot order,
  /// with its customer.
  std::vector<std::pair<std::string, booking_view>> bookings() const;
  const section_layout& layout() const { return *layout_; }
  /// When the oldest ended hold is due to be forgotten (expire_due does
  /// it), if any hold has ended: the owner wakes then, so that an idle
  /// section lets go of its records too.
  std::optional<millis> next_forget() const {
    if (ended_.empty()) return std::nullopt;
    return ended_.front().first + retention_ms_;
  }
  /// Hold records in memory (live ones and those within the retention).
  std::size_t records_in_memory() const { return records_; }
  /// The slot the next hold gets.
  uint32_t next_slot() const {
    return base_ + static_cast<uint32_t>(window_.size());
  }

  /// What a snapshot keeps (persistence::journal::section_snapshot), as
  /// restore() takes it back: the live holds (active ones and bookings)
  /// and the last hold, which numbers the next one (a record with its slot
  /// alone when memory forgot it). Empty for a section that never held.
  std::vector<recorded_hold> live_records() const;

  /// Bytes of memory the seat state takes (not the holds), for the bench's
  /// bytes-per-seat figure and the capacity test.
  std::size_t seat_state_bytes() const;

private:
  using hold_record = recorded_hold;

  seat_status status_of(uint32_t seat) const;
  const hold_record* record(uint32_t slot) const;
  hold_record* record(uint32_t slot);
  const hold_record* find(const std::string& customer_id, uint32_t slot) const;
  hold_record* find(const std::string& customer_id, uint32_t slot);
  /// find(), after the holds due by `now` expired: what a change reads.
  hold_record* find_at(const std::string& customer_id, uint32_t slot,
                       millis now);
  /// hold_booked, with the booking's id.
  caf::error already_booked(uint32_t slot) const;
  caf::expected<applied<hold_view>> create_hold(const std::string& customer_id,
                                                std::vector<uint32_t> seats,
                                                millis now);
  void free_seats(const hold_record& hold);
  /// After every change of seats: a new version, and the invariant that
  /// every seat is free, held or booked, checked (it crashes loudly when a
  /// change forgot a count, in release builds too).
  void changed();
  /// The hold ended (released or expired) at `now`: counts and the queue of
  /// records to forget.
  void end_hold(hold_record& hold, hold_status status, millis now);
  /// Forgets the ended holds past their retention and moves the window on.
  void forget_ended(millis now);
  seat_change change_of(change_kind kind, uint32_t slot, millis now) const;
  template <class F>
  void for_each_record(F&& f) const;

  std::shared_ptr<const section_layout> layout_;
  int64_t hold_ttl_ms_;
  int64_t retention_ms_;
  std::vector<uint32_t> owner_;
  std::vector<uint32_t> row_free_;
  // Records of slots base_ .. base_ + window_.size() - 1; null: forgotten.
  uint32_t base_ = 0;
  std::deque<std::unique_ptr<hold_record>> window_;
  // Live records below base_: bookings, and active holds after a restore.
  std::unordered_map<uint32_t, hold_record> older_;
  std::size_t records_ = 0;
  // Ended holds by when they ended, oldest first: (ended at, slot).
  std::deque<std::pair<millis, uint32_t>> ended_;
  // Active holds per customer, for active_holds_per_customer_max.
  std::unordered_map<std::string, uint32_t> active_by_customer_;
  // Slots of active holds in expiry order: the TTL is the same for every
  // hold of a section, so creation order is expiry order.
  std::deque<uint32_t> expiry_queue_;
  std::vector<seat_change> expired_;
  seat_counts counts_;
  uint64_t version_;
};

} // namespace rsv::actors
