#include "actors/directory.hpp"

#include "core/limits.hpp"

namespace rsv::actors {

namespace {

constexpr uint64_t count_bits = 21;
constexpr uint64_t count_mask = (uint64_t{1} << count_bits) - 1;

} // namespace

bool section_entry::admit_request() {
  if (queued_.fetch_add(1, std::memory_order_relaxed) >=
      static_cast<int64_t>(limits::section_mailbox_max)) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

seat_counts section_entry::counts() const {
  auto packed = packed_counts.load(std::memory_order_acquire);
  return {static_cast<uint32_t>(packed & count_mask),
          static_cast<uint32_t>((packed >> count_bits) & count_mask),
          static_cast<uint32_t>((packed >> (2 * count_bits)) & count_mask)};
}

void section_entry::publish(seat_counts counts) {
  packed_counts.store(uint64_t{counts.free} |
                          (uint64_t{counts.held} << count_bits) |
                          (uint64_t{counts.booked} << (2 * count_bits)),
                      std::memory_order_release);
}

std::shared_ptr<section_entry>
event_entry::find_section(const std::string& section_id) const {
  auto it = section_index.find(section_id);
  return it == section_index.end() ? nullptr : sections[it->second];
}

uint32_t event_entry::seat_count() const {
  uint32_t total = 0;
  for (const auto& section : sections)
    total += section->layout->seat_count();
  return total;
}

directory::directory()
    : current_(std::make_shared<const directory_snapshot>()) {}

std::shared_ptr<const event_entry>
directory::find_event(const std::string& id) const {
  auto snap = snapshot();
  auto it = snap->events.find(id);
  return it == snap->events.end() ? nullptr : it->second;
}

std::shared_ptr<section_entry> directory::find_section(uint32_t no) const {
  auto snap = snapshot();
  return no < snap->sections_by_no.size() ? snap->sections_by_no[no] : nullptr;
}

} // namespace rsv::actors
