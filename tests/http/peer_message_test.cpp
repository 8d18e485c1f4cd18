#include "core/errc.hpp"
#include "http/peer_message.hpp"

#include <gtest/gtest.h>

namespace rsv::http {
namespace {

namespace bhttp = boost::beast::http;

TEST(peer_message, addresses_split_into_host_and_port) {
  peer_address name;
  EXPECT_EQ(parse_address("node-b.internal:8080", name), std::nullopt);
  EXPECT_EQ(name.host, "node-b.internal");
  EXPECT_EQ(name.port, "8080");
  EXPECT_FALSE(name.literal); // a name: resolved before each use

  peer_address v4;
  EXPECT_EQ(parse_address("127.0.0.1:9001", v4), std::nullopt);
  ASSERT_TRUE(v4.literal);
  EXPECT_EQ(v4.literal->port(), 9001);

  peer_address v6;
  EXPECT_EQ(parse_address("[::1]:9002", v6), std::nullopt);
  EXPECT_EQ(v6.host, "::1");
  ASSERT_TRUE(v6.literal);
  EXPECT_TRUE(v6.literal->address().is_v6());
}

TEST(peer_message, bad_addresses_are_refused_with_the_reason) {
  peer_address out;
  EXPECT_EQ(parse_address("node-b", out), "no port");
  EXPECT_EQ(parse_address("::1:9000", out), "an IPv6 address needs brackets");
  EXPECT_EQ(parse_address("[::1]9000", out), "not [IPv6]:port");
  for (const char* bad : {"host:0", "host:65536", "host:", ":80", "host:8x"})
    EXPECT_EQ(parse_address(bad, out), "not host:port") << bad;
}

TEST(peer_message, the_request_carries_what_the_api_reads) {
  api_request req;
  req.verb = method::post;
  req.target = "/v1/holds?x=1";
  req.content_type = "application/json";
  req.authorization = "Bearer t";
  req.idempotency_key = "k-1";
  req.has_idempotency_key = true;
  req.admission_token = "ticket";
  req.remote_address = "203.0.113.9";
  req.body = R"({"seats":2})";
  std::vector<std::pair<std::string, std::string>> extra{
      {"X-Rsv-Forwarded", "node-a"}};
  auto message = to_peer_request("10.0.0.2:8080", req, extra);
  ASSERT_TRUE(message) << describe(message.error());
  EXPECT_EQ(message->method(), bhttp::verb::post);
  EXPECT_EQ(message->target(), "/v1/holds?x=1");
  EXPECT_EQ((*message)[bhttp::field::host], "10.0.0.2:8080");
  EXPECT_EQ((*message)[bhttp::field::authorization], "Bearer t");
  EXPECT_EQ((*message)["Idempotency-Key"], "k-1");
  EXPECT_EQ((*message)["X-Admission-Token"], "ticket");
  EXPECT_EQ((*message)["X-Forwarded-For"], "203.0.113.9");
  EXPECT_EQ((*message)["X-Rsv-Forwarded"], "node-a");
  EXPECT_EQ((*message)[bhttp::field::content_length], "11");
  EXPECT_EQ(message->body(), R"({"seats":2})");
}

TEST(peer_message, a_request_without_a_method_is_not_forwarded) {
  api_request req;
  std::vector<std::pair<std::string, std::string>> extra;
  auto message = to_peer_request("10.0.0.2:8080", req, extra);
  ASSERT_FALSE(message);
  EXPECT_NE(describe(message.error()).find("10.0.0.2:8080"), std::string::npos);
}

TEST(peer_message, the_answer_keeps_end_to_end_headers_only) {
  bhttp::response<bhttp::string_body> answer{bhttp::status::conflict, 11};
  answer.set(bhttp::field::content_type, "application/problem+json");
  answer.set(bhttp::field::connection, "keep-alive, X-Peer-Trace");
  answer.set("X-Peer-Trace", "abc");
  answer.set(bhttp::field::server, "peer");
  answer.set(bhttp::field::date, "Mon, 07 Dec 2026 00:00:00 GMT");
  answer.set(bhttp::field::etag, "\"v1\"");
  answer.insert("Retry-After", "1");
  answer.body() = R"({"code":"seat_taken"})";
  answer.prepare_payload();
  auto out = to_api_response(std::move(answer));
  EXPECT_EQ(out.status, 409u);
  EXPECT_EQ(out.content_type, "application/problem+json");
  EXPECT_EQ(out.body, R"({"code":"seat_taken"})");
  std::vector<std::pair<std::string, std::string>> expected{
      {"ETag", "\"v1\""}, {"Retry-After", "1"}};
  EXPECT_EQ(out.headers, expected);
}

} // namespace
} // namespace rsv::http
