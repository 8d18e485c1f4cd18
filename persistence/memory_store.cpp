#include "core/errc.hpp"
#include "persistence/store.hpp"

namespace rsv::persistence {

namespace {

caf::error outcome(bool failing) {
  return failing ? make_error(errc::unavailable, std::string{"store failing"})
                 : caf::error{};
}

} // namespace

void memory_store::create_event(const event_def&, std::vector<uint32_t>,
                                store_ack done, write_fence) {
  done(outcome(failing_));
}

void memory_store::create_customer(const customer_record&, store_ack done) {
  done(outcome(failing_));
}

void memory_store::append(const seat_change& change, store_ack done) {
  if (failing_ || !keep_holds_) {
    done(outcome(failing_));
    return;
  }
  {
    std::lock_guard<std::mutex> guard{mutex_};
    apply_to_record(holds_[change.section_no][change.slot], change);
  }
  done({});
}

void memory_store::put_idempotency(const idempotency_record&, store_ack done) {
  done(outcome(failing_));
}

void memory_store::load_section(uint32_t section_no, section_loaded done) {
  if (failing_ || !keep_holds_) {
    done(make_error(errc::unavailable,
                    std::string{failing_ ? "store failing"
                                         : "the memory store keeps no holds"}));
    return;
  }
  std::vector<recorded_hold> holds;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    for (const auto& [slot, hold] : holds_[section_no])
      holds.push_back(hold);
  }
  done(std::move(holds));
}

void memory_store::load_hold(uint32_t section_no, uint32_t slot,
                             hold_loaded done) {
  if (failing_) {
    done(make_error(errc::unavailable, std::string{"store failing"}));
    return;
  }
  std::optional<recorded_hold> hold;
  if (keep_holds_) {
    std::lock_guard<std::mutex> guard{mutex_};
    auto section = holds_.find(section_no);
    if (section != holds_.end()) {
      auto it = section->second.find(slot);
      if (it != section->second.end()) hold = it->second;
    }
  }
  done(std::move(hold));
}

service_state memory_store::health() const {
  return failing_ ? service_state::down : service_state::ok;
}

} // namespace rsv::persistence
