// Every route and every error code of the HTTP contract
// (/work/shared/contract/http-api.md), through the real binary. Where the
// contract is silent, the choices written in docs/openapi.yaml are tested.

#include "harness.hpp"

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>
#include <sstream>

namespace rsv::e2e {
namespace {

using strings = std::vector<std::string>;

std::set<std::string> as_set(const json& array) {
  std::set<std::string> out;
  for (const auto& item : array)
    out.insert(item.get<std::string>());
  return out;
}

std::set<std::string> as_set(const strings& list) {
  return {list.begin(), list.end()};
}

std::set<std::string> allow_set(const http_response& response) {
  std::set<std::string> out;
  auto allow = response.header("Allow").value_or("");
  std::size_t at = 0;
  while (at <= allow.size()) {
    auto comma = allow.find(',', at);
    auto item = allow.substr(at, comma == std::string::npos ? std::string::npos
                                                            : comma - at);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.insert(item);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

/// prefix + number (written out: GCC 12 warns falsely on "x" + to_string()).
std::string numbered(const char* prefix, int number) {
  std::string out{prefix};
  out += std::to_string(number);
  return out;
}

std::string detail_of(const http_response& response) {
  auto body = json::parse(response.body, nullptr, false);
  if (body.is_discarded() || !body.contains("detail") ||
      !body["detail"].is_string())
    return {};
  return body["detail"].get<std::string>();
}

/// Seconds between a time in a response and now (positive: in the future).
double seconds_from_now(const std::string& text) {
  auto when = parse_time(text);
  if (!when) throw std::runtime_error("not an RFC 3339 UTC time: " + text);
  return std::chrono::duration<double>(*when - std::chrono::system_clock::now())
      .count();
}

class api_test : public server_test {
protected:
  /// "arena": floor (12000 cents) rows A, B of 10 seats; balcony (8000
  /// cents) rows A, B of 5 seats.
  json arena_body(std::optional<int> max_per_customer = std::nullopt) {
    auto body = event_json(
        "arena",
        {section_json("floor", 12000, {{"A", 10}, {"B", 10}}, "Floor"),
         section_json("balcony", 8000, {{"A", 5}, {"B", 5}}, "Balcony")});
    if (max_per_customer) body["max_seats_per_customer"] = *max_per_customer;
    return body;
  }

  json make_arena(std::optional<int> max_per_customer = std::nullopt) {
    return create_event(http(), admin(), arena_body(max_per_customer));
  }

  /// Holds named seats in arena; expects 201 and returns the hold.
  json must_hold(const customer& who, const std::string& section,
                 strings seats) {
    auto response = hold_seats(http(), who, "arena", section, std::move(seats));
    if (response.status != 201)
      throw std::runtime_error("hold: " + std::to_string(response.status) +
                               " " + response.body);
    return response.body_json();
  }

  json must_book(const customer& who, const std::string& hold_id) {
    auto response =
        http().post("/v1/bookings", {{"hold_id", hold_id}}, who.token);
    if (response.status != 201)
      throw std::runtime_error("book: " + std::to_string(response.status) +
                               " " + response.body);
    return response.body_json();
  }

  json stats(const std::string& event_id) {
    auto response = http().get("/v1/events/" + event_id + "/stats", admin());
    if (response.status != 200)
      throw std::runtime_error("stats: " + std::to_string(response.status) +
                               " " + response.body);
    return response.body_json();
  }
};

// -- customers ----------------------------------------------------------------

TEST_F(api_test, CustomerIsCreatedWithNormalisedEmail) {
  auto response =
      http().post("/v1/customers", {{"email", "  Mixed.Case@Example.COM "},
                                    {"password", "12345678"}});
  ASSERT_EQ(response.status, 201u) << response;
  EXPECT_EQ(
      response.header("Content-Type").value_or("").rfind("application/json", 0),
      0u);
  auto body = response.body_json();
  ASSERT_TRUE(body["customer_id"].is_string()) << body;
  EXPECT_FALSE(body["customer_id"].get<std::string>().empty());
  EXPECT_EQ(body["email"], "mixed.case@example.com");

  // The normalised address logs in, whatever its case.
  auto session =
      http().post("/v1/sessions", {{"email", "MIXED.case@example.com"},
                                   {"password", "12345678"}});
  ASSERT_EQ(session.status, 201u) << session;
  EXPECT_EQ(session.body_json()["customer_id"], body["customer_id"]);

  auto other = http().post(
      "/v1/customers", {{"email", unique_email()}, {"password", "12345678"}});
  ASSERT_EQ(other.status, 201u) << other;
  EXPECT_NE(other.body_json()["customer_id"], body["customer_id"]);
}

TEST_F(api_test, CustomerEmailTakenIs409) {
  auto email = unique_email();
  ASSERT_EQ(
      http()
          .post("/v1/customers", {{"email", email}, {"password", "password-1"}})
          .status,
      201u);
  auto again = http().post("/v1/customers",
                           {{"email", email}, {"password", "password-2"}});
  EXPECT_TRUE(is_problem(again, 409, "email_taken"));
  std::string upper = email;
  std::transform(
      upper.begin(), upper.end(), upper.begin(),
      [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  auto shouted = http().post("/v1/customers",
                             {{"email", upper}, {"password", "password-3"}});
  EXPECT_TRUE(is_problem(shouted, 409, "email_taken"));
  // The first password still works, the others do not.
  EXPECT_EQ(
      http()
          .post("/v1/sessions", {{"email", email}, {"password", "password-1"}})
          .status,
      201u);
  EXPECT_TRUE(
      is_problem(http().post("/v1/sessions",
                             {{"email", email}, {"password", "password-2"}}),
                 401, "invalid_credentials"));
}

TEST_F(api_test, CustomerInvalidEmailIs422NamingEmail) {
  std::vector<json> bodies;
  for (const char* email : {"", "plainaddress", "@b.example", "a@", "a@b",
                            "a@@b.example", "a@b@c.example", "a b@c.example"})
    bodies.push_back({{"email", email}, {"password", "12345678"}});
  bodies.push_back({{"email", 42}, {"password", "12345678"}});
  bodies.push_back({{"email", nullptr}, {"password", "12345678"}});
  bodies.push_back({{"password", "12345678"}});
  bodies.push_back({{"email", std::string(250, 'a') + "@b.example"},
                    {"password", "12345678"}});
  for (const auto& body : bodies) {
    auto response = http().post("/v1/customers", body);
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << body;
    EXPECT_NE(detail_of(response).find("email"), std::string::npos)
        << body << "\n"
        << response;
  }
}

TEST_F(api_test, CustomerShortPasswordIs422NamingPassword) {
  for (const json& password :
       {json("1234567"), json(""), json(12345678), json(nullptr)}) {
    auto response = http().post(
        "/v1/customers", {{"email", unique_email()}, {"password", password}});
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << password;
    EXPECT_NE(detail_of(response).find("password"), std::string::npos)
        << response;
  }
  auto missing = http().post("/v1/customers", {{"email", unique_email()}});
  EXPECT_TRUE(is_problem(missing, 422, "validation_failed"));
  EXPECT_NE(detail_of(missing).find("password"), std::string::npos) << missing;
  // Eight characters are enough.
  EXPECT_EQ(http()
                .post("/v1/customers",
                      {{"email", unique_email()}, {"password", "12345678"}})
                .status,
            201u);
}

TEST_F(api_test, CustomerNeedsJsonContentType) {
  std::string body =
      json{{"email", unique_email()}, {"password", "12345678"}}.dump();
  auto none = http().request("POST", "/v1/customers", {}, body);
  EXPECT_TRUE(is_problem(none, 415, "unsupported_media_type"));
  auto text = http().request("POST", "/v1/customers",
                             {{"Content-Type", "text/plain"}}, body);
  EXPECT_TRUE(is_problem(text, 415, "unsupported_media_type"));
  auto form = http().request(
      "POST", "/v1/customers",
      {{"Content-Type", "application/x-www-form-urlencoded"}}, body);
  EXPECT_TRUE(is_problem(form, 415, "unsupported_media_type"));
  // Nothing was registered: the same body now succeeds.
  auto json_type = http().request(
      "POST", "/v1/customers",
      {{"Content-Type", "application/json; charset=utf-8"}}, body);
  EXPECT_EQ(json_type.status, 201u) << json_type;
}

TEST_F(api_test, CustomerMalformedJsonIs400) {
  for (std::string body : {"{", "{\"email\": }", "not json",
                           "{\"email\":\"a@b.example\",}", "[1, 2"}) {
    auto response = http().post_raw("/v1/customers", body);
    EXPECT_TRUE(is_problem(response, 400, "invalid_json")) << body;
  }
}

// -- sessions -----------------------------------------------------------------

TEST_F(api_test, SessionIsCreated) {
  auto email = unique_email();
  auto created = http().post("/v1/customers",
                             {{"email", email}, {"password", "12345678"}});
  ASSERT_EQ(created.status, 201u);
  auto response =
      http().post("/v1/sessions", {{"email", email}, {"password", "12345678"}});
  ASSERT_EQ(response.status, 201u) << response;
  auto body = response.body_json();
  ASSERT_TRUE(body["token"].is_string()) << body;
  EXPECT_FALSE(body["token"].get<std::string>().empty());
  EXPECT_EQ(body["customer_id"], created.body_json()["customer_id"]);
  ASSERT_TRUE(body["expires_at"].is_string()) << body;
  auto left = seconds_from_now(body["expires_at"].get<std::string>());
  EXPECT_GT(left, 60.0) << body;
  EXPECT_LT(left, 31 * 24 * 3600.0) << body;

  // The token works on a customer route.
  auto bookings = http().get("/v1/bookings", body["token"].get<std::string>());
  ASSERT_EQ(bookings.status, 200u) << bookings;
  EXPECT_EQ(bookings.body_json(), json({{"bookings", json::array()}}));
}

TEST_F(api_test, SessionWrongEmailOrPasswordIsTheSame401) {
  auto email = unique_email();
  ASSERT_EQ(
      http()
          .post("/v1/customers", {{"email", email}, {"password", "12345678"}})
          .status,
      201u);
  auto wrong_password =
      http().post("/v1/sessions", {{"email", email}, {"password", "87654321"}});
  auto wrong_email = http().post(
      "/v1/sessions", {{"email", unique_email()}, {"password", "12345678"}});
  EXPECT_TRUE(is_problem(wrong_password, 401, "invalid_credentials"));
  EXPECT_TRUE(is_problem(wrong_email, 401, "invalid_credentials"));
  EXPECT_EQ(wrong_password.body, wrong_email.body);
  EXPECT_EQ(
      wrong_password.header("WWW-Authenticate").value_or("").rfind("Bearer", 0),
      0u)
      << wrong_password;
  EXPECT_EQ(
      wrong_email.header("WWW-Authenticate").value_or("").rfind("Bearer", 0),
      0u)
      << wrong_email;
}

// -- events -------------------------------------------------------------------

TEST_F(api_test, EventCreatedAnswerHasTheShapeOfGet) {
  auto body = arena_body(8);
  body["hold_ttl_seconds"] = 300;
  auto response = http().post("/v1/events", body, admin());
  ASSERT_EQ(response.status, 201u) << response;
  EXPECT_EQ(response.header("Location"), "/v1/events/arena");
  auto created = response.body_json();
  auto got = http().get("/v1/events/arena");
  ASSERT_EQ(got.status, 200u) << got;
  EXPECT_EQ(created, got.body_json());

  EXPECT_EQ(created["id"], "arena");
  EXPECT_EQ(created["name"], "Event arena");
  EXPECT_EQ(created["starts_at"], "2026-12-31T20:00:00Z");
  EXPECT_EQ(created["hold_ttl_seconds"], 300);
  EXPECT_EQ(created["max_seats_per_customer"], 8);
  ASSERT_EQ(created["sections"].size(), 2u) << created;
  json expected_floor = {{"id", "floor"},        {"name", "Floor"},
                         {"price_cents", 12000}, {"seats_total", 20},
                         {"free", 20},           {"held", 0},
                         {"booked", 0}};
  json expected_balcony = {{"id", "balcony"},     {"name", "Balcony"},
                           {"price_cents", 8000}, {"seats_total", 10},
                           {"free", 10},          {"held", 0},
                           {"booked", 0}};
  EXPECT_EQ(created["sections"][0], expected_floor);
  EXPECT_EQ(created["sections"][1], expected_balcony);
}

TEST_F(api_test, EventDefaults) {
  auto body = event_json("", {section_json("main", 500, {{"A", 3}})},
                         "2026-12-31T21:30:00+01:00");
  auto response = http().post("/v1/events", body, admin());
  ASSERT_EQ(response.status, 201u) << response;
  auto event = response.body_json();
  ASSERT_TRUE(event["id"].is_string()) << event;
  auto id = event["id"].get<std::string>();
  EXPECT_TRUE(std::regex_match(id, std::regex("^[a-z0-9][a-z0-9-]{0,63}$")))
      << id;
  EXPECT_EQ(event["hold_ttl_seconds"], 600);
  EXPECT_TRUE(event.contains("max_seats_per_customer"));
  EXPECT_TRUE(event["max_seats_per_customer"].is_null()) << event;
  EXPECT_EQ(event["starts_at"], "2026-12-31T20:30:00Z");
  EXPECT_EQ(response.header("Location"), "/v1/events/" + id);
  auto got = http().get("/v1/events/" + id);
  ASSERT_EQ(got.status, 200u) << got;
  auto read = got.body_json();
  EXPECT_EQ(read["id"], id);
  EXPECT_EQ(read["hold_ttl_seconds"], 600);
  EXPECT_TRUE(read["max_seats_per_customer"].is_null()) << read;
  EXPECT_EQ(read["starts_at"], "2026-12-31T20:30:00Z");
}

TEST_F(api_test, EventExistingIdIs409) {
  make_arena();
  auto first = http().get("/v1/events/arena").body_json();
  auto body = event_json("arena", {section_json("other", 1, {{"Z", 1}})});
  auto again = http().post("/v1/events", body, admin());
  EXPECT_TRUE(is_problem(again, 409, "event_exists"));
  auto got = http().get("/v1/events/arena");
  ASSERT_EQ(got.status, 200u);
  EXPECT_EQ(got.body_json(), first);
}

TEST_F(api_test, AdminCallsNeedTheAdminToken) {
  make_arena();
  auto who = new_customer(http());
  std::vector<headers_t> wrong = {
      {},
      {{"Authorization", "Bearer wrong-token"}},
      {{"Authorization", "Bearer " + admin() + "x"}},
      {{"Authorization", "Basic " + admin()}},
      {{"Authorization", admin()}},
      {{"Authorization", "Bearer " + who.token}},
  };
  auto body =
      event_json("sneaky", {section_json("main", 1, {{"A", 1}})}).dump();
  for (const auto& auth : wrong) {
    auto headers = auth;
    headers.emplace_back("Content-Type", "application/json");
    auto create = http().request("POST", "/v1/events", headers, body);
    EXPECT_TRUE(is_problem(create, 401, "unauthorized"));
    EXPECT_EQ(create.header("WWW-Authenticate").value_or("").rfind("Bearer", 0),
              0u)
        << create;
    auto stats = http().request("GET", "/v1/events/arena/stats", auth);
    EXPECT_TRUE(is_problem(stats, 401, "unauthorized"));
    EXPECT_EQ(stats.header("WWW-Authenticate").value_or("").rfind("Bearer", 0),
              0u)
        << stats;
  }
  EXPECT_TRUE(is_problem(http().get("/v1/events/sneaky"), 404, "not_found"));
  // The right token works for both.
  EXPECT_EQ(http().get("/v1/events/arena/stats", admin()).status, 200u);
}

TEST_F(api_test, EventInvalidFieldsAre422NamingTheField) {
  auto valid = [] {
    return json{{"id", "valid-event"},
                {"name", "Valid"},
                {"starts_at", "2026-12-31T20:00:00Z"},
                {"hold_ttl_seconds", 600},
                {"max_seats_per_customer", 8},
                {"sections",
                 {{{"id", "floor"},
                   {"name", "Floor"},
                   {"price_cents", 100},
                   {"rows",
                    {{{"label", "A"}, {"seats", 3}},
                     {{"label", "B"}, {"seats", 3}}}}}}}};
  };
  struct invalid_case {
    std::string field;
    std::function<void(json&)> mutate;
  };
  auto section = [](json& body) -> json& { return body["sections"][0]; };
  auto row = [](json& body) -> json& { return body["sections"][0]["rows"][0]; };
  std::vector<invalid_case> cases = {
      {"id", [](json& b) { b["id"] = "Not_A_Slug"; }},
      {"id", [](json& b) { b["id"] = "-leading-dash"; }},
      {"id", [](json& b) { b["id"] = std::string(65, 'a'); }},
      {"id", [](json& b) { b["id"] = 17; }},
      {"name", [](json& b) { b.erase("name"); }},
      {"name", [](json& b) { b["name"] = ""; }},
      {"name", [](json& b) { b["name"] = std::string(201, 'n'); }},
      {"name", [](json& b) { b["name"] = 5; }},
      {"starts_at", [](json& b) { b.erase("starts_at"); }},
      {"starts_at", [](json& b) { b["starts_at"] = "tomorrow evening"; }},
      {"starts_at", [](json& b) { b["starts_at"] = "2026-13-45T99:00:00Z"; }},
      {"starts_at", [](json& b) { b["starts_at"] = 1798747200; }},
      {"hold_ttl_seconds", [](json& b) { b["hold_ttl_seconds"] = 29; }},
      {"hold_ttl_seconds", [](json& b) { b["hold_ttl_seconds"] = 7201; }},
      {"hold_ttl_seconds", [](json& b) { b["hold_ttl_seconds"] = "600"; }},
      {"hold_ttl_seconds", [](json& b) { b["hold_ttl_seconds"] = 60.5; }},
      {"hold_ttl_seconds", [](json& b) { b["hold_ttl_seconds"] = -600; }},
      {"max_seats_per_customer",
       [](json& b) { b["max_seats_per_customer"] = 0; }},
      {"max_seats_per_customer",
       [](json& b) { b["max_seats_per_customer"] = -1; }},
      {"max_seats_per_customer",
       [](json& b) { b["max_seats_per_customer"] = "8"; }},
      {"max_seats_per_customer",
       [](json& b) { b["max_seats_per_customer"] = 2.5; }},
      {"sections", [](json& b) { b.erase("sections"); }},
      {"sections", [](json& b) { b["sections"] = json::array(); }},
      {"sections", [](json& b) { b["sections"] = json::object(); }},
      {"sections",
       [](json& b) {
         json many = json::array();
         for (int i = 0; i < 1001; ++i)
           many.push_back({{"id", numbered("s", i)},
                           {"name", "S"},
                           {"price_cents", 1},
                           {"rows", {{{"label", "A"}, {"seats", 1}}}}});
         b["sections"] = many;
       }},
      {"id", [&](json& b) { section(b).erase("id"); }},
      {"id", [&](json& b) { section(b)["id"] = "Floor"; }},
      {"id",
       [&](json& b) {
         auto copy = section(b);
         b["sections"].push_back(copy);
       }},
      {"name", [&](json& b) { section(b).erase("name"); }},
      {"name", [&](json& b) { section(b)["name"] = ""; }},
      {"price_cents", [&](json& b) { section(b).erase("price_cents"); }},
      {"price_cents", [&](json& b) { section(b)["price_cents"] = -1; }},
      {"price_cents", [&](json& b) { section(b)["price_cents"] = "100"; }},
      {"price_cents", [&](json& b) { section(b)["price_cents"] = 1.5; }},
      {"price_cents", [&](json& b) { section(b)["price_cents"] = 100000001; }},
      {"rows", [&](json& b) { section(b).erase("rows"); }},
      {"rows", [&](json& b) { section(b)["rows"] = json::array(); }},
      {"rows",
       [&](json& b) {
         json rows = json::array();
         for (int i = 0; i < 1001; ++i)
           rows.push_back({{"label", std::to_string(i)}, {"seats", 1}});
         section(b)["rows"] = rows;
       }},
      {"label", [&](json& b) { row(b).erase("label"); }},
      {"label", [&](json& b) { row(b)["label"] = "a"; }},
      {"label", [&](json& b) { row(b)["label"] = "ABCDE"; }},
      {"label", [&](json& b) { row(b)["label"] = ""; }},
      {"label", [&](json& b) { row(b)["label"] = "A-1"; }},
      {"label", [&](json& b) { b["sections"][0]["rows"][1]["label"] = "A"; }},
      {"seats", [&](json& b) { row(b).erase("seats"); }},
      {"seats", [&](json& b) { row(b)["seats"] = 0; }},
      {"seats", [&](json& b) { row(b)["seats"] = 1001; }},
      {"seats", [&](json& b) { row(b)["seats"] = "3"; }},
      {"seats", [&](json& b) { row(b)["seats"] = -3; }},
      // More than 1,000,000 seats in the event (2 x 1000 x 1000).
      {"seats",
       [](json& b) {
         json rows = json::array();
         for (int i = 0; i < 1000; ++i)
           rows.push_back({{"label", numbered("R", i)}, {"seats", 1000}});
         b["sections"] = json::array();
         for (const char* id : {"left", "right"})
           b["sections"].push_back(
               {{"id", id}, {"name", id}, {"price_cents", 1}, {"rows", rows}});
       }},
  };
  for (const auto& c : cases) {
    auto body = valid();
    c.mutate(body);
    auto response = http().post("/v1/events", body, admin());
    EXPECT_TRUE(is_problem(response, 422, "validation_failed"))
        << "field " << c.field << ": " << body.dump().substr(0, 300);
    EXPECT_NE(detail_of(response).find(c.field), std::string::npos)
        << "the detail should name " << c.field << "\n"
        << response;
  }
  auto not_object = http().post("/v1/events", json::array({1, 2}), admin());
  EXPECT_TRUE(is_problem(not_object, 422, "validation_failed"));
  // None of them created an event; the valid body does.
  auto list = http().get("/v1/events");
  ASSERT_EQ(list.status, 200u);
  EXPECT_EQ(list.body_json()["events"], json::array()) << list;
  EXPECT_EQ(http().post("/v1/events", valid(), admin()).status, 201u);
}

TEST_F(api_test, EventLimitsAreAccepted) {
  // Bounds of the contract: 30 and 7200 s, 1000 seats per row, and exactly
  // 1,000,000 seats in one event.
  auto low = event_json("ttl-low", {section_json("s", 0, {{"A", 1000}})});
  low["hold_ttl_seconds"] = 30;
  low["max_seats_per_customer"] = 1;
  EXPECT_EQ(http().post("/v1/events", low, admin()).status, 201u);
  auto high =
      event_json("ttl-high", {section_json("s", 100000000, {{"A", 1}})});
  high["hold_ttl_seconds"] = 7200;
  EXPECT_EQ(http().post("/v1/events", high, admin()).status, 201u);

  std::vector<std::pair<std::string, int>> rows;
  for (int i = 0; i < 1000; ++i)
    rows.emplace_back(numbered("R", i), 1000);
  auto million = event_json("million", {section_json("s", 100, rows)});
  auto response = http().post("/v1/events", million, admin());
  ASSERT_EQ(response.status, 201u)
      << response.status << " " << response.body.substr(0, 300);
  auto body = http().get("/v1/events/million").body_json();
  EXPECT_EQ(body["sections"][0]["seats_total"], 1000000);
  EXPECT_EQ(body["sections"][0]["free"], 1000000);
  auto who = new_customer(http());
  auto hold = hold_seats(http(), who, "million", "s", {"R999-1000", "R0-1"});
  ASSERT_EQ(hold.status, 201u) << hold;
  EXPECT_EQ(hold.body_json()["seats"], json({"R0-1", "R999-1000"}));
}

TEST_F(api_test, EventListHasEveryEvent) {
  EXPECT_EQ(http().get("/v1/events").body_json(),
            json({{"events", json::array()}}));
  create_event(http(), admin(),
               event_json("later", {section_json("s", 100, {{"A", 4}})},
                          "2027-06-01T18:00:00Z"));
  create_event(http(), admin(),
               event_json("sooner",
                          {section_json("s", 100, {{"A", 2}, {"B", 3}}),
                           section_json("t", 100, {{"A", 1}})},
                          "2026-06-01T18:00:00Z"));
  auto response = http().get("/v1/events");
  ASSERT_EQ(response.status, 200u) << response;
  auto events = response.body_json()["events"];
  ASSERT_EQ(events.size(), 2u) << events;
  // Ordered by starts_at (the documented choice).
  EXPECT_EQ(events[0], json({{"id", "sooner"},
                             {"name", "Event sooner"},
                             {"starts_at", "2026-06-01T18:00:00Z"},
                             {"seats_total", 6},
                             {"seats_free", 6}}));
  EXPECT_EQ(events[1], json({{"id", "later"},
                             {"name", "Event later"},
                             {"starts_at", "2027-06-01T18:00:00Z"},
                             {"seats_total", 4},
                             {"seats_free", 4}}));
  auto who = new_customer(http());
  ASSERT_EQ(hold_quantity(http(), who, "sooner", "s", 2).status, 201u);
  events = http().get("/v1/events").body_json()["events"];
  EXPECT_EQ(events[0]["seats_free"], 4);
  EXPECT_EQ(events[1]["seats_free"], 4);
}

TEST_F(api_test, UnknownEventOrSectionIs404) {
  make_arena();
  EXPECT_TRUE(is_problem(http().get("/v1/events/nope"), 404, "not_found"));
  EXPECT_TRUE(
      is_problem(http().get("/v1/events/NOT-A-SLUG"), 404, "not_found"));
  EXPECT_TRUE(is_problem(http().get("/v1/events/nope/sections/floor/seats"),
                         404, "not_found"));
  EXPECT_TRUE(is_problem(http().get("/v1/events/arena/sections/nope/seats"),
                         404, "not_found"));
  EXPECT_TRUE(is_problem(http().get("/v1/events/nope/stats", admin()), 404,
                         "not_found"));
}

TEST_F(api_test, SeatMapIsInRowOrderThenSeatOrder) {
  create_event(
      http(), admin(),
      event_json("odd",
                 {section_json("s", 100, {{"C", 3}, {"A", 2}, {"B1", 1}}),
                  section_json("t", 100, {{"10", 2}, {"9", 1}})}));
  auto map = get_seat_map(http(), "odd", "s");
  EXPECT_EQ(map.order, (strings{"C-1", "C-2", "C-3", "A-1", "A-2", "B1-1"}));
  EXPECT_EQ(map.with_status("free").size(), 6u);
  auto other = get_seat_map(http(), "odd", "t");
  EXPECT_EQ(other.order, (strings{"10-1", "10-2", "9-1"}));
}

TEST_F(api_test, SeatMapAndCountsFollowHoldsAndBookings) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  auto expect_state = [&](const std::set<std::string>& held,
                          const std::set<std::string>& booked) {
    auto map = get_seat_map(http(), "arena", "floor");
    EXPECT_EQ(map.order.size(), 20u);
    EXPECT_EQ(as_set(map.with_status("held")), held);
    EXPECT_EQ(as_set(map.with_status("booked")), booked);
    EXPECT_EQ(map.with_status("free").size(), 20 - held.size() - booked.size());
    counts expected{static_cast<std::int64_t>(20 - held.size() - booked.size()),
                    static_cast<std::int64_t>(held.size()),
                    static_cast<std::int64_t>(booked.size())};
    EXPECT_EQ(section_counts(http(), "arena", "floor"), expected);
  };
  expect_state({}, {});
  auto first = must_hold(alice, "floor", {"A-1", "A-2"});
  expect_state({"A-1", "A-2"}, {});
  auto second = must_hold(bob, "floor", {"B-10"});
  expect_state({"A-1", "A-2", "B-10"}, {});
  auto booking = must_book(alice, first["hold_id"]);
  expect_state({"B-10"}, {"A-1", "A-2"});
  ASSERT_EQ(
      http()
          .del("/v1/holds/" + second["hold_id"].get<std::string>(), bob.token)
          .status,
      204u);
  expect_state({}, {"A-1", "A-2"});
  ASSERT_EQ(http()
                .del("/v1/bookings/" + booking["booking_id"].get<std::string>(),
                     alice.token)
                .status,
            200u);
  expect_state({}, {});
  // The balcony was never touched.
  EXPECT_EQ(section_counts(http(), "arena", "balcony"), (counts{10, 0, 0}));
}

TEST_F(api_test, StatsCountConfirmedNotCancelledRevenue) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  EXPECT_EQ(stats("arena"), json({{"event_id", "arena"},
                                  {"free", 30},
                                  {"held", 0},
                                  {"booked", 0},
                                  {"revenue_cents", 0}}));
  auto floor =
      must_book(alice, must_hold(alice, "floor", {"A-1", "A-2"})["hold_id"]);
  auto balcony = must_book(
      bob, must_hold(bob, "balcony", {"A-1", "A-2", "A-3"})["hold_id"]);
  must_hold(bob, "floor", {"B-1"}); // held, not booked: no revenue
  EXPECT_EQ(stats("arena"), json({{"event_id", "arena"},
                                  {"free", 24},
                                  {"held", 1},
                                  {"booked", 5},
                                  {"revenue_cents", 2 * 12000 + 3 * 8000}}));
  ASSERT_EQ(http()
                .del("/v1/bookings/" + balcony["booking_id"].get<std::string>(),
                     bob.token)
                .status,
            200u);
  EXPECT_EQ(stats("arena"), json({{"event_id", "arena"},
                                  {"free", 27},
                                  {"held", 1},
                                  {"booked", 2},
                                  {"revenue_cents", 2 * 12000}}));
  EXPECT_EQ(floor["total_cents"], 24000);
}

// -- holds --------------------------------------------------------------------

TEST_F(api_test, HoldIsCreated) {
  make_arena();
  auto who = new_customer(http());
  auto response =
      hold_seats(http(), who, "arena", "floor", {"B-2", "A-3", "A-1"});
  ASSERT_EQ(response.status, 201u) << response;
  auto hold = response.body_json();
  ASSERT_TRUE(hold["hold_id"].is_string()) << hold;
  auto id = hold["hold_id"].get<std::string>();
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(response.header("Location"), "/v1/holds/" + id);
  EXPECT_EQ(hold["event_id"], "arena");
  EXPECT_EQ(hold["section_id"], "floor");
  EXPECT_EQ(hold["seats"],
            json({"A-1", "A-3", "B-2"})); // row order, seat order
  EXPECT_EQ(hold["status"], "active");
  EXPECT_EQ(hold["total_cents"], 3 * 12000);
  auto left = seconds_from_now(hold["expires_at"].get<std::string>());
  EXPECT_GT(left, 600 - 10.0) << hold;
  EXPECT_LT(left, 600 + 10.0) << hold;

  auto got = http().get("/v1/holds/" + id, who.token);
  ASSERT_EQ(got.status, 200u) << got;
  EXPECT_EQ(got.body_json(), hold);
}

TEST_F(api_test, HoldSeatsAreListedInTheEventsRowOrder) {
  create_event(
      http(), admin(),
      event_json("odd", {section_json("s", 250, {{"C", 3}, {"A", 2}})}));
  auto who = new_customer(http());
  auto response =
      hold_seats(http(), who, "odd", "s", {"A-2", "C-3", "A-1", "C-1"});
  ASSERT_EQ(response.status, 201u) << response;
  EXPECT_EQ(response.body_json()["seats"], json({"C-1", "C-3", "A-1", "A-2"}));
  EXPECT_EQ(response.body_json()["total_cents"], 1000);
}

TEST_F(api_test, HoldOnTakenSeatsIs409AllOrNothing) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  must_hold(alice, "floor", {"A-1", "A-2"});
  auto booked = must_hold(alice, "floor", {"A-5"});
  must_book(alice, booked["hold_id"]);
  auto response = hold_seats(http(), bob, "arena", "floor",
                             {"A-3", "A-2", "A-5", "A-1", "A-4"});
  ASSERT_TRUE(is_problem(response, 409, "seats_unavailable"));
  auto body = response.body_json();
  ASSERT_TRUE(body["unavailable"].is_array()) << body;
  EXPECT_EQ(as_set(body["unavailable"]),
            (std::set<std::string>{"A-1", "A-2", "A-5"}));
  // All or nothing: the free seats of the request stay free.
  auto map = get_seat_map(http(), "arena", "floor");
  EXPECT_EQ(map.status("A-3"), "free");
  EXPECT_EQ(map.status("A-4"), "free");
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{17, 2, 1}));
  auto rest = hold_seats(http(), bob, "arena", "floor", {"A-3", "A-4"});
  EXPECT_EQ(rest.status, 201u) << rest;
}

TEST_F(api_test, HoldQuantityBeyondFreeSeatsIs409) {
  create_event(
      http(), admin(),
      event_json("small", {section_json("s", 100, {{"A", 3}, {"B", 2}})}));
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  ASSERT_EQ(hold_quantity(http(), alice, "small", "s", 3).status, 201u);
  EXPECT_TRUE(is_problem(hold_quantity(http(), bob, "small", "s", 3), 409,
                         "insufficient_seats"));
  EXPECT_EQ(section_counts(http(), "small", "s"), (counts{2, 3, 0}));
  auto two = hold_quantity(http(), bob, "small", "s", 2);
  ASSERT_EQ(two.status, 201u) << two;
  EXPECT_EQ(two.body_json()["seats"], json({"B-1", "B-2"}));
  EXPECT_TRUE(is_problem(hold_quantity(http(), bob, "small", "s", 1), 409,
                         "insufficient_seats"));
}

TEST_F(api_test, HoldOnUnknownSeatIs422AllOrNothing) {
  make_arena();
  auto who = new_customer(http());
  auto response =
      hold_seats(http(), who, "arena", "floor",
                 {"A-1", "Z-1", "A-11", "A-0", "A-01", "a-1", "A1", "B-2"});
  ASSERT_TRUE(is_problem(response, 422, "unknown_seat"));
  auto body = response.body_json();
  ASSERT_TRUE(body["unknown"].is_array()) << body;
  EXPECT_EQ(as_set(body["unknown"]),
            (std::set<std::string>{"Z-1", "A-11", "A-0", "A-01", "a-1", "A1"}));
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
  // A seat of another section is unknown in this one.
  auto balcony_seat = hold_seats(http(), who, "arena", "balcony", {"A-6"});
  ASSERT_TRUE(is_problem(balcony_seat, 422, "unknown_seat"));
  EXPECT_EQ(balcony_seat.body_json()["unknown"], json({"A-6"}));
}

TEST_F(api_test, HoldOnUnknownSeatOfAnyShapeIs422UnknownSeat) {
  // The documented choice: a named seat id that is not a seat of the
  // section, whatever its shape, is listed in `unknown`.
  make_arena();
  auto who = new_customer(http());
  for (const std::string seat : {"ROWLABEL-TOO-LONG-1", "A-1234567890123456",
                                 "", "A--1", "-1", "A-", "A-1.5"}) {
    auto response = hold_seats(http(), who, "arena", "floor", {"A-1", seat});
    EXPECT_TRUE(is_problem(response, 422, "unknown_seat")) << seat;
    if (response.status == 422 && response.body_json().contains("unknown")) {
      EXPECT_EQ(response.body_json()["unknown"], json({seat}));
    }
  }
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
}

TEST_F(api_test, HoldOnUnknownEventOrSectionIs404) {
  make_arena();
  auto who = new_customer(http());
  EXPECT_TRUE(is_problem(hold_quantity(http(), who, "nope", "floor", 1), 404,
                         "not_found"));
  EXPECT_TRUE(is_problem(hold_quantity(http(), who, "arena", "nope", 1), 404,
                         "not_found"));
  EXPECT_TRUE(is_problem(hold_seats(http(), who, "arena", "nope", {"A-1"}), 404,
                         "not_found"));
}

TEST_F(api_test, HoldLimitCountsHeldAndBookedSeatsAcrossSections) {
  make_arena(4);
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  auto floor = must_hold(alice, "floor", {"A-1", "A-2", "A-3"});
  auto over = hold_seats(http(), alice, "arena", "balcony", {"A-1", "A-2"});
  EXPECT_TRUE(is_problem(over, 422, "limit_exceeded"));
  EXPECT_TRUE(is_problem(hold_quantity(http(), alice, "arena", "balcony", 2),
                         422, "limit_exceeded"));
  EXPECT_EQ(section_counts(http(), "arena", "balcony"), (counts{10, 0, 0}));
  auto one = must_hold(alice, "balcony", {"B-5"});
  EXPECT_TRUE(is_problem(hold_quantity(http(), alice, "arena", "floor", 1), 422,
                         "limit_exceeded"));
  // Booked seats count as well.
  must_book(alice, one["hold_id"]);
  EXPECT_TRUE(is_problem(hold_quantity(http(), alice, "arena", "balcony", 1),
                         422, "limit_exceeded"));
  // Another customer has a limit of their own.
  EXPECT_EQ(hold_quantity(http(), bob, "arena", "floor", 4).status, 201u);
  EXPECT_TRUE(is_problem(hold_quantity(http(), bob, "arena", "balcony", 1), 422,
                         "limit_exceeded"));
  // Released seats no longer count: 1 booked + 3 new = 4.
  ASSERT_EQ(
      http()
          .del("/v1/holds/" + floor["hold_id"].get<std::string>(), alice.token)
          .status,
      204u);
  EXPECT_EQ(hold_quantity(http(), alice, "arena", "balcony", 3).status, 201u);
  EXPECT_TRUE(is_problem(hold_quantity(http(), alice, "arena", "floor", 1), 422,
                         "limit_exceeded"));
}

TEST_F(api_test, HoldLimitIsNotUsedUpByFailedHolds) {
  make_arena(2);
  auto who = new_customer(http());
  auto other = new_customer(http(), "other");
  must_hold(other, "floor", {"A-1"});
  // 409, 422 unknown_seat and 409 insufficient_seats leave the limit alone.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(
        is_problem(hold_seats(http(), who, "arena", "floor", {"A-1", "A-2"}),
                   409, "seats_unavailable"));
    EXPECT_TRUE(
        is_problem(hold_seats(http(), who, "arena", "floor", {"A-2", "Z-9"}),
                   422, "unknown_seat"));
  }
  auto both = hold_seats(http(), who, "arena", "floor", {"A-2", "A-3"});
  EXPECT_EQ(both.status, 201u) << both;
}

TEST_F(api_test, HoldLimitFreesCancelledBookings) {
  make_arena(2);
  auto who = new_customer(http());
  auto booking =
      must_book(who, must_hold(who, "floor", {"A-1", "A-2"})["hold_id"]);
  EXPECT_TRUE(is_problem(hold_quantity(http(), who, "arena", "floor", 1), 422,
                         "limit_exceeded"));
  ASSERT_EQ(http()
                .del("/v1/bookings/" + booking["booking_id"].get<std::string>(),
                     who.token)
                .status,
            200u);
  EXPECT_EQ(hold_quantity(http(), who, "arena", "balcony", 2).status, 201u);
}

TEST_F(api_test, BestAvailablePicksTheFirstAdjacentBlock) {
  create_event(
      http(), admin(),
      event_json("best",
                 {section_json("s", 100, {{"A", 6}, {"B", 6}, {"C", 6}})}));
  auto other = new_customer(http(), "other");
  auto who = new_customer(http(), "who");
  ASSERT_EQ(
      hold_seats(http(), other, "best", "s", {"A-3", "B-2", "B-5"}).status,
      201u);
  auto seats_of = [&](int quantity) {
    auto response = hold_quantity(http(), who, "best", "s", quantity);
    EXPECT_EQ(response.status, 201u) << response;
    return response.status == 201 ? response.body_json()["seats"] : json();
  };
  // Row A has A-4..A-6 free and adjacent; lowest numbers first within it.
  EXPECT_EQ(seats_of(3), json({"A-4", "A-5", "A-6"}));
  // Row A now has only A-1, A-2; row B has no run of 3: row C.
  EXPECT_EQ(seats_of(3), json({"C-1", "C-2", "C-3"}));
  EXPECT_EQ(seats_of(2), json({"A-1", "A-2"}));
  EXPECT_EQ(seats_of(2), json({"B-3", "B-4"}));
  EXPECT_EQ(seats_of(1), json({"B-1"}));
  EXPECT_EQ(seats_of(3), json({"C-4", "C-5", "C-6"}));
}

TEST_F(api_test, BestAvailableFallsBackToTheFirstFreeSeats) {
  create_event(
      http(), admin(),
      event_json("gaps", {section_json("s", 100, {{"A", 3}, {"B", 3}})}));
  auto other = new_customer(http(), "other");
  auto who = new_customer(http(), "who");
  ASSERT_EQ(hold_seats(http(), other, "gaps", "s", {"A-2", "B-2"}).status,
            201u);
  auto first = hold_quantity(http(), who, "gaps", "s", 3);
  ASSERT_EQ(first.status, 201u) << first;
  EXPECT_EQ(first.body_json()["seats"], json({"A-1", "A-3", "B-1"}));
  auto second = hold_quantity(http(), who, "gaps", "s", 1);
  ASSERT_EQ(second.status, 201u) << second;
  EXPECT_EQ(second.body_json()["seats"], json({"B-3"}));
  EXPECT_TRUE(is_problem(hold_quantity(http(), who, "gaps", "s", 1), 409,
                         "insufficient_seats"));
}

TEST_F(api_test, BestAvailableFollowsTheEventsRowOrder) {
  create_event(
      http(), admin(),
      event_json("rows", {section_json("s", 100, {{"Z", 2}, {"A", 4}})}));
  auto who = new_customer(http());
  auto response = hold_quantity(http(), who, "rows", "s", 2);
  ASSERT_EQ(response.status, 201u) << response;
  EXPECT_EQ(response.body_json()["seats"], json({"Z-1", "Z-2"}));
  response = hold_quantity(http(), who, "rows", "s", 3);
  ASSERT_EQ(response.status, 201u) << response;
  EXPECT_EQ(response.body_json()["seats"], json({"A-1", "A-2", "A-3"}));
}

TEST_F(api_test, ReleasedHoldFreesSeatsAtOnce) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "floor", {"A-1", "A-2"});
  auto id = hold["hold_id"].get<std::string>();
  auto released = http().del("/v1/holds/" + id, who.token);
  ASSERT_EQ(released.status, 204u) << released;
  EXPECT_TRUE(released.body.empty()) << released;
  // At once: no polling.
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
  auto map = get_seat_map(http(), "arena", "floor");
  EXPECT_EQ(map.status("A-1"), "free");
  EXPECT_EQ(map.status("A-2"), "free");
  auto got = http().get("/v1/holds/" + id, who.token);
  ASSERT_EQ(got.status, 200u) << got;
  EXPECT_EQ(got.body_json()["status"], "released");
  EXPECT_EQ(got.body_json()["seats"], json({"A-1", "A-2"}));
  // Again: still 204.
  auto again = http().del("/v1/holds/" + id, who.token);
  EXPECT_EQ(again.status, 204u) << again;
  EXPECT_TRUE(again.body.empty());
  // The seats can be held by someone else at once.
  auto other = new_customer(http(), "other");
  EXPECT_EQ(hold_seats(http(), other, "arena", "floor", {"A-1", "A-2"}).status,
            201u);
  // Booking the released hold is 410.
  EXPECT_TRUE(
      is_problem(http().post("/v1/bookings", {{"hold_id", id}}, who.token), 410,
                 "hold_expired"));
}

TEST_F(api_test, DeletingABookedHoldIs409) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "floor", {"B-1"});
  auto booking = must_book(who, hold["hold_id"]);
  auto response =
      http().del("/v1/holds/" + hold["hold_id"].get<std::string>(), who.token);
  ASSERT_TRUE(is_problem(response, 409, "hold_booked"));
  EXPECT_EQ(response.body_json()["booking_id"], booking["booking_id"]);
  EXPECT_EQ(get_seat_map(http(), "arena", "floor").status("B-1"), "booked");
  auto got =
      http().get("/v1/holds/" + hold["hold_id"].get<std::string>(), who.token);
  EXPECT_EQ(got.body_json()["status"], "booked");
}

TEST_F(api_test, AnotherCustomersHoldIs404LikeAnUnknownOne) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  auto hold = must_hold(alice, "floor", {"A-1"});
  auto id = hold["hold_id"].get<std::string>();
  auto get = http().get("/v1/holds/" + id, bob.token);
  auto del = http().del("/v1/holds/" + id, bob.token);
  auto book = http().post("/v1/bookings", {{"hold_id", id}}, bob.token);
  EXPECT_TRUE(is_problem(get, 404, "not_found"));
  EXPECT_TRUE(is_problem(del, 404, "not_found"));
  EXPECT_TRUE(is_problem(book, 404, "not_found"));
  // Exactly as an unknown id.
  auto unknown_get = http().get("/v1/holds/hld_ffff_ffff", bob.token);
  auto unknown_del = http().del("/v1/holds/hld_ffff_ffff", bob.token);
  auto unknown_book =
      http().post("/v1/bookings", {{"hold_id", "hld_ffff_ffff"}}, bob.token);
  EXPECT_TRUE(is_problem(unknown_get, 404, "not_found"));
  EXPECT_EQ(get.body, unknown_get.body);
  EXPECT_EQ(del.body, unknown_del.body);
  EXPECT_EQ(book.body, unknown_book.body);
  // Alice's hold is untouched.
  auto mine = http().get("/v1/holds/" + id, alice.token);
  ASSERT_EQ(mine.status, 200u);
  EXPECT_EQ(mine.body_json()["status"], "active");
  EXPECT_EQ(get_seat_map(http(), "arena", "floor").status("A-1"), "held");
}

TEST_F(api_test, UnknownHoldIs404) {
  make_arena();
  auto who = new_customer(http());
  for (const char* id :
       {"nope", "hld_0_0", "hld_ffff_0", "bkg_0_0", "hld_zz_zz"}) {
    EXPECT_TRUE(
        is_problem(http().get(std::string{"/v1/holds/"} + id, who.token), 404,
                   "not_found"))
        << id;
    EXPECT_TRUE(
        is_problem(http().del(std::string{"/v1/holds/"} + id, who.token), 404,
                   "not_found"))
        << id;
  }
}

// -- bookings -----------------------------------------------------------------

TEST_F(api_test, BookingIsCreated) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "balcony", {"B-2", "A-4"});
  auto response =
      http().post("/v1/bookings", {{"hold_id", hold["hold_id"]}}, who.token);
  ASSERT_EQ(response.status, 201u) << response;
  auto booking = response.body_json();
  ASSERT_TRUE(booking["booking_id"].is_string()) << booking;
  auto id = booking["booking_id"].get<std::string>();
  EXPECT_EQ(response.header("Location"), "/v1/bookings/" + id);
  EXPECT_EQ(booking["hold_id"], hold["hold_id"]);
  EXPECT_EQ(booking["event_id"], "arena");
  EXPECT_EQ(booking["section_id"], "balcony");
  EXPECT_EQ(booking["seats"], json({"A-4", "B-2"}));
  EXPECT_EQ(booking["total_cents"], 16000);
  EXPECT_EQ(booking["status"], "confirmed");
  auto age = seconds_from_now(booking["created_at"].get<std::string>());
  EXPECT_LT(std::abs(age), 10.0) << booking;

  auto got = http().get("/v1/bookings/" + id, who.token);
  ASSERT_EQ(got.status, 200u) << got;
  EXPECT_EQ(got.body_json(), booking);
  auto held =
      http().get("/v1/holds/" + hold["hold_id"].get<std::string>(), who.token);
  EXPECT_EQ(held.body_json()["status"], "booked");
  auto map = get_seat_map(http(), "arena", "balcony");
  EXPECT_EQ(as_set(map.with_status("booked")),
            (std::set<std::string>{"A-4", "B-2"}));
  EXPECT_EQ(section_counts(http(), "arena", "balcony"), (counts{8, 0, 2}));
}

TEST_F(api_test, BookingABookedHoldIs409WithTheBooking) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "floor", {"A-1"});
  auto booking = must_book(who, hold["hold_id"]);
  auto again =
      http().post("/v1/bookings", {{"hold_id", hold["hold_id"]}}, who.token);
  ASSERT_TRUE(is_problem(again, 409, "hold_booked"));
  EXPECT_EQ(again.body_json()["booking_id"], booking["booking_id"]);
  auto list = http().get("/v1/bookings", who.token).body_json()["bookings"];
  EXPECT_EQ(list.size(), 1u) << list;
}

TEST_F(api_test, BookingAReleasedHoldIs410) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "floor", {"A-1"});
  ASSERT_EQ(
      http()
          .del("/v1/holds/" + hold["hold_id"].get<std::string>(), who.token)
          .status,
      204u);
  auto response =
      http().post("/v1/bookings", {{"hold_id", hold["hold_id"]}}, who.token);
  EXPECT_TRUE(is_problem(response, 410, "hold_expired"));
  EXPECT_EQ(get_seat_map(http(), "arena", "floor").status("A-1"), "free");
  EXPECT_EQ(http().get("/v1/bookings", who.token).body_json()["bookings"],
            json::array());
}

TEST_F(api_test, BookingBadHoldIdIs404Or422) {
  make_arena();
  auto who = new_customer(http());
  EXPECT_TRUE(is_problem(
      http().post("/v1/bookings", {{"hold_id", "hld_ffff_ffff"}}, who.token),
      404, "not_found"));
  EXPECT_TRUE(
      is_problem(http().post("/v1/bookings", {{"hold_id", "nope"}}, who.token),
                 404, "not_found"));
  for (const json& body :
       {json::object(), json({{"hold_id", 5}}), json({{"hold_id", nullptr}}),
        json({{"hold_id", ""}})}) {
    auto response = http().post("/v1/bookings", body, who.token);
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << body;
    EXPECT_NE(detail_of(response).find("hold_id"), std::string::npos)
        << response;
  }
}

TEST_F(api_test, BookingsAreListedNewestFirst) {
  make_arena();
  auto who = new_customer(http(), "who");
  auto other = new_customer(http(), "other");
  strings ids;
  for (const char* seat : {"A-1", "A-2", "A-3"})
    ids.push_back(must_book(
        who, must_hold(who, "floor", {seat})["hold_id"])["booking_id"]);
  must_book(other, must_hold(other, "floor", {"B-1"})["hold_id"]);
  auto response = http().get("/v1/bookings", who.token);
  ASSERT_EQ(response.status, 200u) << response;
  auto list = response.body_json()["bookings"];
  ASSERT_EQ(list.size(), 3u) << list;
  EXPECT_EQ(list[0]["booking_id"], ids[2]);
  EXPECT_EQ(list[1]["booking_id"], ids[1]);
  EXPECT_EQ(list[2]["booking_id"], ids[0]);
  EXPECT_EQ(list[0]["seats"], json({"A-3"}));
  for (const auto& booking : list) {
    EXPECT_EQ(booking["status"], "confirmed");
    auto single = http().get(
        "/v1/bookings/" + booking["booking_id"].get<std::string>(), who.token);
    EXPECT_EQ(single.body_json(), booking);
  }
  // A cancelled booking stays in the list, cancelled (the documented choice).
  ASSERT_EQ(http().del("/v1/bookings/" + ids[1], who.token).status, 200u);
  list = http().get("/v1/bookings", who.token).body_json()["bookings"];
  ASSERT_EQ(list.size(), 3u) << list;
  EXPECT_EQ(list[1]["booking_id"], ids[1]);
  EXPECT_EQ(list[1]["status"], "cancelled");
  EXPECT_EQ(
      http().get("/v1/bookings", other.token).body_json()["bookings"].size(),
      1u);
}

TEST_F(api_test, CancelledBookingFreesSeatsAndAnswersTheSameAgain) {
  make_arena();
  auto who = new_customer(http());
  auto booking =
      must_book(who, must_hold(who, "floor", {"A-1", "A-2"})["hold_id"]);
  auto id = booking["booking_id"].get<std::string>();
  auto cancelled = http().del("/v1/bookings/" + id, who.token);
  ASSERT_EQ(cancelled.status, 200u) << cancelled;
  auto body = cancelled.body_json();
  auto expected = booking;
  expected["status"] = "cancelled";
  EXPECT_EQ(body, expected);
  // The seats are free at once.
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
  EXPECT_EQ(get_seat_map(http(), "arena", "floor").with_status("free").size(),
            20u);
  // Again: 200 with the same body.
  auto again = http().del("/v1/bookings/" + id, who.token);
  ASSERT_EQ(again.status, 200u) << again;
  EXPECT_EQ(again.body, cancelled.body);
  auto got = http().get("/v1/bookings/" + id, who.token);
  EXPECT_EQ(got.body_json(), expected);
  // Someone else can have the seats now.
  auto other = new_customer(http(), "other");
  EXPECT_EQ(hold_seats(http(), other, "arena", "floor", {"A-1", "A-2"}).status,
            201u);
  // And the cancellation survives that.
  EXPECT_EQ(http().get("/v1/bookings/" + id, who.token).body_json()["status"],
            "cancelled");
}

TEST_F(api_test, AnotherCustomersBookingIs404) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  auto booking =
      must_book(alice, must_hold(alice, "floor", {"A-1"})["hold_id"]);
  auto id = booking["booking_id"].get<std::string>();
  auto get = http().get("/v1/bookings/" + id, bob.token);
  auto del = http().del("/v1/bookings/" + id, bob.token);
  EXPECT_TRUE(is_problem(get, 404, "not_found"));
  EXPECT_TRUE(is_problem(del, 404, "not_found"));
  auto unknown = http().get("/v1/bookings/bkg_ffff_ffff", bob.token);
  EXPECT_TRUE(is_problem(unknown, 404, "not_found"));
  EXPECT_EQ(get.body, unknown.body);
  EXPECT_EQ(http().get("/v1/bookings", bob.token).body_json()["bookings"],
            json::array());
  auto mine = http().get("/v1/bookings/" + id, alice.token);
  ASSERT_EQ(mine.status, 200u);
  EXPECT_EQ(mine.body_json()["status"], "confirmed");
  EXPECT_EQ(get_seat_map(http(), "arena", "floor").status("A-1"), "booked");
  EXPECT_TRUE(is_problem(http().get("/v1/bookings/nope", alice.token), 404,
                         "not_found"));
}

TEST_F(api_test, HoldExpiresWithinASecondOfExpiresAt) {
  auto body = event_json("quick", {section_json("s", 700, {{"A", 4}})});
  body["hold_ttl_seconds"] = 30;
  body["max_seats_per_customer"] = 2;
  create_event(http(), admin(), body);
  auto who = new_customer(http());
  auto response = hold_seats(http(), who, "quick", "s", {"A-2", "A-3"});
  ASSERT_EQ(response.status, 201u) << response;
  auto hold = response.body_json();
  // A hold booked in time is not touched by the expiry of its hold.
  auto buyer = new_customer(http(), "buyer");
  auto kept = hold_seats(http(), buyer, "quick", "s", {"A-4"});
  ASSERT_EQ(kept.status, 201u) << kept;
  auto booking = must_book(buyer, kept.body_json()["hold_id"]);
  auto id = hold["hold_id"].get<std::string>();
  auto expires_at = parse_time(hold["expires_at"].get<std::string>());
  ASSERT_TRUE(expires_at) << hold;
  auto left = std::chrono::duration<double>(*expires_at -
                                            std::chrono::system_clock::now())
                  .count();
  EXPECT_GT(left, 25.0) << hold;
  EXPECT_LT(left, 35.0) << hold;

  // Poll until the hold says expired; it must by expires_at + 1 s (plus a
  // little for the round trip).
  std::string status = "active";
  ASSERT_TRUE(eventually(
      [&] {
        status = http().get("/v1/holds/" + id, who.token).body_json()["status"];
        return status != "active";
      },
      std::chrono::milliseconds(static_cast<int>(left * 1000) + 5000), 100ms));
  auto seen = std::chrono::system_clock::now();
  EXPECT_EQ(status, "expired");
  EXPECT_LE(seen, *expires_at + 1500ms) << "expired too late";
  EXPECT_GE(seen, *expires_at - 200ms) << "expired too early";
  auto map = get_seat_map(http(), "quick", "s");
  EXPECT_EQ(map.status("A-2"), "free");
  EXPECT_EQ(map.status("A-3"), "free");
  EXPECT_EQ(map.status("A-4"), "booked");
  EXPECT_EQ(section_counts(http(), "quick", "s"), (counts{3, 0, 1}));
  auto still = http().get(
      "/v1/bookings/" + booking["booking_id"].get<std::string>(), buyer.token);
  EXPECT_EQ(still.body_json()["status"], "confirmed");
  EXPECT_TRUE(
      is_problem(http().post("/v1/bookings", {{"hold_id", id}}, who.token), 410,
                 "hold_expired"));
  EXPECT_EQ(http().del("/v1/holds/" + id, who.token).status, 204u);
  EXPECT_EQ(http().get("/v1/holds/" + id, who.token).body_json()["status"],
            "expired");
  // Expired seats no longer count against the customer's limit.
  auto again = hold_quantity(http(), who, "quick", "s", 2);
  EXPECT_EQ(again.status, 201u) << again;
}

// -- authentication -----------------------------------------------------------

TEST_F(api_test, CustomerRoutesRejectMissingMalformedForgedAndAdminTokens) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "floor", {"A-1"});
  auto booked_hold = must_hold(who, "floor", {"A-2"});
  auto booking = must_book(who, booked_hold["hold_id"]);
  auto hold_id = hold["hold_id"].get<std::string>();
  auto booking_id = booking["booking_id"].get<std::string>();

  auto flip = [](std::string token, std::size_t at) {
    token[at] = token[at] == 'A' ? 'B' : 'A';
    return token;
  };
  const auto& t = who.token;
  std::vector<std::pair<std::string, headers_t>> credentials = {
      {"none", {}},
      {"empty bearer", {{"Authorization", "Bearer "}}},
      {"basic", {{"Authorization", "Basic dXNlcjpwYXNzd29yZA=="}}},
      {"no scheme", {{"Authorization", t}}},
      {"garbage", {{"Authorization", "Bearer not-a-token"}}},
      {"garbage with dots", {{"Authorization", "Bearer a.b.c.d"}}},
      {"forged end", {{"Authorization", "Bearer " + flip(t, t.size() - 3)}}},
      {"forged middle", {{"Authorization", "Bearer " + flip(t, t.size() / 2)}}},
      {"forged start", {{"Authorization", "Bearer " + flip(t, 0)}}},
      {"truncated", {{"Authorization", "Bearer " + t.substr(0, t.size() - 1)}}},
      {"extended", {{"Authorization", "Bearer " + t + "A"}}},
      {"admin token", {{"Authorization", "Bearer " + admin()}}},
  };
  std::string hold_body = json{
      {"event_id", "arena"},
      {"section_id", "floor"},
      {"seats", {"B-1"}}}.dump();
  std::string booking_body = json{{"hold_id", hold_id}}.dump();
  struct call {
    std::string method, target, body;
  };
  std::vector<call> calls = {
      {"POST", "/v1/holds", hold_body},
      {"GET", "/v1/holds/" + hold_id, ""},
      {"DELETE", "/v1/holds/" + hold_id, ""},
      {"POST", "/v1/bookings", booking_body},
      {"GET", "/v1/bookings", ""},
      {"GET", "/v1/bookings/" + booking_id, ""},
      {"DELETE", "/v1/bookings/" + booking_id, ""},
      {"POST", "/v1/events/arena/queue", ""},
      {"GET", "/v1/queue/some-ticket", ""},
  };
  for (const auto& [name, headers] : credentials) {
    for (const auto& c : calls) {
      auto h = headers;
      if (!c.body.empty()) h.emplace_back("Content-Type", "application/json");
      auto response = http().request(c.method, c.target, h, c.body);
      EXPECT_TRUE(is_problem(response, 401, "unauthorized"))
          << name << ": " << c.method << " " << c.target;
      EXPECT_EQ(
          response.header("WWW-Authenticate").value_or("").rfind("Bearer", 0),
          0u)
          << name << ": " << c.method << " " << c.target << "\n"
          << response;
    }
  }
  // Nothing changed.
  auto map = get_seat_map(http(), "arena", "floor");
  EXPECT_EQ(map.status("A-1"), "held");
  EXPECT_EQ(map.status("A-2"), "booked");
  EXPECT_EQ(map.status("B-1"), "free");
  EXPECT_EQ(http().get("/v1/holds/" + hold_id, who.token).body_json()["status"],
            "active");
  EXPECT_EQ(
      http().get("/v1/bookings/" + booking_id, who.token).body_json()["status"],
      "confirmed");
  // The scheme is case-insensitive.
  EXPECT_EQ(
      http()
          .request("GET", "/v1/bookings", {{"Authorization", "bearer " + t}})
          .status,
      200u);
}

// -- routing ------------------------------------------------------------------

TEST_F(api_test, UnknownRouteIs404) {
  // Not "/": that is the buyer's page, when the built web pages are beside
  // the binary (docs/web.md); unknown files are 404 problems like these.
  for (const char* target :
       {"/v1", "/v1/", "/v1/nothing", "/nothing.html", "/v2/events",
        "/v1/holds/a/b", "/v1/events/a/sections/b",
        "/v1/events/a/sections/b/seats/c", "/healthz", "/v1/events//stats"}) {
    EXPECT_TRUE(is_problem(http().get(target), 404, "not_found")) << target;
  }
  EXPECT_TRUE(
      is_problem(http().post("/v1/nothing", json::object()), 404, "not_found"));
}

TEST_F(api_test, WrongMethodIs405WithAllow) {
  struct wrong {
    std::string method, target;
    std::set<std::string> allow;
  };
  std::vector<wrong> cases = {
      {"PUT", "/v1/events", {"GET", "POST"}},
      {"DELETE", "/v1/events", {"GET", "POST"}},
      {"POST", "/health", {"GET"}},
      {"DELETE", "/ready", {"GET"}},
      {"POST", "/metrics", {"GET"}},
      {"GET", "/v1/customers", {"POST"}},
      {"GET", "/v1/sessions", {"POST"}},
      {"POST", "/v1/events/arena", {"GET"}},
      {"DELETE", "/v1/events/arena/sections/floor/seats", {"GET"}},
      {"POST", "/v1/events/arena/stats", {"GET"}},
      {"GET", "/v1/events/arena/queue", {"POST"}},
      {"DELETE", "/v1/queue/ticket", {"GET"}},
      {"GET", "/v1/holds", {"POST"}},
      {"POST", "/v1/holds/hld_1_1", {"GET", "DELETE"}},
      {"PATCH", "/v1/holds/hld_1_1", {"GET", "DELETE"}},
      {"DELETE", "/v1/bookings", {"GET", "POST"}},
      {"PUT", "/v1/bookings/bkg_1_1", {"GET", "DELETE"}},
  };
  for (const auto& c : cases) {
    auto response = http().request(c.method, c.target);
    EXPECT_TRUE(is_problem(response, 405, "method_not_allowed"))
        << c.method << " " << c.target;
    EXPECT_EQ(allow_set(response), c.allow)
        << c.method << " " << c.target << "\n"
        << response;
  }
}

// -- idempotency --------------------------------------------------------------

TEST_F(api_test, IdempotentHoldIsReplayedByteForByte) {
  make_arena();
  auto who = new_customer(http());
  headers_t key{{"Idempotency-Key", "hold-once-1"}};
  auto first = hold_quantity(http(), who, "arena", "floor", 2, key);
  ASSERT_EQ(first.status, 201u) << first;
  EXPECT_NE(first.header("Idempotent-Replayed"), "true");
  auto second = hold_quantity(http(), who, "arena", "floor", 2, key);
  ASSERT_EQ(second.status, 201u) << second;
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.header("Idempotent-Replayed"), "true");
  EXPECT_EQ(second.header("Location"), first.header("Location"));
  EXPECT_EQ(second.header("Content-Type"), first.header("Content-Type"));
  // Only one hold was made.
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{18, 2, 0}));
  // A third time, on a fresh connection, after the hold was released: still
  // the recorded answer, and nothing is held again.
  ASSERT_EQ(http().del(*first.header("Location"), who.token).status, 204u);
  http_connection fresh(port());
  auto third = hold_quantity(fresh, who, "arena", "floor", 2, key);
  EXPECT_EQ(third.status, 201u);
  EXPECT_EQ(third.body, first.body);
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
}

TEST_F(api_test, IdempotentClientErrorIsReplayed) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  auto blocker = must_hold(bob, "floor", {"A-1"});
  headers_t key{{"Idempotency-Key", "try-a1"}};
  auto first = hold_seats(http(), alice, "arena", "floor", {"A-1", "A-2"}, key);
  ASSERT_TRUE(is_problem(first, 409, "seats_unavailable"));
  // The seat becomes free, but the same key and body answer the recorded 409.
  ASSERT_EQ(
      http()
          .del("/v1/holds/" + blocker["hold_id"].get<std::string>(), bob.token)
          .status,
      204u);
  auto second =
      hold_seats(http(), alice, "arena", "floor", {"A-1", "A-2"}, key);
  EXPECT_EQ(second.status, 409u);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.header("Idempotent-Replayed"), "true");
  EXPECT_EQ(second.header("Content-Type"), first.header("Content-Type"));
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
  // A 422 is replayed too.
  headers_t other_key{{"Idempotency-Key", "bad-seat"}};
  auto unknown =
      hold_seats(http(), alice, "arena", "floor", {"Q-1"}, other_key);
  ASSERT_TRUE(is_problem(unknown, 422, "unknown_seat"));
  auto unknown_again =
      hold_seats(http(), alice, "arena", "floor", {"Q-1"}, other_key);
  EXPECT_EQ(unknown_again.status, 422u);
  EXPECT_EQ(unknown_again.body, unknown.body);
  // A new key runs the request.
  EXPECT_EQ(hold_seats(http(), alice, "arena", "floor", {"A-1", "A-2"},
                       {{"Idempotency-Key", "try-a1-again"}})
                .status,
            201u);
}

TEST_F(api_test, IdempotencyKeyWithAnotherBodyIs422) {
  make_arena();
  auto who = new_customer(http());
  headers_t key{{"Idempotency-Key", "k-1"}};
  ASSERT_EQ(hold_quantity(http(), who, "arena", "floor", 1, key).status, 201u);
  auto other = hold_quantity(http(), who, "arena", "floor", 2, key);
  EXPECT_TRUE(is_problem(other, 422, "idempotency_key_reused"));
  auto other_section = hold_quantity(http(), who, "arena", "balcony", 1, key);
  EXPECT_TRUE(is_problem(other_section, 422, "idempotency_key_reused"));
  // The same key on another route counts as another body.
  auto booking = http().post("/v1/bookings", {{"hold_id", "hld_ffff_ffff"}},
                             who.token, key);
  EXPECT_TRUE(is_problem(booking, 422, "idempotency_key_reused"));
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{19, 1, 0}));
  EXPECT_EQ(section_counts(http(), "arena", "balcony"), (counts{10, 0, 0}));
}

TEST_F(api_test, IdempotencyKeysAreScopedToTheCustomer) {
  make_arena();
  auto alice = new_customer(http(), "alice");
  auto bob = new_customer(http(), "bob");
  headers_t key{{"Idempotency-Key", "shared-key"}};
  auto mine = hold_quantity(http(), alice, "arena", "floor", 2, key);
  ASSERT_EQ(mine.status, 201u) << mine;
  auto theirs = hold_quantity(http(), bob, "arena", "floor", 2, key);
  ASSERT_EQ(theirs.status, 201u) << theirs;
  EXPECT_NE(theirs.header("Idempotent-Replayed"), "true");
  EXPECT_NE(theirs.body_json()["hold_id"], mine.body_json()["hold_id"]);
  EXPECT_EQ(mine.body_json()["seats"], json({"A-1", "A-2"}));
  EXPECT_EQ(theirs.body_json()["seats"], json({"A-3", "A-4"}));
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{16, 4, 0}));
  // Bob's own different body with the key is his business only.
  auto bob_other = hold_quantity(http(), bob, "arena", "floor", 3, key);
  EXPECT_TRUE(is_problem(bob_other, 422, "idempotency_key_reused"));
}

TEST_F(api_test, InvalidIdempotencyKeyIs422) {
  make_arena();
  auto who = new_customer(http());
  for (const std::string& bad :
       strings{std::string{}, std::string(256, 'k'), std::string{"has space"},
               std::string{"caf\xc3\xa9"}, std::string{"tab\tkey"}}) {
    auto response = hold_quantity(http(), who, "arena", "floor", 1,
                                  {{"Idempotency-Key", bad}});
    EXPECT_TRUE(is_problem(response, 422, "validation_failed"))
        << "[" << bad << "]";
    EXPECT_NE(detail_of(response).find("Idempotency-Key"), std::string::npos)
        << response;
  }
  EXPECT_EQ(section_counts(http(), "arena", "floor"), (counts{20, 0, 0}));
  // 255 visible characters are fine.
  auto longest = hold_quantity(http(), who, "arena", "floor", 1,
                               {{"Idempotency-Key", std::string(255, '~')}});
  EXPECT_EQ(longest.status, 201u) << longest;
}

TEST_F(api_test, IdempotentBookingIsReplayed) {
  make_arena();
  auto who = new_customer(http());
  auto hold = must_hold(who, "floor", {"A-7"});
  headers_t key{{"Idempotency-Key", "book-a7"}};
  auto first = http().post("/v1/bookings", {{"hold_id", hold["hold_id"]}},
                           who.token, key);
  ASSERT_EQ(first.status, 201u) << first;
  auto second = http().post("/v1/bookings", {{"hold_id", hold["hold_id"]}},
                            who.token, key);
  EXPECT_EQ(second.status, 201u);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.header("Idempotent-Replayed"), "true");
  EXPECT_EQ(second.header("Location"), first.header("Location"));
  // Without the key the request runs: the hold is booked already.
  auto plain =
      http().post("/v1/bookings", {{"hold_id", hold["hold_id"]}}, who.token);
  ASSERT_TRUE(is_problem(plain, 409, "hold_booked"));
  EXPECT_EQ(plain.body_json()["booking_id"], first.body_json()["booking_id"]);
  EXPECT_EQ(
      http().get("/v1/bookings", who.token).body_json()["bookings"].size(), 1u);
}

// -- operations ---------------------------------------------------------------

TEST_F(api_test, HealthReportsServices) {
  auto response = http().get("/health");
  ASSERT_EQ(response.status, 200u) << response;
  auto body = response.body_json();
  EXPECT_EQ(body["status"], "healthy");
  EXPECT_EQ(body["services"]["store"], "ok");
  // Kafka and Redis are not configured in this run.
  EXPECT_EQ(body["services"]["kafka"], "disabled");
  EXPECT_EQ(body["services"]["redis"], "disabled");
}

TEST_F(api_test, ReadyIs200) {
  auto response = http().get("/ready");
  EXPECT_EQ(response.status, 200u) << response;
}

TEST_F(api_test, MetricsArePrometheusText) {
  make_arena();
  auto who = new_customer(http());
  auto before = http().get("/metrics");
  ASSERT_EQ(before.status, 200u) << before;
  EXPECT_EQ(before.header("Content-Type").value_or("").rfind("text/plain", 0),
            0u)
      << before.header("Content-Type").value_or("");
  EXPECT_NE(before.body.find("# TYPE rsv_holds_created_total counter"),
            std::string::npos);
  EXPECT_NE(before.body.find("# TYPE rsv_http_requests_total counter"),
            std::string::npos);
  auto holds_before = metric_value(before.body, "rsv_holds_created_total");
  auto requests_before = metric_value(before.body, "rsv_http_requests_total");
  EXPECT_GE(holds_before, 0.0);
  EXPECT_GT(requests_before, 0.0);
  ASSERT_EQ(hold_quantity(http(), who, "arena", "floor", 2).status, 201u);
  auto after = http().get("/metrics");
  EXPECT_EQ(metric_value(after.body, "rsv_holds_created_total"),
            holds_before + 1);
  EXPECT_GT(metric_value(after.body, "rsv_http_requests_total"),
            requests_before);
}

// -- waiting room on a node without --redis-url -------------------------------

TEST_F(api_test, WaitingRoomNeedsRedis) {
  auto body = event_json("queued", {section_json("s", 100, {{"A", 2}})});
  body["waiting_room"] = {{"enabled", true}, {"admit_per_second", 50}};
  auto response = http().post("/v1/events", body, admin());
  EXPECT_TRUE(is_problem(response, 422, "validation_failed"));
  EXPECT_NE(detail_of(response).find("waiting_room"), std::string::npos)
      << response;

  body["waiting_room"] = {{"enabled", false}, {"admit_per_second", 50}};
  auto disabled = http().post("/v1/events", body, admin());
  ASSERT_EQ(disabled.status, 201u) << disabled;
  EXPECT_EQ(disabled.body_json()["waiting_room"],
            json({{"enabled", false}, {"admit_per_second", 50}}));

  auto who = new_customer(http());
  EXPECT_TRUE(is_problem(
      http().request("POST", "/v1/events/queued/queue", bearer(who.token)), 404,
      "not_found"));
  EXPECT_TRUE(is_problem(http().get("/v1/queue/any-ticket", who.token), 404,
                         "not_found"));
  // Without an enabled waiting room X-Admission-Token is ignored.
  auto hold = hold_quantity(http(), who, "queued", "s", 1,
                            {{"X-Admission-Token", "junk"}});
  EXPECT_EQ(hold.status, 201u) << hold;
}

// -- the binary ---------------------------------------------------------------

TEST_F(api_test, HealthcheckCommandFollowsReady) {
  auto url = "http://127.0.0.1:" + std::to_string(port()) + "/ready";
  auto up = run_command({server_binary(), "healthcheck", "--url", url});
  EXPECT_EQ(up.exit_code, 0) << up.output;
  auto down = run_command(
      {server_binary(), "healthcheck", "--url",
       "http://127.0.0.1:" + std::to_string(pick_free_port()) + "/ready"});
  EXPECT_EQ(down.exit_code, 1) << down.output;
  auto not_ready = run_command(
      {server_binary(), "healthcheck", "--url",
       "http://127.0.0.1:" + std::to_string(port()) + "/v1/events/nope"});
  EXPECT_EQ(not_ready.exit_code, 1) << not_ready.output;
}

TEST(cli, HelpListsEveryFlagWithItsVariable) {
  auto top = run_command({server_binary(), "--help"});
  EXPECT_EQ(top.exit_code, 0) << top.output;
  for (const char* command : {"serve", "migrate", "healthcheck"})
    EXPECT_NE(top.output.find(command), std::string::npos) << command << "\n"
                                                           << top.output;
  auto serve = run_command({server_binary(), "serve", "--help"});
  EXPECT_EQ(serve.exit_code, 0) << serve.output;
  std::vector<std::pair<std::string, std::string>> flags = {
      {"--listen", "RSV_LISTEN"},
      {"--admin-token", "RSV_ADMIN_TOKEN"},
      {"--store", "RSV_STORE"},
      {"--pg-dsn", "RSV_PG_DSN"},
      {"--kafka-brokers", "RSV_KAFKA_BROKERS"},
      {"--redis-url", "RSV_REDIS_URL"},
      {"--io-threads", "RSV_IO_THREADS"},
      {"--log-level", "RSV_LOG_LEVEL"},
      {"--log-format", "RSV_LOG_FORMAT"},
      {"--cluster", "RSV_CLUSTER"},
      {"--advertise", "RSV_ADVERTISE"},
      {"--cluster-partitions", "RSV_CLUSTER_PARTITIONS"},
      {"--cluster-session-timeout-ms", "RSV_CLUSTER_SESSION_TIMEOUT_MS"},
      {"--cluster-owners-refresh-ms", "RSV_CLUSTER_OWNERS_REFRESH_MS"},
      {"--token-secret", "RSV_TOKEN_SECRET"},
      {"--token-secrets-accepted", "RSV_TOKEN_SECRETS_ACCEPTED"},
      {"--password-hash-threads", "RSV_PASSWORD_HASH_THREADS"},
      {"--auth-limit-address", "RSV_AUTH_LIMIT_ADDRESS"},
      {"--auth-burst-address", "RSV_AUTH_BURST_ADDRESS"},
      {"--auth-limit-email", "RSV_AUTH_LIMIT_EMAIL"},
      {"--auth-burst-email", "RSV_AUTH_BURST_EMAIL"},
      {"--trusted-proxies", "RSV_TRUSTED_PROXIES"},
  };
  for (const auto& [flag, variable] : flags) {
    EXPECT_NE(serve.output.find(flag), std::string::npos) << flag << "\n"
                                                          << serve.output;
    EXPECT_NE(serve.output.find(variable), std::string::npos) << variable;
  }
  EXPECT_NE(serve.output.find("127.0.0.1:8080"), std::string::npos)
      << "the default of --listen";
}

// A cluster node that could not work refuses to start, and says why, before
// it touches a database or a broker.
TEST(cli, ClusterRefusesWhatCannotWork) {
  auto memory = run_command({server_binary(), "serve", "--cluster", "--store",
                             "memory", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(memory.exit_code, 2) << memory.output;
  EXPECT_NE(memory.output.find("--cluster needs --store postgres"),
            std::string::npos)
      << memory.output;
  auto no_advertise = run_command(
      {server_binary(), "serve", "--cluster", "--store", "postgres", "--pg-dsn",
       "host=127.0.0.1 port=1", "--kafka-brokers", "127.0.0.1:1",
       "--token-secret", "0123456789abcdef0123456789abcdef", "--listen",
       "127.0.0.1:0"});
  EXPECT_EQ(no_advertise.exit_code, 2) << no_advertise.output;
  EXPECT_NE(no_advertise.output.find("--cluster needs --advertise"),
            std::string::npos)
      << no_advertise.output;
}

} // namespace
} // namespace rsv::e2e
