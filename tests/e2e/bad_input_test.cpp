// Hostile and broken input through the real binary: malformed and
// oversized requests, wrong types, slow and pipelining clients.

#include "harness.hpp"

#include <cstdio>
#include <set>

namespace rsv::e2e {
namespace {

using strings = std::vector<std::string>;
using clock_type = std::chrono::steady_clock;

std::string detail_of(const http_response& response) {
  auto body = json::parse(response.body, nullptr, false);
  if (body.is_discarded() || !body.contains("detail") ||
      !body["detail"].is_string())
    return {};
  return body["detail"].get<std::string>();
}

/// A POST with a JSON body, as raw bytes.
std::string raw_post(const std::string& target, const std::string& body,
                     const std::string& extra_headers = {}) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

class bad_input_test : public server_test {
protected:
  void SetUp() override {
    server_test::SetUp();
    // "venue": main (1000 cents) rows A, B, C of 20 seats.
    create_event(
        http(), admin(),
        event_json("venue", {section_json("main", 1000,
                                          {{"A", 20}, {"B", 20}, {"C", 20}})}));
    who_ = new_customer(http());
  }

  http_response hold_raw(const std::string& body) {
    return http().post_raw("/v1/holds", body, who_.token);
  }

  counts main_counts() { return section_counts(http(), "venue", "main"); }

  customer who_;
};

// -- malformed JSON -----------------------------------------------------------

TEST_F(bad_input_test, MalformedJsonIs400) {
  strings bodies = {
      "{",
      "}",
      "{\"event_id\": \"venue\", }",
      "{\"event_id\": venue}",
      "{'event_id': 'venue'}",
      "{\"event_id\": \"venue\" \"section_id\": \"main\"}",
      "{\"quantity\": 01}",
      "{\"quantity\": 1}{",
      "{\"quantity\": NaN}",
      "nul",
      "\"unterminated",
      std::string{"{\"event_id\": \"ven\0ue\"}",
                  sizeof("{\"event_id\": \"ven\0ue\"}") - 1},
  };
  for (const auto& body : bodies) {
    EXPECT_TRUE(is_problem(hold_raw(body), 400, "invalid_json")) << body;
    EXPECT_TRUE(
        is_problem(http().post_raw("/v1/customers", body), 400, "invalid_json"))
        << body;
    EXPECT_TRUE(
        is_problem(http().post_raw("/v1/sessions", body), 400, "invalid_json"))
        << body;
    EXPECT_TRUE(is_problem(http().post_raw("/v1/bookings", body, who_.token),
                           400, "invalid_json"))
        << body;
    EXPECT_TRUE(is_problem(http().post_raw("/v1/events", body, admin()), 400,
                           "invalid_json"))
        << body;
  }
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
}

TEST_F(bad_input_test, EmptyBodyIs400) {
  EXPECT_TRUE(is_problem(hold_raw(""), 400, "invalid_json"));
  EXPECT_TRUE(
      is_problem(http().post_raw("/v1/customers", ""), 400, "invalid_json"));
  EXPECT_TRUE(is_problem(http().post_raw("/v1/events", "", admin()), 400,
                         "invalid_json"));
}

TEST_F(bad_input_test, InvalidUtf8InAStringIs400) {
  strings bad = {"\xff",     "\xc3",         "\xe2\x82",
                 "\xc0\xaf", "\xed\xa0\x80", "\xf8\x88\x80\x80\x80"};
  for (const auto& bytes : bad) {
    auto customer_body = "{\"email\": \"u" + bytes +
                         "@e2e.example\", \"password\": \"12345678\"}";
    EXPECT_TRUE(is_problem(http().post_raw("/v1/customers", customer_body), 400,
                           "invalid_json"))
        << "bytes of length " << bytes.size();
    auto hold_body = "{\"event_id\": \"venue\", \"section_id\": \"main\", "
                     "\"seats\": [\"A-1\", \"A-" +
                     bytes + "\"]}";
    EXPECT_TRUE(is_problem(hold_raw(hold_body), 400, "invalid_json"))
        << "bytes of length " << bytes.size();
    auto event_body =
        event_json("utf", {section_json("s", 1, {{"A", 1}})}).dump();
    event_body.replace(event_body.find("Event utf"), 9, "Event " + bytes);
    EXPECT_TRUE(is_problem(http().post_raw("/v1/events", event_body, admin()),
                           400, "invalid_json"))
        << "bytes of length " << bytes.size();
  }
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
  // Valid multi-byte UTF-8 is fine.
  auto event = event_json(
      "utf",
      {section_json("s", 1, {{"A", 1}}, "Parkett \xc3\xa9\xe2\x82\xac")});
  auto created = http().post("/v1/events", event, admin());
  ASSERT_EQ(created.status, 201u) << created;
  EXPECT_EQ(created.body_json()["sections"][0]["name"],
            "Parkett \xc3\xa9\xe2\x82\xac");
}

// -- wrong types and ranges ---------------------------------------------------

TEST_F(bad_input_test, WrongTypesAre422NamingTheField) {
  struct bad {
    std::string body;
    std::string field;
  };
  std::vector<bad> cases = {
      {R"({"section_id":"main","quantity":1})", "event_id"},
      {R"({"event_id":5,"section_id":"main","quantity":1})", "event_id"},
      {R"({"event_id":["venue"],"section_id":"main","quantity":1})",
       "event_id"},
      {R"({"event_id":"Venue!","section_id":"main","quantity":1})", "event_id"},
      {R"({"event_id":"venue","quantity":1})", "section_id"},
      {R"({"event_id":"venue","section_id":{},"quantity":1})", "section_id"},
      {R"({"event_id":"venue","section_id":"main","quantity":"2"})",
       "quantity"},
      {R"({"event_id":"venue","section_id":"main","quantity":true})",
       "quantity"},
      {R"({"event_id":"venue","section_id":"main","quantity":[2]})",
       "quantity"},
      {R"({"event_id":"venue","section_id":"main","seats":"A-1"})", "seats"},
      {R"({"event_id":"venue","section_id":"main","seats":{"A-1":true}})",
       "seats"},
      {R"({"event_id":"venue","section_id":"main","seats":[1,2]})", "seats"},
      {R"({"event_id":"venue","section_id":"main","seats":[null]})", "seats"},
      {R"({"event_id":"venue","section_id":"main","seats":[["A-1"]]})",
       "seats"},
  };
  for (const auto& c : cases) {
    auto response = hold_raw(c.body);
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << c.body;
    EXPECT_NE(detail_of(response).find(c.field), std::string::npos)
        << "should name " << c.field << ": " << response;
  }
  for (const std::string& body :
       strings{"[]", "[1]", "\"text\"", "42", "null", "true"}) {
    EXPECT_TRUE(is_problem(hold_raw(body), 422, "validation_failed")) << body;
    EXPECT_TRUE(is_problem(http().post_raw("/v1/customers", body), 422,
                           "validation_failed"))
        << body;
    EXPECT_TRUE(is_problem(http().post_raw("/v1/bookings", body, who_.token),
                           422, "validation_failed"))
        << body;
  }
  // Sessions: a missing or non-string email or password.
  for (const std::string& body :
       strings{R"({"password":"12345678"})", R"({"email":"a@b.example"})",
               R"({"email":7,"password":"12345678"})",
               R"({"email":"a@b.example","password":12345678})"}) {
    auto response = http().post_raw("/v1/sessions", body);
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << body;
  }
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
}

TEST_F(bad_input_test, BadQuantityIs422) {
  for (const std::string quantity :
       {"0", "-1", "-50", "51", "1000", "2.5", "1.0", "1e2",
        "100000000000000000000", "9223372036854775808", "18446744073709551616",
        "-9223372036854775809"}) {
    auto response =
        hold_raw(R"({"event_id":"venue","section_id":"main","quantity":)" +
                 quantity + "}");
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << quantity;
    EXPECT_NE(detail_of(response).find("quantity"), std::string::npos)
        << response;
  }
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
  // The bounds themselves are fine.
  EXPECT_EQ(
      hold_raw(R"({"event_id":"venue","section_id":"main","quantity":50})")
          .status,
      201u);
  EXPECT_EQ(hold_raw(R"({"event_id":"venue","section_id":"main","quantity":1})")
                .status,
            201u);
  EXPECT_EQ(main_counts(), (counts{9, 51, 0}));
}

TEST_F(bad_input_test, BadSeatListsAre422) {
  auto seats_body = [](const json& seats) {
    return json{{"event_id", "venue"}, {"section_id", "main"}, {"seats", seats}}
        .dump();
  };
  json fifty_one = json::array();
  for (int i = 1; i <= 20; ++i)
    for (const char* row : {"A", "B", "C"})
      if (fifty_one.size() < 51)
        fifty_one.push_back(std::string{row} + "-" + std::to_string(i));
  std::vector<std::pair<std::string, std::string>> cases = {
      {seats_body(json::array()), "seats"},
      {seats_body(fifty_one), "seats"},
      {seats_body({"A-1", "A-2", "A-1"}), "seats"},
      {seats_body({"B-7", "B-7"}), "seats"},
      {R"({"event_id":"venue","section_id":"main","seats":["A-1"],"quantity":1})",
       ""},
      {R"({"event_id":"venue","section_id":"main"})", ""},
      {R"({"event_id":"venue","section_id":"main","seats":null,"quantity":null})",
       ""},
  };
  for (const auto& [body, field] : cases) {
    auto response = hold_raw(body);
    EXPECT_TRUE(is_problem(response, 422, "validation_failed")) << body;
    if (!field.empty()) {
      EXPECT_NE(detail_of(response).find(field), std::string::npos) << response;
    }
  }
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
  // Fifty distinct seats are fine.
  json fifty = fifty_one;
  fifty.erase(fifty.size() - 1);
  auto ok = hold_raw(seats_body(fifty));
  ASSERT_EQ(ok.status, 201u) << ok;
  EXPECT_EQ(ok.body_json()["seats"].size(), 50u);
  EXPECT_EQ(ok.body_json()["total_cents"], 50 * 1000);
}

// -- media type ---------------------------------------------------------------

TEST_F(bad_input_test, BodyWithoutJsonContentTypeIs415) {
  std::string hold = R"({"event_id":"venue","section_id":"main","quantity":1})";
  std::vector<headers_t> wrong = {
      {},
      {{"Content-Type", "text/plain"}},
      {{"Content-Type", "application/xml"}},
      {{"Content-Type", "application/jsonp"}},
      {{"Content-Type", "multipart/form-data; boundary=x"}},
  };
  for (const auto& content_type : wrong) {
    auto headers = content_type;
    headers.emplace_back("Authorization", "Bearer " + who_.token);
    EXPECT_TRUE(is_problem(http().request("POST", "/v1/holds", headers, hold),
                           415, "unsupported_media_type"));
    EXPECT_TRUE(is_problem(
        http().request("POST", "/v1/bookings", headers, R"({"hold_id":"x"})"),
        415, "unsupported_media_type"));
    auto admin_headers = content_type;
    admin_headers.emplace_back("Authorization", "Bearer " + admin());
    EXPECT_TRUE(is_problem(
        http().request(
            "POST", "/v1/events", admin_headers,
            event_json("typed", {section_json("s", 1, {{"A", 1}})}).dump()),
        415, "unsupported_media_type"));
    EXPECT_TRUE(is_problem(
        http().request(
            "POST", "/v1/sessions", content_type,
            json{{"email", who_.email}, {"password", who_.password}}.dump()),
        415, "unsupported_media_type"));
  }
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
  EXPECT_TRUE(is_problem(http().get("/v1/events/typed"), 404, "not_found"));
  // The documented variants of application/json are accepted.
  for (const char* type :
       {"application/json; charset=utf-8", "Application/JSON",
        "application/json;charset=UTF-8"}) {
    auto response = http().request(
        "POST", "/v1/holds",
        {{"Content-Type", type}, {"Authorization", "Bearer " + who_.token}},
        hold);
    EXPECT_EQ(response.status, 201u) << type << "\n" << response;
  }
}

// -- sizes --------------------------------------------------------------------

TEST_F(bad_input_test, BodyOver64KiBIs413) {
  // A valid registration padded with spaces to exactly 64 KiB is accepted.
  auto padded = [](std::size_t size) {
    std::string body =
        json{{"email", unique_email()}, {"password", "12345678"}}.dump();
    body.insert(1, size - body.size(), ' ');
    return body;
  };
  auto exact = http().post_raw("/v1/customers", padded(64 * 1024));
  EXPECT_EQ(exact.status, 201u) << exact;

  // One byte more, sent whole.
  {
    raw_connection raw(port());
    raw.send(raw_post("/v1/customers", padded(64 * 1024 + 1)));
    auto response = raw.read_response();
    ASSERT_TRUE(response) << raw.last_error();
    EXPECT_TRUE(is_problem(*response, 413, "payload_too_large"));
  }
  // Announced by Content-Length only: answered before the body is sent.
  for (const char* target :
       {"/v1/customers", "/v1/holds", "/v1/bookings", "/v1/sessions"}) {
    raw_connection raw(port());
    ASSERT_TRUE(
        raw.send(std::string{"POST "} + target +
                 " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Authorization: Bearer " +
                 who_.token + "\r\nContent-Length: 70000\r\n\r\n"));
    auto response = raw.read_response();
    ASSERT_TRUE(response) << target << ": " << raw.last_error();
    EXPECT_TRUE(is_problem(*response, 413, "payload_too_large")) << target;
  }
  // Chunked, without a length up front.
  {
    raw_connection raw(port());
    std::string chunk(16 * 1024, ' ');
    std::string request = "POST /v1/holds HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\n"
                          "Authorization: Bearer " +
                          who_.token + "\r\nTransfer-Encoding: chunked\r\n\r\n";
    raw.send(request);
    char size[16];
    std::snprintf(size, sizeof(size), "%zx\r\n", chunk.size());
    for (int i = 0; i < 5; ++i)
      if (!raw.send(std::string{size} + chunk + "\r\n")) break;
    raw.send("0\r\n\r\n");
    auto response = raw.read_response();
    ASSERT_TRUE(response) << raw.last_error();
    EXPECT_TRUE(is_problem(*response, 413, "payload_too_large"));
  }
  // The server is fine afterwards.
  EXPECT_EQ(http().get("/health").status, 200u);
  EXPECT_EQ(main_counts(), (counts{60, 0, 0}));
}

TEST_F(bad_input_test, EventsTakeUpToOneMiB) {
  auto padded_event = [](const std::string& id, std::size_t size) {
    auto body = event_json(id, {section_json("s", 100, {{"A", 10}})}).dump();
    body.insert(1, size - body.size(), ' ');
    return body;
  };
  // About 900 KiB: accepted on POST /v1/events ...
  auto big =
      http().post_raw("/v1/events", padded_event("big", 900 * 1024), admin());
  EXPECT_EQ(big.status, 201u) << big;
  EXPECT_EQ(http().get("/v1/events/big").status, 200u);
  // ... and exactly 1 MiB as well.
  auto mib =
      http().post_raw("/v1/events", padded_event("mib", 1024 * 1024), admin());
  EXPECT_EQ(mib.status, 201u) << mib;
  // With Expect: 100-continue, as curl sends large bodies: 100, then 201.
  {
    raw_connection raw(port());
    auto body = padded_event("curl", 1000 * 1024);
    ASSERT_TRUE(
        raw.send("POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                 "Content-Type: application/json\r\nAuthorization: Bearer " +
                 admin() + "\r\nExpect: 100-continue\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n"));
    auto interim = raw.read_response();
    ASSERT_TRUE(interim) << raw.last_error();
    EXPECT_EQ(interim->status, 100u);
    ASSERT_TRUE(raw.send(body));
    auto response = raw.read_response();
    ASSERT_TRUE(response) << raw.last_error();
    EXPECT_EQ(response->status, 201u) << *response;
  }
  // Not on other routes.
  {
    raw_connection raw(port());
    ASSERT_TRUE(raw.send("POST /v1/customers HTTP/1.1\r\nHost: "
                         "x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 921600\r\n\r\n"));
    auto response = raw.read_response();
    ASSERT_TRUE(response) << raw.last_error();
    EXPECT_TRUE(is_problem(*response, 413, "payload_too_large"));
  }
  // More than 1 MiB: 413, however the size shows up. Each case on its own
  // connection, each checked even when another one fails.
  auto expect_413 = [&](const std::string& what, const std::string& head,
                        const std::vector<std::string>& body_parts) {
    raw_connection raw(port());
    EXPECT_TRUE(raw.send(head)) << what << ": " << raw.last_error();
    for (const auto& part : body_parts)
      if (!raw.send(part)) break; // the server may hang up once it has answered
    auto response = raw.read_response();
    if (!response) {
      ADD_FAILURE() << what << ": no answer (" << raw.last_error()
                    << "), expected 413";
      return;
    }
    EXPECT_TRUE(is_problem(*response, 413, "payload_too_large")) << what;
  };
  std::string head =
      "POST /v1/events HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nAuthorization: Bearer " +
      admin() + "\r\n";
  // ... announced by Content-Length,
  expect_413("Content-Length 1 MiB + 1",
             head + "Content-Length: " + std::to_string(1024 * 1024 + 1) +
                 "\r\n\r\n",
             {});
  // ... with Expect: 100-continue, as curl sends it,
  expect_413("Expect: 100-continue, 2 MiB",
             head + "Expect: 100-continue\r\nContent-Length: " +
                 std::to_string(2 * 1024 * 1024) + "\r\n\r\n",
             {});
  // ... or chunked, without a length up front.
  std::string chunk(256 * 1024, ' ');
  char size[16];
  std::snprintf(size, sizeof(size), "%zx\r\n", chunk.size());
  std::vector<std::string> chunks(5, std::string{size} + chunk + "\r\n");
  chunks.push_back("0\r\n\r\n");
  expect_413("chunked, 1.25 MiB", head + "Transfer-Encoding: chunked\r\n\r\n",
             chunks);

  auto list = http().get("/v1/events").body_json()["events"];
  EXPECT_EQ(list.size(), 4u) << list; // venue, big, mib, curl
}

TEST_F(bad_input_test, HeadersOver8KiBAre431OrClosed) {
  // Just under 8 KiB of headers is fine.
  auto fits = http().request("GET", "/health",
                             {{"X-Filler", std::string(7 * 1024, 'f')}});
  EXPECT_EQ(fits.status, 200u) << fits;

  for (std::size_t size : {9 * 1024, 16 * 1024, 64 * 1024}) {
    raw_connection raw(port());
    raw.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: " +
             std::string(size, 'f') + "\r\n\r\n");
    auto response = raw.read_response();
    if (response) {
      EXPECT_TRUE(is_problem(*response, 431, "request_header_fields_too_large"))
          << size;
      EXPECT_TRUE(raw.wait_closed(5s))
          << "the connection should close after a 431";
    } else {
      // No answer: the connection must at least be closed, not left hanging.
      EXPECT_NE(raw.last_error(), "") << size;
      EXPECT_TRUE(raw.wait_closed(5s)) << size;
    }
  }
  // Many headers that add up to more than 8 KiB.
  {
    raw_connection raw(port());
    std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 200; ++i)
      request += "X-Header-" + std::to_string(i) + ": " + std::string(60, 'v') +
                 "\r\n";
    raw.send(request + "\r\n");
    auto response = raw.read_response();
    if (response) {
      EXPECT_TRUE(
          is_problem(*response, 431, "request_header_fields_too_large"));
    } else {
      EXPECT_TRUE(raw.wait_closed(5s));
    }
  }
  // A huge Authorization on a customer route: same.
  {
    raw_connection raw(port());
    raw.send("GET /v1/bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
             std::string(10 * 1024, 'a') + "\r\n\r\n");
    auto response = raw.read_response();
    if (response) {
      EXPECT_TRUE(
          is_problem(*response, 431, "request_header_fields_too_large"));
    } else {
      EXPECT_TRUE(raw.wait_closed(5s));
    }
  }
  EXPECT_EQ(http().get("/health").status, 200u);
}

// -- slow, broken and pipelining clients --------------------------------------

TEST_F(bad_input_test, StalledClientDoesNotBlockOthersAndIsClosed) {
  // Half a request: the headers and half of the announced body, then nothing.
  raw_connection stalled(port());
  std::string body =
      json{{"email", unique_email()}, {"password", "12345678"}}.dump();
  ASSERT_TRUE(
      stalled.send("POST /v1/customers HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" +
                   body.substr(0, body.size() / 2)));
  // And one that sent half of its headers.
  raw_connection half_header(port());
  ASSERT_TRUE(
      half_header.send("GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: "));

  // Meanwhile other clients are served promptly, on a second connection.
  http_connection other(port(), 2s);
  auto worst = clock_type::duration::zero();
  for (int i = 0; i < 30; ++i) {
    auto start = clock_type::now();
    auto response = i % 3 == 0 ? hold_quantity(other, who_, "venue", "main", 1)
                               : other.get("/v1/events/venue");
    worst = std::max(worst, clock_type::now() - start);
    EXPECT_LT(response.status, 300u) << response;
  }
  EXPECT_LT(worst, 1s) << "a request took "
                       << std::chrono::duration<double>(worst).count() << " s";
  EXPECT_EQ(main_counts(), (counts{50, 10, 0}));

  // The stalled request never completes and the server eventually hangs up.
  auto start = clock_type::now();
  EXPECT_TRUE(stalled.wait_closed(40s)) << "still open after 40 s";
  auto waited = clock_type::now() - start;
  EXPECT_GT(waited, 500ms) << "closed too eagerly";
  // The half-sent customer was not registered.
  EXPECT_TRUE(is_problem(http().post("/v1/sessions", json::parse(body)), 401,
                         "invalid_credentials"));
  EXPECT_EQ(http().get("/health").status, 200u);
}

TEST_F(bad_input_test, PipelinedRequestsAreAnsweredInOrder) {
  auto hold_body = json{
      {"event_id", "venue"},
      {"section_id", "main"},
      {"quantity", 2}}.dump();
  std::string auth = "Authorization: Bearer " + who_.token + "\r\n";
  std::string batch = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" +
                      raw_post("/v1/holds", hold_body, auth) +
                      "GET /v1/events/nope HTTP/1.1\r\nHost: x\r\n\r\n" +
                      raw_post("/v1/holds", hold_body, auth) +
                      "GET /v1/events/venue HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_connection raw(port());
  ASSERT_TRUE(raw.send(batch));
  std::vector<http_response> responses;
  for (int i = 0; i < 5; ++i) {
    auto response = raw.read_response();
    ASSERT_TRUE(response) << "response " << i << ": " << raw.last_error();
    responses.push_back(*response);
  }
  EXPECT_EQ(responses[0].status, 200u);
  EXPECT_EQ(responses[0].body_json()["status"], "healthy");
  ASSERT_EQ(responses[1].status, 201u) << responses[1];
  EXPECT_EQ(responses[1].body_json()["seats"], json({"A-1", "A-2"}));
  EXPECT_TRUE(is_problem(responses[2], 404, "not_found"));
  ASSERT_EQ(responses[3].status, 201u) << responses[3];
  EXPECT_EQ(responses[3].body_json()["seats"], json({"A-3", "A-4"}));
  ASSERT_EQ(responses[4].status, 200u);
  EXPECT_EQ(responses[4].body_json()["sections"][0]["held"], 4);

  // Three registrations in one write, too.
  std::string three;
  strings emails;
  for (int i = 0; i < 3; ++i) {
    emails.push_back(unique_email("pipe"));
    three += raw_post(
        "/v1/customers",
        json{{"email", emails.back()}, {"password", "12345678"}}.dump());
  }
  ASSERT_TRUE(raw.send(three));
  for (int i = 0; i < 3; ++i) {
    auto response = raw.read_response();
    ASSERT_TRUE(response) << raw.last_error();
    ASSERT_EQ(response->status, 201u) << *response;
    EXPECT_EQ(response->body_json()["email"],
              emails[static_cast<std::size_t>(i)]);
  }
}

TEST_F(bad_input_test, KeepAliveServesManyRequestsOnOneConnection) {
  http_connection conn(port());
  for (int i = 0; i < 50; ++i) {
    auto response =
        i % 2 == 0 ? conn.get("/v1/events/venue") : conn.get("/health");
    ASSERT_EQ(response.status, 200u);
    EXPECT_TRUE(response.keep_alive);
  }
  // Errors keep the connection too.
  EXPECT_EQ(conn.get("/v1/nothing").status, 404u);
  EXPECT_EQ(conn.post_raw("/v1/customers", "{").status, 400u);
  EXPECT_EQ(conn.request("PUT", "/health").status, 405u);
  EXPECT_EQ(conn.get("/health").status, 200u);
  EXPECT_EQ(conn.connects(), 1);

  // Connection: close is honoured.
  raw_connection raw(port());
  raw.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto response = raw.read_response();
  ASSERT_TRUE(response) << raw.last_error();
  EXPECT_EQ(response->status, 200u);
  EXPECT_FALSE(response->keep_alive);
  EXPECT_TRUE(raw.wait_closed(5s));
}

TEST_F(bad_input_test, GarbageIsRejectedAndTheServerStaysUp) {
  for (const std::string& garbage : strings{
           std::string{"HELLO\r\n\r\n"}, std::string{"GET\r\n\r\n"},
           std::string{"GET /health HTTP/9.9\r\n\r\n"},
           std::string{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11},
           std::string{"GET /health HTTP/1.1\r\nContent-Length: -5\r\n\r\n"},
           std::string{"POST /v1/customers HTTP/1.1\r\nContent-Length: 5\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"},
           std::string(2000, '\0')}) {
    raw_connection raw(port());
    raw.send(garbage);
    // Either an error answer (4xx) or a closed connection; never a hang.
    auto response = raw.read_response(5s);
    if (response) {
      EXPECT_GE(response->status, 400u) << *response;
      EXPECT_LT(response->status, 500u) << *response;
    } else {
      EXPECT_NE(raw.last_error(), "timeout") << "no answer and no close";
    }
  }
  EXPECT_EQ(http().get("/health").status, 200u);
  EXPECT_EQ(hold_quantity(http(), who_, "venue", "main", 1).status, 201u);
}

} // namespace
} // namespace rsv::e2e
