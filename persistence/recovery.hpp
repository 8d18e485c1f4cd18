#pragma once

#include "core/model.hpp"
#include "persistence/store.hpp"

#include <caf/expected.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace rsv::persistence {

/// An event as recorded, with the numbers of its sections in event order.
struct recovered_event {
  event_def def;
  std::vector<uint32_t> section_nos;
  /// The sections' layouts, in event order: built once here, used by the
  /// store's writer, the registry and the customer shards alike.
  std::vector<std::shared_ptr<const section_layout>> layouts;
};

/// Everything a node needs to rebuild its memory from PostgreSQL.
struct recovered_state {
  std::vector<recovered_event> events;
  std::vector<customer_record> customers;
  /// Every recorded hold, with its booking, by section number.
  std::unordered_map<uint32_t, std::vector<recorded_hold>> holds;
  /// Idempotency records younger than 24 hours.
  std::vector<idempotency_record> idempotency;
  uint32_t next_section_no = 0;
};

/// Reads the recorded state. Blocking: call at start, before serving, from
/// the main thread. `dsn` empty means libpq's PG* variables.
caf::expected<recovered_state> load_recorded_state(const std::string& dsn);

} // namespace rsv::persistence
