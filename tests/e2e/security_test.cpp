// Hostile clients against accounts and sessions (issue 19; docs/reliability.md,
// "Hostile clients"), through the real binary. Label `security`.

#include "harness.hpp"

namespace rsv::e2e {
namespace {

// -- item 4: look-alike emails ------------------------------------------------

class email_test : public server_test {};

// "аlice" with a Cyrillic а is another string than "alice" but looks the
// same: such addresses could pose as someone else's account. Emails are
// ASCII only (docs/openapi.yaml).
TEST_F(email_test, LookAlikeUnicodeEmailsAreRefused) {
  auto first =
      http().post("/v1/customers", {{"email", "alice@lookalike.example"},
                                    {"password", "long enough"}});
  ASSERT_EQ(first.status, 201u) << first;
  for (const char* lookalike :
       {"\xd0\xb0lice@lookalike.example",         // Cyrillic a
        "alice@lookalike.exampl\xd0\xb5",         // Cyrillic e
        "\xef\xbd\x81lice@lookalike.example",     // fullwidth a
        "alice@lookalike.example\xe2\x80\x8b"}) { // zero-width space
    auto again = http().post(
        "/v1/customers", {{"email", lookalike}, {"password", "long enough"}});
    EXPECT_TRUE(is_problem(again, 422, "validation_failed")) << again;
    EXPECT_NE(again.body.find("email"), std::string::npos) << again;
    EXPECT_NE(again.body.find("ASCII"), std::string::npos) << again;
  }
}

// -- item 2: the admin token --------------------------------------------------

TEST(admin_token, ShortAdminTokensAreRefusedAtStart) {
  for (std::string token : {"x", "0123456789abcdef0123456789abcde"}) {
    auto started = run_command({server_binary(), "serve", "--listen",
                                "127.0.0.1:0", "--admin-token", token},
                               15s);
    EXPECT_EQ(started.exit_code, 2) << token << ": " << started.output;
    EXPECT_NE(started.output.find("at least 32 characters"), std::string::npos)
        << started.output;
  }
  // Through the variable, as operators should pass it, too.
  auto from_env = run_command({"env", "RSV_ADMIN_TOKEN=short", server_binary(),
                               "serve", "--listen", "127.0.0.1:0"},
                              15s);
  EXPECT_EQ(from_env.exit_code, 2) << from_env.output;
  auto help = run_command({server_binary(), "serve", "--help"});
  EXPECT_NE(help.output.find("at least 32"), std::string::npos) << help.output;
}

// -- item 3: session keys -----------------------------------------------------

constexpr const char* key_one = "rotation-key-one-0123456789abcdef0123";
constexpr const char* key_two = "rotation-key-two-0123456789abcdef0123";

unsigned bookings_status(unsigned short port, const std::string& token) {
  http_connection http{port};
  return http.get("/v1/bookings", token).status;
}

// A new signing key with the old one still accepted: nobody is logged out;
// once the old key is dropped, its tokens stop working.
TEST(session_keys, RotationKeepsSessionsUntilTheOldKeyIsDropped) {
  std::string old_token;
  {
    server_process server{{"--token-secret", key_one}};
    http_connection http{server.port()};
    old_token = new_customer(http, "rotating").token;
    EXPECT_EQ(bookings_status(server.port(), old_token), 200u);
    EXPECT_EQ(server.stop(), 0);
  }
  std::string new_token;
  {
    server_process server{
        {"--token-secret", key_two, "--token-secrets-accepted", key_one}};
    EXPECT_EQ(bookings_status(server.port(), old_token), 200u) << server.log();
    http_connection http{server.port()};
    new_token = new_customer(http, "rotated").token;
    EXPECT_NE(new_token.substr(0, 12), old_token.substr(0, 12))
        << "tokens name the key that signed them";
    EXPECT_EQ(server.stop(), 0);
  }
  {
    server_process server{{"--token-secret", key_two}};
    EXPECT_EQ(bookings_status(server.port(), old_token), 401u);
    EXPECT_EQ(bookings_status(server.port(), new_token), 200u);
    EXPECT_EQ(server.stop(), 0);
  }
}

TEST(session_keys, ShortOrOrphanAcceptedKeysAreRefusedAtStart) {
  auto short_key = run_command({server_binary(), "serve", "--listen",
                                "127.0.0.1:0", "--token-secret", key_one,
                                "--token-secrets-accepted", "short"},
                               15s);
  EXPECT_EQ(short_key.exit_code, 2) << short_key.output;
  auto no_current =
      run_command({server_binary(), "serve", "--listen", "127.0.0.1:0",
                   "--token-secrets-accepted", key_one},
                  15s);
  EXPECT_EQ(no_current.exit_code, 2) << no_current.output;
}

class session_answer_test : public server_test {};

// A token is a credential: no cache on the way may keep the answer.
TEST_F(session_answer_test, SessionAnswersAreNotStored) {
  auto who = new_customer(http(), "cached");
  auto login = http().post("/v1/sessions",
                           {{"email", who.email}, {"password", who.password}});
  ASSERT_EQ(login.status, 201u) << login;
  EXPECT_EQ(login.header("Cache-Control").value_or(""), "no-store") << login;
}

} // namespace
} // namespace rsv::e2e
