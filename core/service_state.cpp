#include "core/service_state.hpp"

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

} // namespace rsv
