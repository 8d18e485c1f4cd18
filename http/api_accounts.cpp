// Accounts: registration and login. Passwords are hashed and checked on the
// hashing pool, never on an I/O thread, under per-address and per-email
// throttles.

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "http/api.hpp"
#include "http/api_context.hpp"

#include <caf/all.hpp>
#include <chrono>

namespace rsv::http {

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
  auto& body = ctx.decoded.credentials;
  if (!admit_password_check(ctx, body->email)) return;
  // Hashing takes tens of milliseconds of CPU: never on an I/O thread.
  auto job = [this, body = std::move(*body), done = ctx.done,
              resume = ctx.req.resume](bool late) {
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
        actors::register_customer_request{
            std::move(record),
            answer<customer_record>(done, resume, [](const customer_record& r) {
              return created(
                  dump({{"customer_id", r.customer_id}, {"email", r.email}}),
                  "/v1/customers/" + r.customer_id);
            })});
  };
  if (!hashing_.submit(password_check_deadline(), std::move(job)))
    ctx.done(password_checks_busy());
}

void api::create_session(context& ctx) {
  // Its row adds Cache-Control: no-store to every answer (router.cpp).
  auto& body = ctx.decoded.credentials;
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
  caf::anon_send(rt_.accounts(),
                 actors::find_customer_request{
                     body->email, actors::reply_fn<customer_record>{on_found}});
}
} // namespace rsv::http
