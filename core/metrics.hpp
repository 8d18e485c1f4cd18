#pragma once

#include "core/model.hpp"

#include <memory>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <string>

namespace rsv {

/// The domain's Prometheus metrics. Created once per process with the
/// registry that `/metrics` serialises; section actors update them from
/// scheduler threads (prometheus-cpp counters and gauges are atomic).
///
/// Owns (shares) its registry: the references below point into it, and
/// copies of this object outlive the code that made them (an actor's exit
/// functor runs on a CAF worker after `await_all_actors_done` returned).
struct domain_metrics {
private:
  // First: initialised before the references into it are taken.
  std::shared_ptr<prometheus::Registry> registry_;

public:
  explicit domain_metrics(std::shared_ptr<prometheus::Registry> registry);

  prometheus::Counter& holds_created;
  prometheus::Counter& holds_released;
  prometheus::Counter& holds_expired;
  prometheus::Counter& bookings_confirmed;
  prometheus::Counter& bookings_cancelled;
  prometheus::Counter& requests_shed;   // answered 503 because a queue was full
  prometheus::Counter& section_reloads; // after a failed write
  prometheus::Counter& section_restarts; // rsv_actor_restarts_total{section}
  prometheus::Counter& section_kills;    // rsv_chaos_faults_total{section_kill}
  prometheus::Gauge& holds_active;
  prometheus::Gauge& hold_records;    // in section memory, see section_state
  prometheus::Gauge& sections_failed; // after a restart storm
  prometheus::Gauge& section_actors_live;
  prometheus::Gauge& events;

  /// The counter of committed changes of `kind`: one of the first five.
  prometheus::Counter& committed(change_kind kind) const;

  /// A registry and metrics for tests that do not look at them.
  static std::shared_ptr<domain_metrics> make_detached();
};

/// `rsv_actor_restarts_total{kind}`: restarts by the supervisors (sections,
/// store writers, the relay). One family whoever registers it first; every
/// module adds its own kind.
prometheus::Counter& actor_restarts(prometheus::Registry& registry,
                                    const std::string& kind);

/// `rsv_chaos_faults_total{kind}`: faults injected by the chaos facility.
prometheus::Counter& chaos_faults(prometheus::Registry& registry,
                                  const std::string& kind);

} // namespace rsv
