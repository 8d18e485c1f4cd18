#include "http/api.hpp"

#include "core/assert.hpp"
#include "core/limits.hpp"
#include "http/api_context.hpp"

#include <caf/all.hpp>
#include <sodium.h>

namespace rsv::http {

namespace {

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

} // namespace

api::api(actors::runtime& rt, api_config config,
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
  if (match.result != route_match::kind::found) {
    unmatched(req, match, done);
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
  // The write routes are rate limited, counted once, by the node the client
  // reached.
  if (ctx->match.def->rate_limited && config_.rate_limits &&
      config_.rate_limits->enabled() && !forwarded(*ctx)) {
    limited(std::move(ctx));
    return;
  }
  route(*ctx);
}

void api::unmatched(api_request& req, route_match& match,
                    const respond_fn& done) const {
  if (match.result == route_match::kind::wrong_method) {
    auto response = problem(405, problem_code::method_not_allowed,
                            "this route allows " + match.allow);
    response.header("Allow", match.allow);
    done(std::move(response));
    return;
  }
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
}

void api::run(context& ctx) {
  const auto& row = *ctx.match.def;
  // The router never matches these routes without --chaos.
  RSV_ASSERT(!row.chaos || config_.chaos,
             "a chaos route matched without --chaos");
  if (row.no_store)
    ctx.done = [inner = std::move(ctx.done)](api_response response) {
      response.header("Cache-Control", "no-store");
      inner(std::move(response));
    };
  if (row.auth == auth_kind::admin && !require_admin(ctx)) return;
  if (row.auth == auth_kind::customer && !require_customer(ctx)) return;
  if (row.idempotent)
    idempotent(ctx, [this](context& c) { decode_and_handle(c); });
  else
    decode_and_handle(ctx);
}

void api::decode_and_handle(context& ctx) {
  decode_options options{.waiting_rooms =
                             static_cast<bool>(config_.redis_health)};
  auto result = decode(*ctx.match.def, ctx.req, ctx.match.params, options);
  if (auto* refused = std::get_if<api_response>(&result)) {
    ctx.done(std::move(*refused));
    return;
  }
  ctx.decoded = std::move(std::get<command>(result));
  (this->*ctx.match.def->handler)(ctx);
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

// -- rate limits --------------------------------------------------------------

void api::limited(std::shared_ptr<context> ctx) {
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
    after_limits(*ctx, std::move(*decision));
    return;
  }
  limits.check(ctx->customer_id, ctx->req.remote_address,
               [this, ctx](messaging::rate_decision decision) {
                 auto go = [this, ctx,
                            decision = std::move(decision)]() mutable {
                   after_limits(*ctx, std::move(decision));
                 };
                 // Back to the connection's thread: the Redis thread only
                 // posts.
                 if (ctx->req.resume)
                   ctx->req.resume(std::move(go));
                 else
                   go();
               });
}

void api::after_limits(context& ctx, messaging::rate_decision decision) {
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
  route(ctx);
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

bool api::admitted(context& ctx, const actors::event_entry& event) {
  // Checked by its signature alone: no Redis round trip, and customers
  // admitted before Redis went down keep holding seats.
  if (!ctx.match.def->waiting_room_gate || !has_waiting_room(event) ||
      admissions_.verify(ctx.req.admission_token, event.def.id, ctx.customer_id,
                         rt_.deps().clock->now_ms()))
    return true;
  ctx.done(problem(403, problem_code::admission_required,
                   "this event has a waiting room: send the admission "
                   "token of your ticket as X-Admission-Token"));
  return false;
}

// -- idempotency --------------------------------------------------------------

namespace {

/// The answer for an idempotency decision other than `proceed`: the stored
/// answer replayed, or why the request may not run now.
api_response
answer_without_running(const actors::idempotency_decision& decision) {
  using kind = actors::idempotency_decision::kind;
  switch (decision.what) {
  case kind::proceed:
    break;
  case kind::replay: {
    const auto& stored = decision.response;
    auto response = json_response(stored.status, stored.body);
    if (stored.status >= 400)
      response.content_type = "application/problem+json";
    if (!stored.location.empty()) response.header("Location", stored.location);
    response.header("Idempotent-Replayed", "true");
    return response;
  }
  case kind::key_reused:
    return problem(422, problem_code::idempotency_key_reused,
                   "this Idempotency-Key was used with another request");
  case kind::in_use: {
    auto response = problem(409, problem_code::idempotency_key_in_use,
                            "a request with this Idempotency-Key is still "
                            "running; retry shortly");
    response.header("Retry-After", "1");
    return response;
  }
  case kind::too_many_keys: {
    auto response = problem(
        429, problem_code::rate_limited,
        "this customer has " +
            std::to_string(limits::idempotency_keys_per_customer_max) +
            " Idempotency-Keys recorded in the last 24 hours; a new key "
            "is accepted when the oldest expires");
    response.header("Retry-After",
                    std::to_string(decision.retry_after_seconds));
    return response;
  }
  }
  RSV_ASSERT(false, "an idempotency decision without an answer");
  return problem(500, "internal", "unreachable");
}

/// Makes `c` run under its key: its answer is recorded with the key when it
/// is given.
void record_answer(request_context& c, const std::string& fingerprint,
                   const caf::actor& shard) {
  // The real outcome is recorded even when the client has already been told
  // 503 by its deadline: a retry then learns what happened.
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
    caf::anon_send(shard, actors::idempotency_finish{
                              customer, scope->key, scope->fingerprint,
                              std::move(stored), keep, written});
    inner(std::move(response));
  };
}

} // namespace

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
                         caf::expected<actors::idempotency_decision> decision) {
    auto& c = *shared;
    if (!decision) {
      c.done(problem_from(decision.error()));
    } else if (decision->what == actors::idempotency_decision::kind::proceed) {
      record_answer(c, fingerprint, shard);
      body(c);
    } else {
      c.done(answer_without_running(*decision));
    }
  };
  caf::anon_send(shard, actors::idempotency_begin{
                            shared->customer_id, shared->req.idempotency_key,
                            fingerprint,
                            actors::reply_fn<actors::idempotency_decision>{
                                std::move(on_decision)}});
}

} // namespace rsv::http
