#include "core/ids.hpp"
#include "http/decode.hpp"
#include "http/request_mapping.hpp"
#include "http/router.hpp"

#include <gtest/gtest.h>
#include <set>
#include <string>

namespace rsv::http {
namespace {

api_request request(method verb, std::string target, std::string body = {},
                    std::string content_type = "application/json") {
  api_request req;
  req.verb = verb;
  req.target = std::move(target);
  req.body = std::move(body);
  req.content_type = std::move(content_type);
  return req;
}

/// The route's decoded command; fails the test on a problem answer.
command decoded(const api_request& req) {
  auto match = match_route(req.verb, req.target, true);
  EXPECT_EQ(match.result, route_match::kind::found) << req.target;
  auto result = decode(*match.def, req, match.params, {});
  auto* out = std::get_if<command>(&result);
  EXPECT_NE(out, nullptr) << req.target << ": refused";
  return out ? *out : command{};
}

/// The problem a route answers instead of running its handler.
api_response refused(const api_request& req) {
  auto match = match_route(req.verb, req.target, true);
  EXPECT_EQ(match.result, route_match::kind::found) << req.target;
  auto result = decode(*match.def, req, match.params, {});
  auto* out = std::get_if<api_response>(&result);
  EXPECT_NE(out, nullptr) << req.target << ": accepted";
  return out ? *out : api_response{};
}

TEST(route_table, every_row_has_a_handler_a_name_and_a_unique_request_line) {
  std::set<std::string> seen;
  for (const auto& row : route_table()) {
    EXPECT_NE(row.handler, nullptr) << row.name;
    EXPECT_TRUE(seen.insert(row.name).second) << row.name << " twice";
    // A write route is rate limited; an admin or customer route checks a
    // token.
    EXPECT_EQ(row.rate_limited, row.verb != method::get) << row.name;
    if (row.idempotent) {
      EXPECT_EQ(row.auth, auth_kind::customer) << row.name;
    }
  }
}

TEST(route_table, body_limits_come_from_the_rows) {
  EXPECT_EQ(body_bytes_max_for(method::post, "/v1/events"),
            limits::event_body_bytes_max);
  EXPECT_EQ(body_bytes_max_for(method::post, "/v1/events?x=1"),
            limits::event_body_bytes_max);
  EXPECT_EQ(body_bytes_max_for(method::get, "/v1/events"),
            limits::body_bytes_max);
  EXPECT_EQ(body_bytes_max_for(method::post, "/v1/holds"),
            limits::body_bytes_max);
  EXPECT_EQ(body_bytes_max_for(method::post, "/no/such/route"),
            limits::body_bytes_max);
  EXPECT_EQ(body_limit_for(boost::beast::http::verb::post, "/v1/events"),
            limits::event_body_bytes_max);
}

TEST(decode, a_body_needs_json_that_its_route_accepts) {
  auto hold = R"({"event_id":"e","section_id":"s","quantity":2})";
  auto ok = decoded(request(method::post, "/v1/holds", hold,
                            "Application/JSON; charset=utf-8"));
  ASSERT_TRUE(ok.hold);
  EXPECT_EQ(ok.hold->event_id, "e");
  EXPECT_EQ(ok.hold->quantity, 2u);
  EXPECT_EQ(
      refused(request(method::post, "/v1/holds", hold, "text/plain")).status,
      415u);
  EXPECT_EQ(refused(request(method::post, "/v1/holds", "{")).status, 400u);
  auto invalid = refused(request(method::post, "/v1/holds", R"({"x":1})"));
  EXPECT_EQ(invalid.status, 422u);
  EXPECT_NE(invalid.body.find("event_id"), std::string::npos);
  EXPECT_EQ(
      refused(request(method::post, "/v1/admin/chaos/relay", "[1]")).status,
      422u);
}

TEST(decode, routes_without_a_body_ignore_one) {
  auto join = decoded(
      request(method::post, "/v1/events/e/queue", "not json", "text/plain"));
  EXPECT_FALSE(join.object);
  EXPECT_FALSE(join.event);
}

TEST(decode, path_ids_are_decoded_for_their_handlers) {
  auto hold_id = make_hold_id({3, 7, 0});
  auto hold = decoded(request(method::get, "/v1/holds/" + hold_id));
  auto booking = decoded(request(method::del, "/v1/bookings/" + hold_id));
  auto ticket = decoded(request(method::get, "/v1/queue/qtk_ZS9jdXNfMQ"));
  auto not_a_ticket = decoded(request(method::get, "/v1/queue/nope"));
  ASSERT_TRUE(hold.record);
  EXPECT_EQ(hold.record->section_no, 3u);
  EXPECT_EQ(hold.record->slot, 7u);
  EXPECT_FALSE(booking.record); // a hold id is not a booking id
  ASSERT_TRUE(ticket.ticket);
  EXPECT_EQ(ticket.ticket->event_id, "e");
  EXPECT_FALSE(not_a_ticket.ticket);
}

} // namespace
} // namespace rsv::http
