#pragma once

// What the API's handlers share about one request and the small helpers
// every route family uses (api*.cpp, chaos_api.cpp); private to http/.

#include "http/api.hpp"
#include "http/decode.hpp"
#include "http/problem.hpp"

#include <atomic>
#include <caf/expected.hpp>
#include <functional>
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
struct request_context {
  api_request req;
  route_match match; // found: `match.def` is its row
  respond_fn done;
  /// Of a valid token: set by require_customer, or by limited.
  std::string customer_id;
  std::shared_ptr<const idempotency_scope> idempotency; // set by idempotent
  command decoded; // set by the decode stage, before the handler runs
};

inline api_response json_response(unsigned status, std::string body) {
  api_response response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

inline api_response created(std::string body, std::string location) {
  auto response = json_response(201, std::move(body));
  response.header("Location", std::move(location));
  return response;
}

inline std::string location_of(const api_response& response) {
  for (const auto& [name, value] : response.headers)
    if (name == "Location") return value;
  return {};
}

/// Runs a continuation on the connection's I/O thread (api_request::resume);
/// unset: inline.
using resume_fn = std::function<void(std::function<void()>)>;

/// Runs `work` on the connection's I/O thread through `resume`, or here
/// when there is none.
template <class Work>
void on_io_thread(const resume_fn& resume, Work&& work) {
  if (resume)
    resume(std::forward<Work>(work));
  else
    work();
}

/// Turns an actor's reply into an answer: `render` on success, the problem
/// on failure. The reply only posts the outcome to the connection's I/O
/// thread, where the answer is rendered, so that neither the actor nor the
/// store thread that replies spends its time on JSON.
template <class T, class Render>
actors::reply_fn<T> answer(respond_fn done, resume_fn resume, Render render) {
  return actors::reply_fn<T>{
      [done = std::move(done), resume = std::move(resume),
       render = std::move(render)](caf::expected<T> result) {
        auto respond = [done, render, result = std::move(result)] {
          if (!result)
            done(problem_from(result.error()));
          else
            done(render(*result));
        };
        on_io_thread(resume, std::move(respond));
      }};
}

template <class T, class Render>
actors::reply_fn<T> answer(const request_context& ctx, Render render) {
  return answer<T>(ctx.done, ctx.req.resume, std::move(render));
}

inline bool has_waiting_room(const actors::event_entry& event) {
  return event.def.waiting_room && event.def.waiting_room->enabled;
}

} // namespace rsv::http
