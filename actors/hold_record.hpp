#pragma once

#include "core/model.hpp"

#include <caf/expected.hpp>
#include <optional>
#include <string>

namespace rsv::actors {

/// What the API shows of a hold record, in memory or as the store recorded
/// it: one rendering for both, so that a hold read from the store looks
/// exactly like one read from memory.
hold_view hold_view_of(const section_layout& layout, const recorded_hold& hold);
booking_view booking_view_of(const section_layout& layout,
                             const recorded_hold& hold);

/// Answers about a hold its section no longer keeps in memory
/// (section_state::forgotten), from the store's record of it, or nothing
/// when the store has none (a write it refused, or a store that keeps
/// nothing). A section forgets only holds that ended longer than the
/// retention ago, which can no longer change, so no answer here changes
/// anything: a DELETE of such a hold is the 204 of an ended hold.
///
/// A record the store still has as active and unexpired means the write
/// that ended the hold failed after memory had it ended; the section is
/// reloading, so the answer is 503 (retry), never a guess.
///
/// Another customer's hold answers like an unknown one, as in memory.
namespace forgotten_hold {

caf::expected<hold_view> get(const section_layout& layout,
                             const std::string& customer_id,
                             const std::optional<recorded_hold>& record,
                             millis now);

caf::expected<hold_view> release(const section_layout& layout,
                                 const std::string& customer_id,
                                 const std::optional<recorded_hold>& record,
                                 millis now);

/// Never books: the answer is why not (410, 409 or 404).
caf::error book(const section_layout& layout, const std::string& customer_id,
                const std::optional<recorded_hold>& record, millis now);

caf::expected<booking_view>
get_booking(const section_layout& layout, const std::string& customer_id,
            const std::optional<recorded_hold>& record);

caf::expected<booking_view>
cancel_booking(const section_layout& layout, const std::string& customer_id,
               const std::optional<recorded_hold>& record);

} // namespace forgotten_hold

} // namespace rsv::actors
