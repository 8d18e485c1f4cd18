#include "actors/runtime.hpp"

#include "core/assert.hpp"

#include <caf/all.hpp>

namespace rsv {

runtime::runtime(caf::actor_system& system, runtime_deps deps,
                 std::size_t customer_shard_count)
    : system_(system), deps_(std::move(deps)),
      directory_(std::make_shared<directory>()),
      shards_(std::make_shared<customer_shards>()) {
  RSV_ASSERT(customer_shard_count > 0, "at least one customer shard");
  RSV_ASSERT(deps_.store && deps_.sink && deps_.clock && deps_.metrics,
             "every runtime dependency is set");
  for (std::size_t i = 0; i < customer_shard_count; ++i)
    shards_->actors.push_back(spawn_customer_shard(system_, deps_));
  accounts_ = spawn_accounts(system_, deps_);
  registry_ = spawn_registry(system_, deps_, directory_, shards_);
}

runtime::~runtime() {
  auto stop = [this](const caf::actor& actor) {
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  };
  for (const auto& section : directory_->snapshot()->sections_by_no)
    if (section) stop(section->actor);
  for (const auto& shard : shards_->actors)
    stop(shard);
  stop(accounts_);
  stop(registry_);
}

} // namespace rsv
