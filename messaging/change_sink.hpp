#pragma once

#include "core/model.hpp"

#include <array>
#include <atomic>
#include <cstdint>

namespace rsv::messaging {

/// Receives every committed change of every section, after the store has
/// acknowledged it, for downstream consumers (the Kafka relay and the Redis
/// read model plug in here). Called from section actors: implementations must
/// be thread-safe and must not block.
class change_sink {
public:
  virtual ~change_sink() = default;
  virtual void publish(const seat_change& change) = 0;
};

/// Counts changes per kind and forwards them nowhere: the sink of a node that
/// has no Kafka or Redis configured, and an observer for tests.
class counting_change_sink final : public change_sink {
public:
  void publish(const seat_change& change) override {
    counts_[static_cast<std::size_t>(change.kind)].fetch_add(
        1, std::memory_order_relaxed);
  }
  uint64_t count(change_kind kind) const {
    return counts_[static_cast<std::size_t>(kind)].load();
  }

private:
  std::array<std::atomic<uint64_t>, 5> counts_{};
};

} // namespace rsv::messaging
