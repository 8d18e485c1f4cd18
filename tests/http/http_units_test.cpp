#include "core/errc.hpp"
#include "core/ids.hpp"
#include "http/api_context.hpp"
#include "http/auth.hpp"
#include "http/json_mapping.hpp"
#include "http/request_mapping.hpp"
#include "http/router.hpp"
#include "messaging/redis_client.hpp"

#include <gtest/gtest.h>
#include <sodium.h>
#include <thread>

namespace rsv::http {
namespace {

using nlohmann::json;

TEST(request_mapping, accept_encoding_allows_gzip_unless_refused) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("GZip"));
  EXPECT_TRUE(accepts_gzip("br, gzip;q=0.8, deflate"));
  EXPECT_TRUE(accepts_gzip("x-gzip"));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_TRUE(accepts_gzip("gzip; q=1.0"));
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("identity"));
  EXPECT_FALSE(accepts_gzip("br, deflate"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0.000, *"));
  EXPECT_FALSE(accepts_gzip("*;q=0"));
  EXPECT_FALSE(accepts_gzip("gzipx"));
}

TEST(router, matches_routes_with_parameters) {
  auto m =
      match_route(method::get, "/v1/events/arena/sections/floor/seats?x=1");
  ASSERT_EQ(m.result, route_match::kind::found);
  EXPECT_EQ(m.route, route_id::seats);
  EXPECT_EQ(m.params, (std::vector<std::string>{"arena", "floor"}));
  EXPECT_EQ(match_route(method::del, "/v1/holds/hld_1_2").route,
            route_id::hold);
}

TEST(router, unknown_paths_and_wrong_methods) {
  EXPECT_EQ(match_route(method::get, "/v2/events").result,
            route_match::kind::not_found);
  EXPECT_EQ(match_route(method::get, "/v1/holds/").result,
            route_match::kind::not_found);
  auto wrong = match_route(method::del, "/v1/events");
  EXPECT_EQ(wrong.result, route_match::kind::wrong_method);
  EXPECT_EQ(wrong.allow, "GET, POST");
  EXPECT_EQ(match_route(method::post, "/v1/holds/x").allow, "GET, DELETE");
}

class tokens_test : public ::testing::Test {
protected:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }
  token_signer signer{std::string(32, 'k'), 3600};
};

TEST_F(tokens_test, a_token_names_its_customer_until_it_expires) {
  auto issued = signer.issue("cus_1", 1'000'000);
  EXPECT_EQ(issued.expires_at_ms, (1000 + 3600) * 1000);
  EXPECT_EQ(signer.verify(issued.token, 1'000'000), "cus_1");
  EXPECT_FALSE(signer.verify(issued.token, issued.expires_at_ms));
}

TEST_F(tokens_test, forged_and_foreign_tokens_are_refused) {
  auto token = signer.issue("cus_1", 0).token;
  auto forged = token;
  forged.replace(forged.find("cus_1"), 5, "cus_2");
  EXPECT_FALSE(signer.verify(forged, 0));
  token_signer other{std::string(32, 'x'), 3600};
  EXPECT_FALSE(other.verify(token, 0));
  EXPECT_FALSE(signer.verify("", 0));
  EXPECT_FALSE(signer.verify("v1.a.b", 0));
}

TEST_F(tokens_test, admission_tokens_are_bound_to_customer_event_and_time) {
  admission_signer admissions{std::string(32, 'k')};
  auto token = admissions.issue("gate", "cus_1", 5000);
  EXPECT_TRUE(admissions.verify(token, "gate", "cus_1", 4999));
  EXPECT_FALSE(admissions.verify(token, "gate", "cus_1", 5000)); // expired
  EXPECT_FALSE(admissions.verify(token, "gate", "cus_2", 0));    // borrowed
  EXPECT_FALSE(admissions.verify(token, "other", "cus_1", 0));   // other event
  // A session token of the same secret is not an admission token, nor the
  // other way round: the keys differ.
  auto session = signer.issue("cus_1", 0).token;
  EXPECT_FALSE(admissions.verify(session, "gate", "cus_1", 0));
  EXPECT_FALSE(signer.verify(token, 0));
  admission_signer other{std::string(32, 'x')};
  EXPECT_FALSE(other.verify(token, "gate", "cus_1", 0));
  auto extended = token;
  extended.replace(extended.find(".5000."), 6, ".9000.");
  EXPECT_FALSE(admissions.verify(extended, "gate", "cus_1", 6000));
  EXPECT_FALSE(admissions.verify("", "gate", "cus_1", 0));
}

TEST(redis_url, parses_what_operators_write_and_names_what_is_wrong) {
  auto plain = messaging::parse_redis_url("redis://127.0.0.1:6380");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, 6380);
  EXPECT_EQ(plain->db, 0);
  EXPECT_TRUE(plain->password.empty());
  auto full =
      messaging::parse_redis_url("redis://app:p%40ss%3Aw@cache.internal/3");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->user, "app");
  EXPECT_EQ(full->password, "p@ss:w");
  EXPECT_EQ(full->host, "cache.internal");
  EXPECT_EQ(full->port, 6379);
  EXPECT_EQ(full->db, 3);
  auto password_only = messaging::parse_redis_url("redis://:secret@[::1]:7000");
  ASSERT_TRUE(password_only);
  EXPECT_TRUE(password_only->user.empty());
  EXPECT_EQ(password_only->password, "secret");
  EXPECT_EQ(password_only->host, "::1");
  EXPECT_EQ(password_only->port, 7000);
  for (const char* bad :
       {"rediss://host:6379", "http://host", "redis://", "redis://host:0",
        "redis://host:99999", "redis://host/x"}) {
    auto parsed = messaging::parse_redis_url(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_NE(describe(parsed.error()).find("--redis-url"), std::string::npos)
        << describe(parsed.error());
  }
}

TEST(auth, bearer_tokens_and_password_hashes) {
  ASSERT_GE(sodium_init(), 0);
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  auto hash = hash_password("correct horse", {1, 1024});
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(verify_password(hash, "correct horse"));
  EXPECT_FALSE(verify_password(hash, "correct horsE"));
  EXPECT_TRUE(secrets_equal("abc", "abc"));
  EXPECT_FALSE(secrets_equal("abc", "abd"));
  EXPECT_FALSE(secrets_equal("", ""));
}

json valid_event() {
  return json::parse(R"({
    "id": "arena-2026-12-31", "name": "New Year", "starts_at": "2026-12-31T20:00:00Z",
    "sections": [{"id": "floor", "name": "Floor", "price_cents": 12000,
                  "rows": [{"label": "A", "seats": 30}, {"label": "B", "seats": 30}]}]})");
}

std::string detail_of(const caf::error& err) {
  EXPECT_EQ(code_of(err), errc::validation_failed);
  return err.context().get_as<std::string>(0);
}

TEST(json_mapping, a_valid_event_gets_its_defaults) {
  auto def = parse_event(valid_event(), false);
  ASSERT_TRUE(def);
  EXPECT_EQ(def->hold_ttl_seconds, 600);
  EXPECT_FALSE(def->max_seats_per_customer);
  EXPECT_EQ(def->sections.at(0).rows.at(1).seats, 30u);
}

TEST(json_mapping, invalid_event_fields_are_named) {
  struct bad_case {
    const char* pointer;
    json value;
    const char* field;
  };
  const bad_case cases[] = {
      {"/id", "Bad_Id", "id"},
      {"/name", "", "name"},
      {"/starts_at", "tomorrow", "starts_at"},
      {"/hold_ttl_seconds", 29, "hold_ttl_seconds"},
      {"/hold_ttl_seconds", 7201, "hold_ttl_seconds"},
      {"/hold_ttl_seconds", "600", "hold_ttl_seconds"},
      {"/max_seats_per_customer", 0, "max_seats_per_customer"},
      {"/sections", json::array(), "sections"},
      {"/sections/0/price_cents", -1, "sections[0].price_cents"},
      {"/sections/0/price_cents", 1.5, "sections[0].price_cents"},
      {"/sections/0/rows/1/label", "a", "sections[0].rows[1].label"},
      {"/sections/0/rows/1/label", "A", "sections[0].rows[1].label"},
      {"/sections/0/rows/0/seats", 1001, "sections[0].rows[0].seats"},
      {"/sections/0/rows/0/seats", 0, "sections[0].rows[0].seats"},
      {"/waiting_room", json{{"enabled", true}, {"admit_per_second", 5}},
       "waiting_room"},
  };
  for (const auto& c : cases) {
    auto body = valid_event();
    body[json::json_pointer(c.pointer)] = c.value;
    auto def = parse_event(body, false);
    ASSERT_FALSE(def) << c.pointer;
    EXPECT_EQ(detail_of(def.error()).rfind(c.field, 0), 0u)
        << c.pointer << ": " << detail_of(def.error());
  }
}

TEST(json_mapping, an_event_has_at_most_a_million_seats) {
  auto body = valid_event();
  json rows = json::array();
  for (int r = 0; r < 1000; ++r)
    rows.push_back({{"label", std::to_string(r)}, {"seats", 1000}});
  body["sections"][0]["rows"] = rows;
  EXPECT_TRUE(parse_event(body, false));
  body["sections"].push_back(
      {{"id", "extra"},
       {"name", "Extra"},
       {"price_cents", 1},
       {"rows", json::array({{{"label", "A"}, {"seats", 1}}})}});
  auto def = parse_event(body, false);
  ASSERT_FALSE(def);
  EXPECT_EQ(detail_of(def.error()).rfind("sections", 0), 0u);
}

TEST(json_mapping, holds_take_exactly_one_of_seats_or_quantity) {
  auto parse = [](const char* text) { return parse_hold(json::parse(text)); };
  auto seats =
      parse(R"({"event_id":"e","section_id":"s","seats":["A-1","A-2"]})");
  ASSERT_TRUE(seats);
  EXPECT_EQ(seats->seats.size(), 2u);
  auto quantity = parse(R"({"event_id":"e","section_id":"s","quantity":50})");
  ASSERT_TRUE(quantity);
  EXPECT_EQ(quantity->quantity, 50u);
  const char* bad[][2] = {
      {R"({"event_id":"e","section_id":"s"})", "seats"},
      {R"({"event_id":"e","section_id":"s","seats":["A-1"],"quantity":1})",
       "seats"},
      {R"({"event_id":"e","section_id":"s","quantity":0})", "quantity"},
      {R"({"event_id":"e","section_id":"s","quantity":51})", "quantity"},
      {R"({"event_id":"e","section_id":"s","quantity":-1})", "quantity"},
      {R"({"event_id":"e","section_id":"s","quantity":2.0})", "quantity"},
      {R"({"event_id":"e","section_id":"s","quantity":1e30})", "quantity"},
      {R"({"event_id":"e","section_id":"s","quantity":"2"})", "quantity"},
      {R"({"event_id":"e","section_id":"s","seats":[]})", "seats"},
      {R"({"event_id":"e","section_id":"s","seats":["A-1","A-1"]})",
       "seats[1]"},
      {R"({"event_id":"e","section_id":"s","seats":[1]})", "seats[0]"},
      {R"({"event_id":"E","section_id":"s","quantity":1})", "event_id"},
      {R"({"event_id":"e","quantity":1})", "section_id"},
      {R"([1,2])", "body"},
  };
  for (const auto& [text, field] : bad) {
    auto result = parse(text);
    ASSERT_FALSE(result) << text;
    EXPECT_EQ(detail_of(result.error()).rfind(field, 0), 0u)
        << text << ": " << detail_of(result.error());
  }
}

TEST(json_mapping, registration_normalises_email_and_checks_password) {
  auto ok = parse_registration(
      json::parse(R"({"email":"  Ann@Example.ORG ","password":"12345678"})"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->email, "ann@example.org");
  EXPECT_FALSE(parse_registration(
      json::parse(R"({"email":"ann@example.org","password":"1234567"})")));
  for (const char* email : {"ann", "ann@", "@example.org", "ann@example",
                            "a b@example.org", "a@b@example.org"})
    EXPECT_FALSE(
        parse_registration(json{{"email", email}, {"password", "12345678"}}))
        << email;
}

TEST(json_mapping, malformed_json_and_invalid_utf8_are_rejected) {
  EXPECT_FALSE(parse_json("{"));
  EXPECT_FALSE(parse_json(""));
  EXPECT_FALSE(parse_json("{\"a\":\"\xff\"}"));
  EXPECT_TRUE(parse_json("{\"a\":\"\xc3\xa9\"}"));
}

TEST(json_mapping, the_seat_map_lists_seats_in_row_then_seat_order) {
  section_def def{"floor", "Floor", 1, {{"B", 2}, {"A", 1}}};
  seat_map_view map{
      section_layout::make("e", def, 0),
      {seat_status::free, seat_status::held, seat_status::booked}};
  auto body = json::parse(render_seat_map(map));
  EXPECT_EQ(body["event_id"], "e");
  EXPECT_EQ(body["section_id"], "floor");
  EXPECT_EQ(body["seats"], json::parse(R"([{"id":"B-1","status":"free"},
    {"id":"B-2","status":"held"},{"id":"A-1","status":"booked"}])"));
}

TEST(json_mapping, events_render_as_valid_json_whatever_their_names) {
  actors::event_entry event;
  event.def.id = "gala";
  event.def.name = "Gala \"Night\" \\ caf\xc3\xa9\n\x01";
  event.def.starts_at_ms = *parse_rfc3339("2026-12-31T20:00:00Z");
  event.def.hold_ttl_seconds = 90;
  event.def.max_seats_per_customer = 4;
  auto section = std::make_shared<actors::section_entry>();
  section->layout = section_layout::make(
      "gala", {"floor", "Floor \"A\"", 1500, {{"A", 3}, {"B", 2}}}, 7);
  section->publish({2, 2, 1});
  event.sections.push_back(section);
  event.section_index.emplace("floor", 0);
  auto rendered = json::parse(render_event(event));
  EXPECT_EQ(rendered, json::parse(R"({
    "id": "gala", "name": "Gala \"Night\" \\ café\n\u0001",
    "starts_at": "2026-12-31T20:00:00Z", "hold_ttl_seconds": 90,
    "max_seats_per_customer": 4,
    "sections": [{"id": "floor", "name": "Floor \"A\"", "price_cents": 1500,
                  "seats_total": 5, "free": 2, "held": 2, "booked": 1}]})"));
  event.def.max_seats_per_customer.reset();
  EXPECT_TRUE(
      json::parse(render_event(event))["max_seats_per_customer"].is_null());

  actors::directory_snapshot snapshot;
  snapshot.events_ordered.push_back(
      std::make_shared<const actors::event_entry>(event));
  EXPECT_EQ(json::parse(render_events(snapshot)), json::parse(R"({"events": [
    {"id": "gala", "name": "Gala \"Night\" \\ café\n\u0001",
     "starts_at": "2026-12-31T20:00:00Z", "seats_total": 5,
     "seats_free": 2}]})"));
  EXPECT_EQ(json::parse(render_events(actors::directory_snapshot{})),
            json::parse(R"({"events": []})"));
}

// An actor's reply only posts its outcome: the answer is rendered where the
// connection's I/O thread runs the continuation, not on the replying thread.
TEST(answer, renders_on_the_connection_thread_not_the_replier) {
  std::vector<std::function<void()>> posted; // the I/O thread's queue
  std::thread::id rendered_on;
  std::vector<api_response> sent;
  auto reply = answer<std::string>(
      [&](api_response response) { sent.push_back(std::move(response)); },
      [&](std::function<void()> continuation) {
        posted.push_back(std::move(continuation));
      },
      [&](const std::string& body) {
        rendered_on = std::this_thread::get_id();
        return json_response(200, body);
      });
  std::thread replier{[&] { reply(std::string{"{}"}); }};
  auto replier_id = replier.get_id();
  replier.join();
  ASSERT_EQ(posted.size(), 1u);
  EXPECT_TRUE(sent.empty()) << "answered on the replying thread";
  posted.front()();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].status, 200u);
  EXPECT_EQ(rendered_on, std::this_thread::get_id());
  EXPECT_NE(rendered_on, replier_id);
  // A failure is posted the same way, and becomes its problem answer.
  auto failed = answer<std::string>(
      [&](api_response response) { sent.push_back(std::move(response)); },
      [&](std::function<void()> continuation) {
        posted.push_back(std::move(continuation));
      },
      [](const std::string&) { return json_response(200, "{}"); });
  failed(make_error(errc::unavailable, std::string{"gone"}));
  ASSERT_EQ(posted.size(), 2u);
  posted.back()();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[1].status, 503u);
}

} // namespace
} // namespace rsv::http
