#pragma once

#include "http/api_types.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace rsv::http {

/// Every route of the contract, and the chaos facility's admin routes (an
/// extension outside the contract; they exist only with --chaos).
enum class route_id {
  health,
  ready,
  metrics,
  customers,
  sessions,
  events,
  event,
  seats,
  stats,
  queue_join,
  queue_ticket,
  holds,
  hold,
  bookings,
  booking,
  chaos,
  chaos_kill_section,
  chaos_kill_random,
  chaos_store,
  chaos_relay,
  chaos_redis,
};

/// The outcome of matching a request line: a route with its path
/// parameters, or not found, or a known path with the wrong method (with
/// the methods the path allows, for the Allow header).
struct route_match {
  enum class kind { found, not_found, wrong_method } result = kind::not_found;
  route_id route = route_id::health;
  const char* name = "unmatched"; // e.g. "POST /v1/holds", for metrics
  std::vector<std::string> params;
  std::string allow;
};

/// Matches `target` (path and optional query) against the route table.
/// Without `with_chaos` the chaos routes do not exist: 404 like any unknown
/// path, never 405.
route_match match_route(method verb, std::string_view target,
                        bool with_chaos = false);

} // namespace rsv::http
