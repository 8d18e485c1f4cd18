// Unit tests of accounts and sessions against hostile clients (issue 19,
// docs/reliability.md "Hostile clients"), label `security`. The end-to-end
// side is tests/e2e/security_test.cpp.

#include "core/errc.hpp"
#include "http/json_mapping.hpp"

#include <gtest/gtest.h>

namespace rsv::http {
namespace {

using nlohmann::json;

// -- emails -------------------------------------------------------------------

std::string detail_of(const caf::error& err) {
  EXPECT_EQ(code_of(err), errc::validation_failed);
  return err.context().get_as<std::string>(0);
}

// Look-alike letters would make two accounts look the same (issue 19):
// registrations take ASCII emails only, and say so.
TEST(json_mapping, registration_refuses_non_ascii_emails) {
  for (const char* email : {"\xd0\xb0nn@example.org",         // Cyrillic a
                            "ann@ex\xc3\xa4mple.org",         // a with umlaut
                            "\xef\xbd\x81nn@example.org",     // fullwidth a
                            "ann\xe2\x80\x8b@example.org"}) { // zero width
    auto refused =
        parse_registration(json{{"email", email}, {"password", "12345678"}});
    ASSERT_FALSE(refused) << email;
    EXPECT_EQ(detail_of(refused.error()).rfind("email: must be ASCII", 0), 0u)
        << detail_of(refused.error());
  }
  // Logging in with such an email is not an error of its own: it matches no
  // account, as any unknown email does.
  EXPECT_TRUE(parse_login(
      json{{"email", "\xd0\xb0nn@example.org"}, {"password", "12345678"}}));
}

} // namespace
} // namespace rsv::http
