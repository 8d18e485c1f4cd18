// The API in a cluster (docs/cluster.md): which node serves a request, and
// forwarding to it.

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/partition.hpp"
#include "http/admission_ticket.hpp"
#include "http/api.hpp"
#include "http/api_context.hpp"

#include <caf/all.hpp>

namespace rsv::http {

bool api::forwarded(const context& ctx) const {
  if (!config_.cluster || ctx.req.forwarded.empty()) return false;
  if (secrets_equal(ctx.req.forwarded, config_.forward_marker)) return true;
  for (const auto& marker : config_.forward_markers_accepted)
    if (secrets_equal(ctx.req.forwarded, marker)) return true;
  return false;
}

namespace {

/// A string member of a JSON body, if the body is an object that has one.
std::optional<std::string> body_member(const std::string& body,
                                       const char* name) {
  auto json = parse_json(body);
  if (!json || !json->is_object()) return std::nullopt;
  auto member = json->find(name);
  if (member == json->end() || !member->is_string()) return std::nullopt;
  return member->get<std::string>();
}

/// The id of the event a POST /v1/events creates, if its body names one or
/// names none. An event's id decides its node: one the client left out is
/// made up here and written into the body, so that the owner creates that
/// one.
std::optional<std::string> id_of_new_event(api_request& req) {
  auto json = parse_json(req.body);
  if (!json || !json->is_object()) return std::nullopt;
  auto id = json->find("id");
  if (id == json->end()) {
    auto made = make_random_id("evt");
    made[3] = '-'; // event ids have no '_'
    (*json)["id"] = made;
    req.body = dump(*json);
    return made;
  }
  if (!id->is_string()) return std::nullopt;
  return id->get<std::string>();
}

} // namespace

api_response api::absent(api_response not_found,
                         std::optional<uint32_t> partition) const {
  if (!config_.cluster || !partition ||
      config_.cluster->get(*partition).state == actors::partition_state::local)
    return not_found;
  auto response = problem(503, problem_code::unavailable,
                          "this event moved to another node while the "
                          "request waited; retry shortly");
  response.header("Retry-After", "1");
  return response;
}

std::optional<uint32_t>
api::event_partition(const std::string& event_id) const {
  if (!config_.cluster) return std::nullopt;
  return partition_of(event_id, config_.cluster->partitions());
}

std::optional<uint32_t>
api::record_partition(const std::optional<record_ref>& ref) const {
  // Ids from before clusters carry no event hash: the node that has the
  // section answers them (docs/cluster.md).
  if (!config_.cluster || !ref || ref->event_hash == 0) return std::nullopt;
  return partition_of_hash(ref->event_hash, config_.cluster->partitions());
}

std::optional<uint32_t> api::partition_of_request(context& ctx) {
  const auto& row = *ctx.match.def;
  const auto& params = ctx.match.params;
  switch (row.path) {
  case path_kind::event:
    return event_partition(params[0]);
  case path_kind::ticket:
    if (auto named = read_ticket(params[0]))
      return event_partition(named->event_id);
    return std::nullopt;
  case path_kind::hold:
    return record_partition(parse_hold_id(params[0]));
  case path_kind::booking:
    return record_partition(parse_booking_id(params[0]));
  case path_kind::none:
    break;
  }
  switch (row.body) {
  case body_kind::hold:
    if (auto event_id = body_member(ctx.req.body, "event_id"))
      return event_partition(*event_id);
    return std::nullopt;
  case body_kind::booking:
    if (auto hold_id = body_member(ctx.req.body, "hold_id"))
      return record_partition(parse_hold_id(*hold_id));
    return std::nullopt;
  case body_kind::event:
    if (auto event_id = id_of_new_event(ctx.req))
      return event_partition(*event_id);
    return std::nullopt;
  default:
    return std::nullopt;
  }
}

void api::route(context& ctx, bool may_retry) {
  auto partition = config_.cluster ? partition_of_request(ctx) : std::nullopt;
  if (!partition) {
    run(ctx);
    return;
  }
  auto info = config_.cluster->get(*partition);
  switch (info.state) {
  case actors::partition_state::local:
    run(ctx);
    return;
  case actors::partition_state::loading:
    ctx.done(problem(503, problem_code::unavailable,
                     "this node is taking the event over; retry shortly"));
    return;
  case actors::partition_state::remote:
    break;
  }
  if (forwarded(ctx)) {
    // One hop at most: the node that sent it reads the owners again.
    ctx.done(problem_from(make_error(errc::not_owner)));
    return;
  }
  forward(std::make_shared<context>(std::move(ctx)), info.owner, may_retry);
}

void api::forward(std::shared_ptr<context> ctx, std::string owner,
                  bool may_retry) {
  // Reads the owners again, then routes once more on the request's thread.
  auto again = [this, ctx] {
    config_.refresh_owners([this, ctx] {
      auto go = [this, ctx] { route(*ctx, false); };
      if (ctx->req.resume)
        ctx->req.resume(std::move(go));
      else
        go();
    });
  };
  if (owner.empty()) {
    if (may_retry) {
      again();
      return;
    }
    ctx->done(problem(503, problem_code::unavailable,
                      "no node serves this event right now (it is moving); "
                      "retry shortly"));
    return;
  }
  rsv::http::forward(
      owner, ctx->req, {{"X-Rsv-Forwarded", config_.forward_marker}},
      [ctx, again, may_retry,
       owner](caf::expected<api_response> answer) mutable {
        if (!answer) {
          // The owner is unreachable (killed, frozen, moving): the client
          // may retry; by then the group has moved its events.
          auto response = problem(503, problem_code::unavailable,
                                  "the node that serves this event (" + owner +
                                      ") did not answer; retry shortly");
          ctx->done(std::move(response));
          return;
        }
        if (answer->status == 421 && may_retry) {
          again();
          return;
        }
        ctx->done(std::move(*answer));
      });
}
} // namespace rsv::http
