#include "actors/runtime.hpp"

#include <caf/all.hpp>
#include <random>
#include <spdlog/spdlog.h>

namespace rsv::actors {

namespace {

/// The state of the chaos killer: until when it kills, and its dice.
struct chaos_killer_state {
  std::chrono::steady_clock::time_point until{};
  std::minstd_rand dice{std::random_device{}()};
  uint64_t kills = 0;
  static inline const char* name = "chaos_killer";
};

using chaos_killer_self = caf::stateful_actor<chaos_killer_state>;

} // namespace

bool kill_section(const section_entry& section, domain_metrics& metrics) {
  auto actor = section.actor();
  if (!actor) return false;
  // As a crash would: exit_reason::kill cannot be trapped, the mailbox is
  // dropped, and the registry sees a down message that is not a shutdown.
  caf::anon_send_exit(actor, caf::exit_reason::kill);
  metrics.section_kills.Increment();
  return true;
}

caf::actor spawn_chaos_killer(caf::actor_system& system,
                              std::shared_ptr<const directory> dir,
                              std::shared_ptr<domain_metrics> metrics,
                              millis interval_ms, millis duration_ms) {
  auto behavior = [dir, metrics, interval_ms,
                   duration_ms](chaos_killer_self* self) -> caf::behavior {
    auto interval = std::chrono::milliseconds(interval_ms);
    self->state.until = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(duration_ms);
    self->send(self, chaos_kill_atom::value);
    return {
        [=](chaos_kill_atom) {
          auto& st = self->state;
          if (std::chrono::steady_clock::now() >= st.until) {
            spdlog::warn("chaos: random section kills done, {} killed",
                         st.kills);
            self->quit();
            return;
          }
          // Every section of the node is equally likely, whatever its event.
          auto snapshot = dir->snapshot();
          std::vector<const section_entry*> live;
          for (const auto& section : snapshot->sections_by_no)
            if (section) live.push_back(section.get());
          if (!live.empty()) {
            auto pick = std::uniform_int_distribution<std::size_t>(
                0, live.size() - 1)(st.dice);
            if (kill_section(*live[pick], *metrics)) ++st.kills;
          }
          self->delayed_send(self, interval, chaos_kill_atom::value);
        },
    };
  };
  return system.spawn(behavior);
}

} // namespace rsv::actors
