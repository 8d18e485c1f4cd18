#include "core/errc.hpp"
#include "persistence/store.hpp"

namespace rsv {

const char* to_string(service_state state) {
  switch (state) {
  case service_state::ok:
    return "ok";
  case service_state::down:
    return "down";
  case service_state::disabled:
    return "disabled";
  }
  return "unknown";
}

namespace {

caf::error outcome(bool failing) {
  return failing ? make_error(errc::unavailable, std::string{"store failing"})
                 : caf::error{};
}

} // namespace

void memory_store::create_event(const event_def&, std::vector<uint32_t>,
                                store_ack done) {
  done(outcome(failing_));
}

void memory_store::create_customer(const customer_record&, store_ack done) {
  done(outcome(failing_));
}

void memory_store::append(const seat_change&, store_ack done) {
  done(outcome(failing_));
}

service_state memory_store::health() const {
  return failing_ ? service_state::down : service_state::ok;
}

} // namespace rsv
