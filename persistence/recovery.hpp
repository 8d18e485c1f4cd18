#pragma once

#include "core/model.hpp"
#include "persistence/store.hpp"

#include <caf/error.hpp>
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

/// Names every PostgreSQL connection this process opens from now on as a
/// node's (application_name `reservations-node/<start>.<pid>`), so that the
/// next process of a single node can find what this one leaves behind
/// (end_former_node_backends). Call once at start, before any connection.
void name_node_connections();

/// On a single node, before its state is read: ends every backend that an
/// earlier node process left on this database (a process killed with
/// kill -9 leaves its backends running until they notice) and waits until
/// each is gone. A COMMIT one of them was carrying out finishes first, so
/// it lands before the state is read, never after it: a hold no one was
/// told of cannot appear behind the node's back, on a seat it then sells
/// again. Not for a cluster, whose other nodes are alive: there the epoch
/// fence refuses a former owner's writes. An error when a backend is still
/// there after about 15 s (a COMMIT stuck on a disk that does not answer):
/// the node must not read its state before that COMMIT is over. A server
/// that does not let this role end them is logged and passed over, and
/// one that cannot be reached is left to the migrations to report.
caf::error end_former_node_backends(const std::string& dsn);

/// Reads the recorded state. Blocking: call at start, before serving, from
/// the main thread. `dsn` empty means libpq's PG* variables.
caf::expected<recovered_state> load_recorded_state(const std::string& dsn);

} // namespace rsv::persistence
