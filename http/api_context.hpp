#pragma once

// What the API's handlers share about one request (api.cpp, chaos_api.cpp);
// private to http/.

#include "http/api.hpp"

#include <atomic>
#include <memory>
#include <string>

namespace rsv::http {

/// The Idempotency-Key of a request that runs, and whether its answer was
/// written with the change it reports.
struct idempotency_scope {
  std::string key;
  std::string fingerprint;
  std::shared_ptr<std::atomic<bool>> written =
      std::make_shared<std::atomic<bool>>(false);
};

/// One request on its way through the API.
struct api::context {
  api_request req;
  route_match match;
  respond_fn done;
  std::string customer_id; // of a valid token: set by require_customer or limited
  std::shared_ptr<const idempotency_scope> idempotency; // set by idempotent
};

} // namespace rsv::http
