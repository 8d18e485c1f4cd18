#pragma once

// Private to persistence/: the cluster store's statements, as functions of a
// connection. They run on cluster_store's thread (cluster_store.cpp), which
// owns the connection, queues the requests and reconnects.

#include "core/model.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/pg_handles.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace rsv::persistence::pg {

/// Prepares the statements below on a new connection; false (logged) when
/// PostgreSQL refuses one.
bool prepare_cluster_statements(PGconn* conn);

/// Records the partition count, or checks it against the one recorded, and
/// makes the partitions' rows; one transaction (cluster_store::init).
caf::error init_cluster_tables(PGconn* conn, uint32_t partitions);

/// Raises the epochs of `partitions` (sorted, distinct) and makes `address`
/// their owner; waits out a former owner's batch a bounded number of times.
caf::expected<std::map<uint32_t, uint64_t>>
raise_epochs_of(PGconn* conn, const std::vector<uint32_t>& partitions,
                const std::string& address);

caf::expected<std::vector<partition_owner>> read_owners(PGconn* conn);

/// The events, sections and live holds of the `wanted` partitions, read in
/// one snapshot.
caf::expected<recovered_state> read_partitions(PGconn* conn,
                                               const std::set<uint32_t>& wanted,
                                               uint32_t partition_count);

caf::expected<std::vector<uint32_t>> take_section_nos(PGconn* conn,
                                                      std::size_t n);

caf::expected<std::optional<customer_record>>
find_customer(PGconn* conn, const std::string& email);

/// An idempotency record younger than its time to live.
caf::expected<std::optional<idempotency_record>>
find_idempotency(PGconn* conn, const std::string& customer_id,
                 const std::string& key);

caf::expected<std::vector<booking_view>>
read_bookings(PGconn* conn, const std::string& customer_id);

caf::expected<std::vector<event_summary>> read_event_summaries(PGconn* conn);

} // namespace rsv::persistence::pg
