#pragma once

#include "core/enum_names.hpp"

namespace rsv {

/// What a backing service (the store, Redis, Kafka, the cluster's group)
/// reports for `/health`.
enum class service_state { ok, down, disabled };
inline constexpr auto service_state_names =
    names_up_to<service_state::disabled>({"ok", "down", "disabled"});

inline const char* to_string(service_state state) {
  return service_state_names.name(state);
}

} // namespace rsv
