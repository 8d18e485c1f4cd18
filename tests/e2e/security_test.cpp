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

} // namespace
} // namespace rsv::e2e
