#pragma once

#include <memory>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace rsv {

/// The domain's Prometheus metrics. Created once per process with the
/// registry that `/metrics` serialises; section actors update them from
/// scheduler threads (prometheus-cpp counters and gauges are atomic).
struct domain_metrics {
  explicit domain_metrics(prometheus::Registry& registry);

  prometheus::Counter& holds_created;
  prometheus::Counter& holds_released;
  prometheus::Counter& holds_expired;
  prometheus::Counter& bookings_confirmed;
  prometheus::Counter& bookings_cancelled;
  prometheus::Counter& requests_shed; // answered 503 because a queue was full
  prometheus::Counter& section_reloads; // after a failed write
  prometheus::Gauge& holds_active;
  prometheus::Gauge& section_actors_live;
  prometheus::Gauge& events;

  /// A registry and metrics for tests that do not look at them.
  static std::shared_ptr<domain_metrics> make_detached();

private:
  std::shared_ptr<prometheus::Registry> owned_registry_;
};

} // namespace rsv
