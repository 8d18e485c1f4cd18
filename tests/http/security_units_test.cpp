// Unit tests of accounts and sessions against hostile clients (issue 19,
// docs/reliability.md "Hostile clients"), label `security`. The end-to-end
// side is tests/e2e/security_test.cpp.

#include "core/errc.hpp"
#include "http/auth.hpp"
#include "http/json_mapping.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

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

// -- session tokens -----------------------------------------------------------

class tokens_test : public ::testing::Test {
protected:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }
  token_signer signer{std::string(32, 'k'), 3600};
};

TEST_F(tokens_test, malformed_tokens_are_refused) {
  for (const char* junk : {"", "v1.a.b", "v2.", "v2.abc", "v2.abc.", "v1.",
                           "v1.x", "v3.a.b.c.d", "..."})
    EXPECT_FALSE(signer.verify(junk, 0)) << junk;
}

/// A token of the format before key ids, as that version signed it.
std::string v1_token(const std::string& secret, const std::string& customer,
                     int64_t expires_s) {
  auto payload = "v1." + customer + "." + std::to_string(expires_s);
  unsigned char digest[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(
      &state, reinterpret_cast<const unsigned char*>(secret.data()),
      secret.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(payload.data()),
      payload.size());
  crypto_auth_hmacsha256_final(&state, digest);
  char encoded[sodium_base64_ENCODED_LEN(
      crypto_auth_hmacsha256_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(encoded, sizeof(encoded), digest, sizeof(digest),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return payload + "." + encoded;
}

// Tokens name the key that signed them (issue 19): `v2.<key id>.`, the id
// derived from the key, so every node with the key agrees on it and the
// id says nothing of the key.
TEST_F(tokens_test, a_token_names_its_signing_key) {
  auto token = signer.issue("cus_1", 0).token;
  auto id = key_id(std::string(32, 'k'));
  EXPECT_EQ(id.size(), 8u);
  EXPECT_EQ(signer.current_key_id(), id);
  EXPECT_EQ(token.rfind("v2." + id + ".cus_1.", 0), 0u) << token;
  EXPECT_NE(key_id(std::string(32, 'x')), id);
}

// Rotation: the new secret signs, the old one is still accepted, so nobody
// is logged out; once the old one is dropped its tokens stop working.
TEST_F(tokens_test, rotated_keys_keep_old_tokens_until_dropped) {
  std::string old_secret(32, 'k'), new_secret(32, 'n');
  auto old_token = signer.issue("cus_1", 0).token;
  token_signer rotating{new_secret, 3600, {old_secret}};
  EXPECT_EQ(rotating.verify(old_token, 0), "cus_1");
  auto new_token = rotating.issue("cus_2", 0).token;
  EXPECT_EQ(new_token.rfind("v2." + key_id(new_secret) + ".", 0), 0u);
  EXPECT_EQ(rotating.verify(new_token, 0), "cus_2");
  EXPECT_FALSE(signer.verify(new_token, 0)) << "the old node lacks the key";
  token_signer rotated{new_secret, 3600};
  EXPECT_FALSE(rotated.verify(old_token, 0));
  EXPECT_EQ(rotated.verify(new_token, 0), "cus_2");
  // A key id that names an accepted key does not let another key's
  // signature pass: the id is part of what is signed.
  auto swapped = new_token;
  swapped.replace(3, 8, key_id(old_secret));
  EXPECT_FALSE(rotating.verify(swapped, 0));
}

// Tokens issued before key ids (`v1.`) stay valid until they expire, under
// any accepted key: upgrading logs nobody out.
TEST_F(tokens_test, tokens_without_a_key_id_are_accepted_until_they_expire) {
  std::string old_secret(32, 'k'), new_secret(32, 'n');
  auto old = v1_token(old_secret, "cus_1", 3600);
  EXPECT_EQ(signer.verify(old, 0), "cus_1");
  EXPECT_FALSE(signer.verify(old, 3600 * 1000)); // expired
  token_signer rotating{new_secret, 3600, {old_secret}};
  EXPECT_EQ(rotating.verify(old, 0), "cus_1");
  token_signer rotated{new_secret, 3600};
  EXPECT_FALSE(rotated.verify(old, 0));
  auto forged = old;
  forged.replace(3, 5, "cus_2");
  EXPECT_FALSE(rotating.verify(forged, 0));
}

TEST_F(tokens_test, admission_tokens_survive_a_rotation) {
  std::string old_secret(32, 'k'), new_secret(32, 'n');
  admission_signer before{old_secret};
  auto token = before.issue("gate", "cus_1", 5000);
  admission_signer rotating{new_secret, {old_secret}};
  EXPECT_TRUE(rotating.verify(token, "gate", "cus_1", 0));
  EXPECT_TRUE(rotating.verify(rotating.issue("gate", "cus_1", 5000), "gate",
                              "cus_1", 0));
  EXPECT_FALSE(
      before.verify(rotating.issue("gate", "cus_1", 5000), "gate", "cus_1", 0));
  admission_signer rotated{new_secret};
  EXPECT_FALSE(rotated.verify(token, "gate", "cus_1", 0));
}

} // namespace
} // namespace rsv::http
