#include "actors/ownership.hpp"

#include "core/assert.hpp"

namespace rsv::actors {

ownership::ownership(uint32_t partitions, std::string self_address)
    : partitions_(partitions), self_(std::move(self_address)),
      table_(std::make_shared<const table>(partitions)) {
  RSV_ASSERT(partitions > 0, "a cluster has at least one partition");
}

template <class Change>
void ownership::change(Change&& apply) {
  std::lock_guard<std::mutex> guard{writer_};
  auto next = std::make_shared<table>(*snapshot());
  apply(*next);
  table_.store(std::move(next), std::memory_order_release);
}

void ownership::set_local(uint32_t partition, partition_state state,
                          uint64_t epoch) {
  RSV_ASSERT(partition < partitions_, "partition in range");
  RSV_ASSERT(state != partition_state::remote, "a local state");
  change([&](table& t) { t[partition] = {state, epoch, self_}; });
}

void ownership::set_remote(uint32_t partition, uint64_t epoch,
                           std::string owner) {
  RSV_ASSERT(partition < partitions_, "partition in range");
  change([&](table& t) {
    t[partition] = {partition_state::remote, epoch, std::move(owner)};
  });
}

void ownership::learn_owners(const std::vector<partition_info>& recorded) {
  change([&](table& t) {
    for (std::size_t p = 0; p < recorded.size() && p < t.size(); ++p) {
      if (t[p].state != partition_state::remote) continue;
      // An owner recorded as this node, for a partition this node does not
      // hold, is a leftover of its own past: nobody serves it yet.
      t[p].epoch = recorded[p].epoch;
      t[p].owner =
          recorded[p].owner == self_ ? std::string{} : recorded[p].owner;
    }
  });
}

std::vector<uint32_t> ownership::in_state(partition_state state) const {
  std::vector<uint32_t> out;
  auto current = snapshot();
  for (uint32_t p = 0; p < current->size(); ++p)
    if ((*current)[p].state == state) out.push_back(p);
  return out;
}

} // namespace rsv::actors
