#include "core/metrics.hpp"

#include "core/assert.hpp"

#include <array>

namespace rsv {

namespace {

prometheus::Counter& counter(prometheus::Registry& registry, const char* name,
                             const char* help) {
  return prometheus::BuildCounter()
      .Name(name)
      .Help(help)
      .Register(registry)
      .Add({});
}

prometheus::Gauge& gauge(prometheus::Registry& registry, const char* name,
                         const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(
      {});
}

} // namespace

prometheus::Counter& actor_restarts(prometheus::Registry& registry,
                                    const std::string& kind) {
  return prometheus::BuildCounter()
      .Name("rsv_actor_restarts_total")
      .Help("Actors and worker threads restarted by their supervisor after "
            "they died")
      .Register(registry)
      .Add({{"kind", kind}});
}

prometheus::Counter& chaos_faults(prometheus::Registry& registry,
                                  const std::string& kind) {
  return prometheus::BuildCounter()
      .Name("rsv_chaos_faults_total")
      .Help("Faults injected by the chaos facility (--chaos)")
      .Register(registry)
      .Add({{"kind", kind}});
}

domain_metrics::domain_metrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)),
      holds_created(counter(*registry_, "rsv_holds_created_total",
                            "Holds created and acknowledged")),
      holds_released(counter(*registry_, "rsv_holds_released_total",
                             "Holds released by their customer")),
      holds_expired(counter(*registry_, "rsv_holds_expired_total",
                            "Holds that reached their expiry")),
      bookings_confirmed(counter(*registry_, "rsv_bookings_confirmed_total",
                                 "Bookings confirmed")),
      bookings_cancelled(counter(*registry_, "rsv_bookings_cancelled_total",
                                 "Bookings cancelled")),
      requests_shed(counter(*registry_, "rsv_requests_shed_total",
                            "Requests answered 503 because a section's queue "
                            "was full")),
      section_reloads(counter(*registry_, "rsv_section_reloads_total",
                              "Sections reloaded from the store after one of "
                              "their writes failed")),
      section_restarts(actor_restarts(*registry_, "section")),
      section_kills(chaos_faults(*registry_, "section_kill")),
      holds_active(gauge(*registry_, "rsv_holds_active", "Holds now active")),
      hold_records(gauge(*registry_, "rsv_hold_records",
                         "Hold records in section memory: live holds, "
                         "bookings, and holds that ended within the "
                         "retention")),
      sections_failed(gauge(*registry_, "rsv_sections_failed",
                            "Sections that died too often and answer 503 "
                            "until the node restarts")),
      section_actors_live(gauge(*registry_, "rsv_section_actors_live",
                                "Section actors running on this node")),
      events(gauge(*registry_, "rsv_events", "Events known to this node")) {}

prometheus::Counter& domain_metrics::committed(change_kind kind) const {
  // In the order of change_kind.
  const std::array<prometheus::Counter*, change_kind_names.list.size()>
      counters{&holds_created, &holds_released, &holds_expired,
               &bookings_confirmed, &bookings_cancelled};
  auto* counter = counters.at(static_cast<std::size_t>(kind));
  RSV_ASSERT(counter != nullptr, "a counter for every change_kind");
  return *counter;
}

std::shared_ptr<domain_metrics> domain_metrics::make_detached() {
  return std::make_shared<domain_metrics>(
      std::make_shared<prometheus::Registry>());
}

} // namespace rsv
