#pragma once

#include <cstdint>
#include <string_view>

namespace rsv {

/// FNV-1a, 64 bits, over the bytes of `text`. The placement of every event
/// in a cluster follows from it, and hold and booking ids carry it, so it
/// must never change: tests/core/partition_test.cpp pins known values.
constexpr uint64_t fnv1a_64(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL; // FNV offset basis
  for (char c : text) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL; // FNV prime
  }
  return hash;
}

/// The partition of an event with this hash among `partitions` (> 0): the
/// unit of ownership in a cluster (docs/cluster.md).
constexpr uint32_t partition_of_hash(uint64_t event_hash, uint32_t partitions) {
  return static_cast<uint32_t>(event_hash % partitions);
}

constexpr uint32_t partition_of(std::string_view event_id,
                                uint32_t partitions) {
  return partition_of_hash(fnv1a_64(event_id), partitions);
}

} // namespace rsv
