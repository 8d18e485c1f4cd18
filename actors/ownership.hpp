#pragma once

#include "core/enum_names.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace rsv::actors {

/// Where a partition's events are served from, as this node sees it.
enum class partition_state : uint8_t {
  /// Another node owns it (or nobody yet): requests go to `owner`.
  remote,
  /// Assigned to this node, which is raising its epoch and loading its
  /// events: requests get 503 with Retry-After until it serves them.
  loading,
  /// This node owns it under `epoch` and serves its events.
  local,
};
inline constexpr auto partition_state_names =
    names_up_to<partition_state::local>({"remote", "loading", "local"});

inline const char* to_string(partition_state state) {
  return partition_state_names.name(state);
}

struct partition_info {
  partition_state state = partition_state::remote;
  uint64_t epoch = 0;
  /// The owner's advertised HOST:PORT as PostgreSQL last said; empty when
  /// unknown. For a local partition, this node's own address.
  std::string owner;
};

/// The cluster as one node sees it: for every partition, whether this node
/// serves it and otherwise who does (docs/cluster.md). Any thread reads it
/// without a lock (an immutable snapshot); the cluster coordinator alone
/// changes it, copy-on-write, on assignment, revocation, fencing and its
/// periodic reading of the owners from PostgreSQL.
class ownership {
public:
  using table = std::vector<partition_info>;

  ownership(uint32_t partitions, std::string self_address);

  uint32_t partitions() const { return partitions_; }
  const std::string& self() const { return self_; }

  std::shared_ptr<const table> snapshot() const {
    return table_.load(std::memory_order_acquire);
  }
  partition_info get(uint32_t partition) const {
    return (*snapshot())[partition];
  }

  /// This node now serves (local) or loads (loading) the partition.
  void set_local(uint32_t partition, partition_state state, uint64_t epoch);
  /// This node no longer serves the partition; `owner` may be empty.
  void set_remote(uint32_t partition, uint64_t epoch, std::string owner);
  /// The owners PostgreSQL recorded: updates the partitions this node does
  /// not hold (its own are its business, whatever the table says).
  void learn_owners(const std::vector<partition_info>& recorded);

  /// Partitions in the given state, in order.
  std::vector<uint32_t> in_state(partition_state state) const;

private:
  template <class Change>
  void change(Change&& apply);

  const uint32_t partitions_;
  const std::string self_;
  std::mutex writer_; // serialises copy-on-write changes
  std::atomic<std::shared_ptr<const table>> table_;
};

} // namespace rsv::actors
