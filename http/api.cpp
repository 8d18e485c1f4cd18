#include "http/api.hpp"

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/limits.hpp"
#include "core/partition.hpp"
#include "http/api_context.hpp"
#include "http/json_mapping.hpp"
#include "http/problem.hpp"
#include "persistence/cluster_store.hpp"

#include <caf/all.hpp>
#include <chrono>
#include <prometheus/text_serializer.h>
#include <sodium.h>

namespace rsv::http {

namespace {

api_response json_response(unsigned status, std::string body) {
  api_response response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

api_response created(std::string body, std::string location) {
  auto response = json_response(201, std::move(body));
  response.header("Location", std::move(location));
  return response;
}

std::string location_of(const api_response& response) {
  for (const auto& [name, value] : response.headers)
    if (name == "Location") return value;
  return {};
}

std::string fingerprint_of(const api_request& req) {
  unsigned char digest[16];
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, sizeof(digest));
  auto feed = [&](std::string_view part) {
    crypto_generichash_update(
        &state, reinterpret_cast<const unsigned char*>(part.data()),
        part.size());
    crypto_generichash_update(&state,
                              reinterpret_cast<const unsigned char*>("\n"), 1);
  };
  feed(req.method_text);
  feed(req.target);
  feed(req.body);
  crypto_generichash_final(&state, digest, sizeof(digest));
  char hex[sizeof(digest) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
  return hex;
}

/// Turns an actor's reply into an answer: `render` on success.
template <class T, class Render>
reply_fn<T> answer(respond_fn done, Render render) {
  return reply_fn<T>{[done = std::move(done),
                      render = std::move(render)](caf::expected<T> result) {
    if (!result)
      done(problem_from(result.error()));
    else
      done(render(*result));
  }};
}

/// What a section actor needs to write the answer of an idempotent request
/// with the change: `render` is the very function that makes the answer.
template <class View, class Render>
idempotency_capture_ptr<View>
capture_for(const std::shared_ptr<const idempotency_scope>& scope,
            Render render) {
  if (!scope) return nullptr;
  auto capture = std::make_shared<idempotency_capture<View>>();
  capture->key = scope->key;
  capture->fingerprint = scope->fingerprint;
  capture->written = scope->written;
  capture->render = [render](const View& view) {
    auto response = render(view);
    return stored_response{response.status, std::move(response.body),
                           location_of(response)};
  };
  return capture;
}

} // namespace

api::api(runtime& rt, api_config config,
         std::shared_ptr<prometheus::Registry> registry)
    : rt_(rt), config_(std::move(config)),
      tokens_(config_.token_secret, config_.session_ttl_seconds,
              config_.token_secrets_accepted),
      admissions_(config_.token_secret, config_.token_secrets_accepted),
      registry_(std::move(registry)),
      hashing_(config_.hash_threads, config_.hash_queue_max, registry_.get()),
      throttle_({config_.auth_per_address, config_.auth_per_email,
                 limits::auth_throttle_keys_max, registry_.get()}) {
  dummy_hash_ = hash_password("not a password of anyone", config_.hash_cost);
  if (config_.cluster) peer_metrics_ = make_peer_metrics(registry_);
}

api::~api() {
  hashing_.stop();
}

void api::handle(api_request req, respond_fn done) {
  if (!config_.trusted_proxies.empty())
    req.remote_address = client_address(req.remote_address, req.forwarded_for,
                                        config_.trusted_proxies);
  auto match = match_route(req.verb, req.target, config_.chaos);
  if (match.result == route_match::kind::not_found) {
    // Everything under /v1/ is the API's: an unknown API path stays a 404
    // problem even if a file of that name were among the web pages.
    auto api_path = std::string_view{req.target}.substr(0, 4) == "/v1/";
    if (!api_path && config_.web_pages && req.verb == method::get) {
      auto response = config_.web_pages->serve(req.target, req.if_none_match);
      response.route = "GET web page";
      done(std::move(response));
      return;
    }
    if (!api_path && config_.web_pages && config_.web_pages->find(req.target)) {
      auto response = problem(405, problem_code::method_not_allowed,
                              "the web pages allow GET");
      response.header("Allow", "GET");
      done(std::move(response));
      return;
    }
    done(problem(404, problem_code::not_found, "no such route"));
    return;
  }
  if (match.result == route_match::kind::wrong_method) {
    auto response = problem(405, problem_code::method_not_allowed,
                            "this route allows " + match.allow);
    response.header("Allow", match.allow);
    done(std::move(response));
    return;
  }
  auto ctx = std::make_shared<context>();
  ctx->req = std::move(req);
  ctx->match = std::move(match);
  const char* route_name = ctx->match.name;
  ctx->done = [route_name, done = std::move(done)](api_response response) {
    response.route = route_name;
    done(std::move(response));
  };
  handler target = nullptr;
  auto verb = ctx->req.verb;
  switch (ctx->match.route) {
  case route_id::health:
    target = &api::health;
    break;
  case route_id::ready:
    target = &api::readiness;
    break;
  case route_id::metrics:
    target = &api::metrics;
    break;
  case route_id::customers:
    target = &api::create_customer;
    break;
  case route_id::sessions:
    target = &api::create_session;
    break;
  case route_id::events:
    target = verb == method::post ? &api::create_event : &api::list_events;
    break;
  case route_id::event:
    target = &api::get_event;
    break;
  case route_id::seats:
    target = &api::get_seats;
    break;
  case route_id::stats:
    target = &api::get_stats;
    break;
  case route_id::queue_join:
    target = &api::queue_join;
    break;
  case route_id::queue_ticket:
    target = &api::queue_ticket;
    break;
  case route_id::holds:
    target = &api::create_hold;
    break;
  case route_id::hold:
    target = verb == method::del ? &api::release_hold : &api::get_hold;
    break;
  case route_id::bookings:
    target = verb == method::post ? &api::create_booking : &api::list_bookings;
    break;
  case route_id::booking:
    target = verb == method::del ? &api::cancel_booking : &api::get_booking;
    break;
  case route_id::chaos:
    target = verb == method::del ? &api::chaos_clear : &api::chaos_state;
    break;
  case route_id::chaos_kill_section:
    target = &api::chaos_kill_section;
    break;
  case route_id::chaos_kill_random:
    target = &api::chaos_kill_random;
    break;
  case route_id::chaos_store:
    target = &api::chaos_store;
    break;
  case route_id::chaos_relay:
    target = &api::chaos_relay;
    break;
  case route_id::chaos_redis:
    target = &api::chaos_redis;
    break;
  }
  // The write routes are rate limited: every POST and DELETE under /v1,
  // counted once, by the node the client reached.
  bool write = verb == method::post || verb == method::del;
  if (write && config_.rate_limits && config_.rate_limits->enabled() &&
      ctx->req.target.rfind("/v1/", 0) == 0 && !forwarded(*ctx)) {
    limited(std::move(ctx), target);
    return;
  }
  route(*ctx, target);
}

// -- cluster
// -------------------------------------------------------------------

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

std::optional<std::pair<std::string, std::string>>
read_ticket(std::string_view ticket);

} // namespace

api_response api::absent(api_response not_found,
                         std::optional<uint32_t> partition) const {
  if (!config_.cluster || !partition ||
      config_.cluster->get(*partition).state == partition_state::local)
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
  const auto& params = ctx.match.params;
  switch (ctx.match.route) {
  case route_id::event:
  case route_id::seats:
  case route_id::stats:
  case route_id::queue_join:
    return event_partition(params[0]);
  case route_id::queue_ticket:
    if (auto named = read_ticket(params[0]))
      return event_partition(named->first);
    return std::nullopt;
  case route_id::holds:
    if (auto event_id = body_member(ctx.req.body, "event_id"))
      return event_partition(*event_id);
    return std::nullopt;
  case route_id::hold:
    return record_partition(parse_hold_id(params[0]));
  case route_id::booking:
    return record_partition(parse_booking_id(params[0]));
  case route_id::bookings:
    if (ctx.req.verb != method::post) return std::nullopt;
    if (auto hold_id = body_member(ctx.req.body, "hold_id"))
      return record_partition(parse_hold_id(*hold_id));
    return std::nullopt;
  case route_id::events: {
    if (ctx.req.verb != method::post) return std::nullopt;
    // An event's id decides its node: one the client left out is made up
    // here and written into the body, so that the owner creates that one.
    auto json = parse_json(ctx.req.body);
    if (!json || !json->is_object()) return std::nullopt;
    auto id = json->find("id");
    if (id == json->end()) {
      auto made = make_random_id("evt");
      made[3] = '-'; // event ids have no '_'
      (*json)["id"] = made;
      ctx.req.body = dump(*json);
      return event_partition(made);
    }
    if (!id->is_string()) return std::nullopt;
    return event_partition(id->get<std::string>());
  }
  default:
    return std::nullopt;
  }
}

void api::route(context& ctx, handler target, bool may_retry) {
  auto partition = config_.cluster ? partition_of_request(ctx) : std::nullopt;
  if (!partition) {
    (this->*target)(ctx);
    return;
  }
  auto info = config_.cluster->get(*partition);
  switch (info.state) {
  case partition_state::local:
    (this->*target)(ctx);
    return;
  case partition_state::loading:
    ctx.done(problem(503, problem_code::unavailable,
                     "this node is taking the event over; retry shortly"));
    return;
  case partition_state::remote:
    break;
  }
  if (forwarded(ctx)) {
    // One hop at most: the node that sent it reads the owners again.
    ctx.done(problem_from(make_error(errc::not_owner)));
    return;
  }
  forward(std::make_shared<context>(std::move(ctx)), target, info.owner,
          may_retry);
}

void api::forward(std::shared_ptr<context> ctx, handler target,
                  std::string owner, bool may_retry) {
  // Reads the owners again, then routes once more on the request's thread.
  auto again = [this, ctx, target] {
    config_.refresh_owners([this, ctx, target] {
      auto go = [this, ctx, target] { route(*ctx, target, false); };
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

std::shared_ptr<void> api::io_thread_started(boost::asio::io_context& io) {
  // What the thread keeps while it runs: its Redis connection for the rate
  // limits, its connections to the other nodes of a cluster.
  struct per_thread {
    std::shared_ptr<void> rate_limits;
    std::shared_ptr<void> peers;
  };
  auto kept = std::make_shared<per_thread>();
  if (config_.rate_limits && config_.rate_limits->enabled())
    kept->rate_limits = config_.rate_limits->attach(io);
  if (config_.cluster)
    kept->peers = attach_peer_pool(io, config_.peers, peer_metrics_);
  return kept;
}

void api::limited(std::shared_ptr<context> ctx, handler target) {
  // The customer of a valid session token; an invalid one is counted by
  // address only (and refused 401 by the route).
  // The route takes the customer from here instead of checking the token
  // (an HMAC) again.
  if (auto id = tokens_.verify(bearer_token(ctx->req.authorization),
                               rt_.deps().clock->now_ms()))
    ctx->customer_id = std::move(*id);
  auto& limits = *config_.rate_limits;
  // Most requests of a busy caller are decided from the numbers this
  // thread reserved ahead: at once, on this thread.
  if (auto decision =
          limits.check_now(ctx->customer_id, ctx->req.remote_address)) {
    after_limits(*ctx, target, std::move(*decision));
    return;
  }
  limits.check(ctx->customer_id, ctx->req.remote_address,
               [this, ctx, target](rate_decision decision) {
                 auto go = [this, ctx, target,
                            decision = std::move(decision)]() mutable {
                   after_limits(*ctx, target, std::move(decision));
                 };
                 // Back to the connection's thread: the Redis thread only
                 // posts.
                 if (ctx->req.resume)
                   ctx->req.resume(std::move(go));
                 else
                   go();
               });
}

void api::after_limits(context& ctx, handler target, rate_decision decision) {
  if (!decision.allowed) {
    auto response =
        problem(429, problem_code::rate_limited,
                "retry after " + std::to_string(decision.retry_after_seconds) +
                    " second" + (decision.retry_after_seconds == 1 ? "" : "s"));
    response.header("Retry-After",
                    std::to_string(decision.retry_after_seconds));
    response.header("RateLimit", std::move(decision.remaining));
    response.header("RateLimit-Policy", std::move(decision.policy));
    ctx.done(std::move(response));
    return;
  }
  if (!decision.remaining.empty()) {
    auto inner = std::move(ctx.done);
    ctx.done = [inner = std::move(inner),
                remaining = std::move(decision.remaining),
                policy = std::move(decision.policy)](api_response response) {
      response.header("RateLimit", remaining);
      response.header("RateLimit-Policy", policy);
      inner(std::move(response));
    };
  }
  route(ctx, target);
}

// -- checks -------------------------------------------------------------------

bool api::require_admin(context& ctx) {
  auto token = bearer_token(ctx.req.authorization);
  if (!config_.admin_token.empty() && secrets_equal(token, config_.admin_token))
    return true;
  ctx.done(problem(401, problem_code::unauthorized,
                   "this call needs the admin token as a Bearer token"));
  return false;
}

bool api::require_customer(context& ctx) {
  if (!ctx.customer_id.empty()) return true; // verified by `limited`
  auto token = bearer_token(ctx.req.authorization);
  if (auto customer = tokens_.verify(token, rt_.deps().clock->now_ms())) {
    ctx.customer_id = std::move(*customer);
    return true;
  }
  ctx.done(problem(401, problem_code::unauthorized,
                   "this call needs a valid session token as a Bearer token"));
  return false;
}

bool api::require_json(context& ctx) {
  auto type = std::string_view{ctx.req.content_type};
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ')
    type.remove_suffix(1);
  auto lower = std::string{type};
  for (auto& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (ctx.req.body.empty() || lower == "application/json") return true;
  ctx.done(problem(415, problem_code::unsupported_media_type,
                   "send the body as Content-Type: application/json"));
  return false;
}

std::optional<nlohmann::json> api::json_body(context& ctx) {
  if (!require_json(ctx)) return std::nullopt;
  auto json = parse_json(ctx.req.body);
  if (!json)
    ctx.done(problem(400, problem_code::invalid_json, "the body is not JSON"));
  return json;
}

void api::idempotent(context& ctx, std::function<void(context&)> body) {
  if (!ctx.req.has_idempotency_key) {
    body(ctx);
    return;
  }
  if (!is_valid_idempotency_key(ctx.req.idempotency_key)) {
    ctx.done(problem(422, problem_code::validation_failed,
                     "Idempotency-Key: must be 1 to 255 visible ASCII "
                     "characters"));
    return;
  }
  auto shared = std::make_shared<context>(std::move(ctx));
  auto fingerprint = fingerprint_of(shared->req);
  auto shard = rt_.shard_for(shared->customer_id);
  auto on_decision = [shared, fingerprint, shard, body = std::move(body)](
                         caf::expected<idempotency_decision> decision) {
    auto& c = *shared;
    if (!decision) {
      c.done(problem_from(decision.error()));
      return;
    }
    using kind = idempotency_decision::kind;
    switch (decision->what) {
    case kind::proceed: {
      // The real outcome is recorded even when the client has already
      // been told 503 by its deadline: a retry then learns what happened.
      auto scope = std::make_shared<idempotency_scope>();
      scope->key = c.req.idempotency_key;
      scope->fingerprint = fingerprint;
      c.idempotency = scope;
      auto inner = std::move(c.done);
      c.done = [shard, customer = c.customer_id, scope,
                inner](api_response response) {
        stored_response stored{response.status, response.body,
                               location_of(response)};
        // 5xx: a retry runs again. An oversized refusal is not kept either
        // (limits::idempotency_response_bytes_max); an answer whose change
        // committed with its record always is.
        auto written = scope->written->load();
        auto keep = response.status < 500 &&
                    (written || response.body.size() <=
                                    limits::idempotency_response_bytes_max);
        caf::anon_send(shard, idempotency_finish{customer, scope->key,
                                                 scope->fingerprint,
                                                 std::move(stored), keep,
                                                 written});
        inner(std::move(response));
      };
      body(c);
      return;
    }
    case kind::replay: {
      auto& stored = decision->response;
      auto response = json_response(stored.status, stored.body);
      if (stored.status >= 400)
        response.content_type = "application/problem+json";
      if (!stored.location.empty())
        response.header("Location", stored.location);
      response.header("Idempotent-Replayed", "true");
      c.done(std::move(response));
      return;
    }
    case kind::key_reused:
      c.done(problem(422, problem_code::idempotency_key_reused,
                     "this Idempotency-Key was used with another request"));
      return;
    case kind::in_use: {
      auto response = problem(409, problem_code::idempotency_key_in_use,
                              "a request with this Idempotency-Key is still "
                              "running; retry shortly");
      response.header("Retry-After", "1");
      c.done(std::move(response));
      return;
    }
    case kind::too_many_keys: {
      auto response = problem(
          429, problem_code::rate_limited,
          "this customer has " +
              std::to_string(limits::idempotency_keys_per_customer_max) +
              " Idempotency-Keys recorded in the last 24 hours; a new key "
              "is accepted when the oldest expires");
      response.header("Retry-After",
                      std::to_string(decision->retry_after_seconds));
      c.done(std::move(response));
      return;
    }
    }
  };
  caf::anon_send(
      shard, idempotency_begin{
                 shared->customer_id, shared->req.idempotency_key, fingerprint,
                 reply_fn<idempotency_decision>{std::move(on_decision)}});
}

// -- operations ---------------------------------------------------------------

void api::health(context& ctx) {
  auto store_state = rt_.deps().store->health();
  auto kafka =
      config_.kafka_health ? config_.kafka_health() : service_state::disabled;
  auto redis =
      config_.redis_health ? config_.redis_health() : service_state::disabled;
  bool healthy = store_state != service_state::down &&
                 kafka != service_state::down && redis != service_state::down;
  nlohmann::json body = {
      {"status", healthy ? "healthy" : "unhealthy"},
      {"services",
       {{"store", to_string(store_state)},
        {"kafka", to_string(kafka)},
        {"redis", to_string(redis)}}},
  };
  if (config_.cluster) {
    // This node's partitions and events, and every member as the owners
    // table says (docs/cluster.md, "Operating").
    auto table = config_.cluster->snapshot();
    auto dir = rt_.dir().snapshot();
    nlohmann::json members = nlohmann::json::object();
    nlohmann::json local = nlohmann::json::array();
    nlohmann::json loading = nlohmann::json::array();
    nlohmann::json epochs = nlohmann::json::array();
    for (uint32_t p = 0; p < table->size(); ++p) {
      const auto& info = (*table)[p];
      epochs.push_back(info.epoch);
      if (info.state == partition_state::local) local.push_back(p);
      if (info.state == partition_state::loading) loading.push_back(p);
      if (!info.owner.empty() && info.state != partition_state::loading)
        members[info.owner].push_back(p);
    }
    nlohmann::json events = nlohmann::json::array();
    for (const auto& event : dir->events_ordered)
      events.push_back(event->def.id);
    auto group = config_.membership_health ? config_.membership_health()
                                           : service_state::disabled;
    body["cluster"] = {{"node", config_.cluster->self()},
                       {"partitions", config_.cluster->partitions()},
                       {"group", to_string(group)},
                       {"owned", std::move(local)},
                       {"loading", std::move(loading)},
                       {"events", std::move(events)},
                       {"members", std::move(members)},
                       {"epochs", std::move(epochs)}};
  }
  ctx.done(json_response(healthy ? 200 : 503, dump(body)));
}

void api::readiness(context& ctx) {
  bool ok = ready_ && rt_.deps().store->health() == service_state::ok;
  if (ok)
    ctx.done(json_response(200, R"({"status":"ready"})"));
  else
    ctx.done(problem(503, problem_code::unavailable,
                     "the node is starting, recovering or draining"));
}

void api::metrics(context& ctx) {
  prometheus::TextSerializer serializer;
  api_response response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = serializer.Serialize(registry_->Collect());
  ctx.done(std::move(response));
}

// -- accounts -----------------------------------------------------------------

bool api::admit_password_check(context& ctx, const std::string& email) {
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  auto decision = throttle_.admit(ctx.req.remote_address, email, now_ms);
  if (decision.allowed) return true;
  auto seconds = std::to_string(decision.retry_after_seconds);
  auto response = problem(429, problem_code::rate_limited,
                          std::string{"too many logins and registrations "} +
                              (std::string_view{decision.by} == "email"
                                   ? "for this email"
                                   : "from this address") +
                              "; retry after " + seconds + " second" +
                              (decision.retry_after_seconds == 1 ? "" : "s"));
  response.header("Retry-After", seconds);
  ctx.done(std::move(response));
  return false;
}

hashing_pool::clock::time_point api::password_check_deadline() const {
  // The request's own deadline: past it the server has answered 503, and a
  // hash would be computed for nobody.
  return hashing_pool::clock::now() +
         std::chrono::milliseconds(config_.request_timeout_ms);
}

api_response api::password_checks_busy() {
  auto response = problem(503, problem_code::unavailable,
                          "too many logins and registrations are waiting for "
                          "their password check; retry shortly");
  response.header("Retry-After", "1");
  return response;
}

api_response api::password_check_late() {
  auto response =
      problem(503, problem_code::unavailable,
              "the request's deadline passed before its password was checked; "
              "retry shortly");
  response.header("Retry-After", "1");
  return response;
}

void api::create_customer(context& ctx) {
  auto json = json_body(ctx);
  if (!json) return;
  auto body = parse_registration(*json);
  if (!body) {
    ctx.done(problem_from(body.error()));
    return;
  }
  if (!admit_password_check(ctx, body->email)) return;
  // Hashing takes tens of milliseconds of CPU: never on an I/O thread.
  auto job = [this, body = std::move(*body), done = ctx.done](bool late) {
    if (late) {
      done(password_check_late());
      return;
    }
    customer_record record;
    record.customer_id = make_random_id("cus");
    record.email = body.email;
    record.password_hash = hash_password(body.password, config_.hash_cost);
    record.created_at_ms = rt_.deps().clock->now_ms();
    if (record.password_hash.empty()) {
      done(problem(503, problem_code::unavailable, "out of memory hashing"));
      return;
    }
    caf::anon_send(
        rt_.accounts(),
        register_customer_request{
            std::move(record),
            answer<customer_record>(done, [](const customer_record& r) {
              return created(
                  dump({{"customer_id", r.customer_id}, {"email", r.email}}),
                  "/v1/customers/" + r.customer_id);
            })});
  };
  if (!hashing_.submit(password_check_deadline(), std::move(job)))
    ctx.done(password_checks_busy());
}

void api::create_session(context& ctx) {
  // The answer holds a credential: no cache on the way may keep it (as
  // OAuth's token endpoint answers, RFC 6749 section 5.1).
  ctx.done = [inner = std::move(ctx.done)](api_response response) {
    response.header("Cache-Control", "no-store");
    inner(std::move(response));
  };
  auto json = json_body(ctx);
  if (!json) return;
  auto body = parse_login(*json);
  if (!body) {
    ctx.done(problem_from(body.error()));
    return;
  }
  if (!admit_password_check(ctx, body->email)) return;
  auto deadline = password_check_deadline();
  auto password = std::make_shared<std::string>(std::move(body->password));
  auto on_found = [this, password, deadline,
                   done = ctx.done](caf::expected<customer_record> found) {
    if (!found && code_of(found.error()) != errc::invalid_credentials) {
      done(problem_from(found.error()));
      return;
    }
    // Unknown emails are checked against a dummy hash, so both wrong email
    // and wrong password take the same time and get the same answer.
    auto hash = found ? found->password_hash : dummy_hash_;
    auto customer_id = found ? found->customer_id : std::string{};
    auto job = [this, hash = std::move(hash), password,
                customer_id = std::move(customer_id), done](bool late) {
      if (late) {
        done(password_check_late());
        return;
      }
      if (!verify_password(hash, *password) || customer_id.empty()) {
        done(problem_from(make_error(errc::invalid_credentials)));
        return;
      }
      auto issued = tokens_.issue(customer_id, rt_.deps().clock->now_ms());
      done(json_response(
          201, dump({{"token", issued.token},
                     {"customer_id", customer_id},
                     {"expires_at", format_rfc3339(issued.expires_at_ms)}})));
    };
    if (!hashing_.submit(deadline, std::move(job)))
      done(password_checks_busy());
  };
  caf::anon_send(
      rt_.accounts(),
      find_customer_request{body->email, reply_fn<customer_record>{on_found}});
}

void api::list_events(context& ctx) {
  if (!config_.cluster_db) {
    ctx.done(json_response(200, render_events(*rt_.dir().snapshot())));
    return;
  }
  // Each node has only its own events in memory: the list (with counts as
  // of the last commits) comes from PostgreSQL.
  config_.cluster_db->list_events(
      [done = ctx.done](caf::expected<std::vector<event_summary>> events) {
        if (!events)
          done(problem_from(events.error()));
        else
          done(json_response(200, render_events(*events)));
      });
}

void api::create_event(context& ctx) {
  if (!require_admin(ctx)) return;
  auto json = json_body(ctx);
  if (!json) return;
  auto def = parse_event(*json, static_cast<bool>(config_.redis_health));
  if (!def) {
    ctx.done(problem_from(def.error()));
    return;
  }
  caf::anon_send(
      rt_.registry(),
      create_event_request{
          std::move(*def),
          answer<std::shared_ptr<const event_entry>>(
              ctx.done, [](const std::shared_ptr<const event_entry>& e) {
                return created(render_event(*e), "/v1/events/" + e->def.id);
              })});
}

void api::get_event(context& ctx) {
  auto event = rt_.dir().find_event(ctx.match.params[0]);
  if (!event) {
    ctx.done(absent(problem(404, problem_code::not_found, "no such event"),
                    event_partition(ctx.match.params[0])));
    return;
  }
  if (!config_.reads_from_read_model) {
    ctx.done(json_response(200, render_event(*event)));
    return;
  }
  std::vector<std::string> ids;
  ids.reserve(event->sections.size());
  for (const auto& section : event->sections)
    ids.push_back(section->layout->section_id);
  config_.read_model->read_counts(
      event->def.id, ids,
      [event, done = ctx.done, resume = ctx.req.resume](
          caf::expected<std::vector<seat_counts>> counts) {
        // Without the read model's copy, the directory's counts (what the
        // sections published here) answer. Rendered on the I/O thread.
        auto render = [event, done, counts = std::move(counts)] {
          done(json_response(
              200, render_event(*event, counts ? &*counts : nullptr)));
        };
        if (resume)
          resume(std::move(render));
        else
          render();
      });
}

void api::get_seats(context& ctx) {
  auto event = rt_.dir().find_event(ctx.match.params[0]);
  auto section = event ? event->find_section(ctx.match.params[1]) : nullptr;
  if (!section) {
    ctx.done(absent(
        problem(404, problem_code::not_found, "no such event or section"),
        event_partition(ctx.match.params[0])));
    return;
  }
  // Rendered off the actor, once per version (http/seat_maps.hpp).
  auto from_actor = [this, section,
                     gzip = ctx.req.accepts_gzip](respond_fn done) {
    seat_maps_.get(section, gzip, std::move(done));
  };
  if (!config_.reads_from_read_model) {
    from_actor(ctx.done);
    return;
  }
  config_.read_model->read_seats(
      event->def.id, section->layout->section_id, section->layout->seat_count(),
      [section, from_actor, done = ctx.done,
       resume = ctx.req.resume](caf::expected<section_availability> seats) {
        if (!seats) {
          from_actor(done);
          return;
        }
        // Rendering a large section is work: not on the Redis thread.
        auto render = [section, done,
                       statuses = std::move(seats->statuses)]() mutable {
          done(json_response(200, render_seat_map(seat_map_view{
                                      section->layout, std::move(statuses)})));
        };
        if (resume)
          resume(std::move(render));
        else
          render();
      });
}

void api::get_stats(context& ctx) {
  if (!require_admin(ctx)) return;
  auto event = rt_.dir().find_event(ctx.match.params[0]);
  if (!event) {
    ctx.done(absent(problem(404, problem_code::not_found, "no such event"),
                    event_partition(ctx.match.params[0])));
    return;
  }
  ctx.done(json_response(200, render_stats(*event)));
}

namespace {

/// A ticket names its event and customer: `qtk_` and base64url of
/// "<event id>/<customer id>". It grants nothing by itself (the ticket
/// routes check that it is the caller's), so it needs no signature, and the
/// same customer joining again gets the same ticket.
std::string make_ticket(const std::string& event_id,
                        const std::string& customer_id) {
  auto plain = event_id + "/" + customer_id;
  std::string encoded(
      sodium_base64_ENCODED_LEN(plain.size(),
                                sodium_base64_VARIANT_URLSAFE_NO_PADDING),
      '\0');
  sodium_bin2base64(encoded.data(), encoded.size(),
                    reinterpret_cast<const unsigned char*>(plain.data()),
                    plain.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  encoded.resize(encoded.find('\0'));
  return "qtk_" + encoded;
}

/// The event and customer of a ticket; nullopt for anything else.
std::optional<std::pair<std::string, std::string>>
read_ticket(std::string_view ticket) {
  constexpr std::string_view prefix = "qtk_";
  if (ticket.size() <= prefix.size() || ticket.size() > 256 ||
      ticket.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  ticket.remove_prefix(prefix.size());
  std::string plain(ticket.size(), '\0');
  std::size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(plain.data()),
                        plain.size(), ticket.data(), ticket.size(), nullptr,
                        &length, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return std::nullopt;
  plain.resize(length);
  auto slash = plain.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == plain.size())
    return std::nullopt;
  return std::pair{plain.substr(0, slash), plain.substr(slash + 1)};
}

bool has_waiting_room(const event_entry& event) {
  return event.def.waiting_room && event.def.waiting_room->enabled;
}

api_response no_redis() {
  auto response = problem(503, problem_code::unavailable,
                          "the waiting room needs Redis, which this node "
                          "does not have configured");
  response.header("Retry-After", "1");
  return response;
}

} // namespace

void api::queue_join(context& ctx) {
  if (!require_customer(ctx)) return;
  idempotent(ctx, [this](context& c) {
    auto event = rt_.dir().find_event(c.match.params[0]);
    if (!event || !has_waiting_room(*event)) {
      c.done(absent(problem(404, problem_code::not_found,
                            "no such event with an enabled waiting room"),
                    event ? std::nullopt : event_partition(c.match.params[0])));
      return;
    }
    if (!config_.waiting_room) {
      c.done(no_redis());
      return;
    }
    auto ticket = make_ticket(event->def.id, c.customer_id);
    config_.waiting_room->join(
        event->def.id, c.customer_id,
        [done = c.done, ticket](caf::expected<queue_standing> standing) {
          if (!standing) {
            done(problem_from(standing.error()));
            return;
          }
          // An admitted customer who joins again is at position 0, as the
          // ticket shows it.
          auto position = standing->what == queue_standing::kind::waiting
                              ? standing->position
                              : 0;
          done(created(dump({{"ticket", ticket}, {"position", position}}),
                       "/v1/queue/" + ticket));
        });
  });
}

void api::queue_ticket(context& ctx) {
  if (!require_customer(ctx)) return;
  auto named = read_ticket(ctx.match.params[0]);
  auto event = named && named->second == ctx.customer_id
                   ? rt_.dir().find_event(named->first)
                   : nullptr;
  if (!event || !has_waiting_room(*event)) {
    ctx.done(
        absent(problem(404, problem_code::not_found, "no such ticket"),
               named && !event ? event_partition(named->first) : std::nullopt));
    return;
  }
  if (!config_.waiting_room) {
    ctx.done(no_redis());
    return;
  }
  auto ticket = ctx.match.params[0];
  auto ttl_ms = config_.admission_ttl_seconds * 1000;
  config_.waiting_room->poll(
      event->def.id, ctx.customer_id,
      [this, done = ctx.done, ticket, ttl_ms, event_id = event->def.id,
       customer_id = ctx.customer_id](caf::expected<queue_standing> standing) {
        if (!standing) {
          done(problem_from(standing.error()));
          return;
        }
        switch (standing->what) {
        case queue_standing::kind::absent:
          done(problem(404, problem_code::not_found,
                       "no such ticket: not in the queue, or its admission "
                       "is past its time (join again)"));
          return;
        case queue_standing::kind::waiting:
          done(json_response(200, dump({{"ticket", ticket},
                                        {"position", standing->position},
                                        {"admitted", false}})));
          return;
        case queue_standing::kind::admitted: {
          auto expires_at_ms = standing->admitted_at_ms + ttl_ms;
          done(json_response(
              200,
              dump({{"ticket", ticket},
                    {"position", 0},
                    {"admitted", true},
                    {"admission_token",
                     admissions_.issue(event_id, customer_id, expires_at_ms)},
                    {"expires_at", format_rfc3339(expires_at_ms)}})));
          return;
        }
        }
      });
}

void api::create_hold(context& ctx) {
  if (!require_customer(ctx)) return;
  idempotent(ctx, [this](context& c) {
    auto json = json_body(c);
    if (!json) return;
    auto body = parse_hold(*json);
    if (!body) {
      c.done(problem_from(body.error()));
      return;
    }
    auto event = rt_.dir().find_event(body->event_id);
    auto section = event ? event->find_section(body->section_id) : nullptr;
    if (!section) {
      c.done(absent(
          problem(404, problem_code::not_found, "no such event or section"),
          event ? std::nullopt : event_partition(body->event_id)));
      return;
    }
    // Checked by its signature alone: no Redis round trip, and customers
    // admitted before Redis went down keep holding seats.
    if (has_waiting_room(*event) &&
        !admissions_.verify(c.req.admission_token, event->def.id, c.customer_id,
                            rt_.deps().clock->now_ms())) {
      c.done(problem(403, problem_code::admission_required,
                     "this event has a waiting room: send the admission "
                     "token of your ticket as X-Admission-Token"));
      return;
    }
    if (section->queued.fetch_add(1, std::memory_order_relaxed) >=
        static_cast<int64_t>(limits::section_mailbox_max)) {
      section->queued.fetch_sub(1, std::memory_order_relaxed);
      rt_.deps().metrics->requests_shed.Increment();
      c.done(problem(503, problem_code::unavailable,
                     "this section is overloaded; retry shortly"));
      return;
    }
    auto render = [](const hold_view& h) {
      return created(render_hold(h), "/v1/holds/" + h.hold_id);
    };
    hold_request hold{c.customer_id,
                      std::move(body->seats),
                      body->quantity,
                      false,
                      answer<hold_view>(c.done, render),
                      capture_for<hold_view>(c.idempotency, render)};
    if (event->def.max_seats_per_customer)
      caf::anon_send(rt_.shard_for(c.customer_id),
                     reserve_quota_request{event->def.id,
                                           *event->def.max_seats_per_customer,
                                           section, std::move(hold)});
    else
      caf::anon_send(section->actor(), std::move(hold));
  });
}

namespace {

/// The section that owns a hold or booking id, with one more request counted
/// as queued for it; nullptr, with `not_found` answered, when there is none.
template <class Absent>
std::shared_ptr<section_entry>
owner_of(const directory& dir, const std::optional<record_ref>& ref,
         const respond_fn& done, Absent&& absent) {
  auto section = ref ? dir.find_section(ref->section_no) : nullptr;
  if (!section) {
    done(absent());
    return nullptr;
  }
  section->queued.fetch_add(1, std::memory_order_relaxed);
  return section;
}

api_response ok_hold(const hold_view& hold) {
  return json_response(200, render_hold(hold));
}

api_response ok_booking(const booking_view& booking) {
  return json_response(200, render_booking(booking));
}

api_response no_content(const hold_view&) {
  api_response response;
  response.status = 204;
  response.content_type.clear();
  return response;
}

} // namespace

void api::get_hold(context& ctx) {
  if (!require_customer(ctx)) return;
  auto ref = parse_hold_id(ctx.match.params[0]);
  if (auto section = owner_of(rt_.dir(), ref, ctx.done, [&] {
        return absent(problem_from(no_such_hold()), record_partition(ref));
      }))
    caf::anon_send(section->actor(),
                   get_hold_request{ctx.customer_id, ref->slot,
                                    answer<hold_view>(ctx.done, ok_hold)});
}

void api::release_hold(context& ctx) {
  if (!require_customer(ctx)) return;
  auto ref = parse_hold_id(ctx.match.params[0]);
  if (auto section = owner_of(rt_.dir(), ref, ctx.done, [&] {
        return absent(problem_from(no_such_hold()), record_partition(ref));
      }))
    caf::anon_send(
        section->actor(),
        release_hold_request{ctx.customer_id, ref->slot,
                             answer<hold_view>(ctx.done, no_content)});
}

void api::create_booking(context& ctx) {
  if (!require_customer(ctx)) return;
  idempotent(ctx, [this](context& c) {
    auto json = json_body(c);
    if (!json) return;
    auto hold_id = parse_booking(*json);
    if (!hold_id) {
      c.done(problem_from(hold_id.error()));
      return;
    }
    auto ref = parse_hold_id(*hold_id);
    auto section = owner_of(rt_.dir(), ref, c.done, [&] {
      return absent(problem_from(no_such_hold()), record_partition(ref));
    });
    if (!section) return;
    auto render = [](const booking_view& b) {
      return created(render_booking(b), "/v1/bookings/" + b.booking_id);
    };
    caf::anon_send(
        section->actor(),
        book_request{c.customer_id, ref->slot,
                     answer<booking_view>(c.done, render),
                     capture_for<booking_view>(c.idempotency, render)});
  });
}

void api::list_bookings(context& ctx) {
  if (!require_customer(ctx)) return;
  if (config_.cluster_db) {
    // Bookings of events that other nodes serve: PostgreSQL has them all,
    // and a booking answered 2xx is committed there.
    config_.cluster_db->list_bookings(
        ctx.customer_id,
        [done = ctx.done](caf::expected<std::vector<booking_view>> list) {
          if (!list)
            done(problem_from(list.error()));
          else
            done(json_response(200, render_bookings(*list)));
        });
    return;
  }
  caf::anon_send(rt_.shard_for(ctx.customer_id),
                 list_bookings_request{
                     ctx.customer_id,
                     answer<std::vector<booking_view>>(
                         ctx.done, [](const std::vector<booking_view>& list) {
                           return json_response(200, render_bookings(list));
                         })});
}

void api::get_booking(context& ctx) {
  if (!require_customer(ctx)) return;
  auto ref = parse_booking_id(ctx.match.params[0]);
  if (auto section = owner_of(rt_.dir(), ref, ctx.done, [&] {
        return absent(problem_from(no_such_booking()), record_partition(ref));
      }))
    caf::anon_send(
        section->actor(),
        get_booking_request{ctx.customer_id, ref->slot,
                            answer<booking_view>(ctx.done, ok_booking)});
}

void api::cancel_booking(context& ctx) {
  if (!require_customer(ctx)) return;
  auto ref = parse_booking_id(ctx.match.params[0]);
  if (auto section = owner_of(rt_.dir(), ref, ctx.done, [&] {
        return absent(problem_from(no_such_booking()), record_partition(ref));
      }))
    caf::anon_send(
        section->actor(),
        cancel_booking_request{ctx.customer_id, ref->slot,
                               answer<booking_view>(ctx.done, ok_booking)});
}

} // namespace rsv::http
