#pragma once

namespace rsv {

/// What a backing service (the store, Redis, Kafka, the cluster's group)
/// reports for `/health`.
enum class service_state { ok, down, disabled };
const char* to_string(service_state state);

} // namespace rsv
