// Unit tests of accounts and sessions against hostile clients (issue 19,
// docs/reliability.md "Hostile clients"), label `security`. The end-to-end
// side is tests/e2e/security_test.cpp.

#include "core/errc.hpp"
#include "http/auth.hpp"
#include "http/auth_throttle.hpp"
#include "http/client_address.hpp"
#include "http/hashing_pool.hpp"
#include "http/json_mapping.hpp"

#include <future>
#include <gtest/gtest.h>
#include <sodium.h>
#include <thread>

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

// -- password hashing and its throttle ----------------------------------------

using namespace std::chrono_literals;

/// A job that holds a pool's only thread until `release` is set.
struct blocking_job {
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released{release.get_future().share()};
  hashing_pool::job job() {
    return [this](bool) {
      started.set_value();
      released.wait();
    };
  }
};

TEST(hashing_pool, a_full_queue_refuses_at_once) {
  hashing_pool pool{1, 2};
  blocking_job blocker;
  auto far = hashing_pool::clock::now() + 1h;
  ASSERT_TRUE(pool.submit(far, blocker.job()));
  blocker.started.get_future().wait(); // the thread is busy, the queue empty
  std::promise<bool> first, second;
  bool third_called = false;
  EXPECT_TRUE(pool.submit(far, [&](bool late) { first.set_value(late); }));
  EXPECT_TRUE(pool.submit(far, [&](bool late) { second.set_value(late); }));
  EXPECT_FALSE(pool.submit(far, [&](bool) { third_called = true; }))
      << "a third job finds the queue full";
  blocker.release.set_value();
  EXPECT_FALSE(first.get_future().get());
  EXPECT_FALSE(second.get_future().get());
  pool.stop();
  EXPECT_FALSE(third_called) << "a refused job is never called";
}

// On stop, what is still queued is answered late, unhashed.
TEST(hashing_pool, jobs_left_at_stop_are_called_late) {
  hashing_pool pool{1, 4};
  std::promise<bool> queued;
  {
    blocking_job blocker;
    ASSERT_TRUE(pool.submit(hashing_pool::clock::now() + 1h, blocker.job()));
    blocker.started.get_future().wait();
    ASSERT_TRUE(pool.submit(hashing_pool::clock::now() + 1h,
                            [&](bool late) { queued.set_value(late); }));
    std::thread stopper{[&pool] { pool.stop(); }};
    // stop() waits for the running job; the queued one must not run in
    // time once stopping began, whichever comes first here.
    while (!pool.stopping())
      std::this_thread::yield();
    blocker.release.set_value();
    stopper.join();
  }
  EXPECT_TRUE(queued.get_future().get());
}

// A job whose client already had its 503 is not hashed for nobody.
TEST(hashing_pool, jobs_past_their_deadline_are_called_late) {
  hashing_pool pool{1, 4};
  blocking_job blocker;
  ASSERT_TRUE(pool.submit(hashing_pool::clock::now() + 1h, blocker.job()));
  blocker.started.get_future().wait();
  std::promise<bool> expired, in_time;
  ASSERT_TRUE(pool.submit(hashing_pool::clock::now(),
                          [&](bool late) { expired.set_value(late); }));
  ASSERT_TRUE(pool.submit(hashing_pool::clock::now() + 1h,
                          [&](bool late) { in_time.set_value(late); }));
  blocker.release.set_value();
  EXPECT_TRUE(expired.get_future().get());
  EXPECT_FALSE(in_time.get_future().get());
}

TEST(key_throttle, a_burst_then_the_rate) {
  key_throttle throttle{{60, 3}, 1000}; // one a second, three at once
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(throttle.take("k", 0), 0) << i;
  EXPECT_EQ(throttle.take("k", 0), 1000) << "the fourth waits a second";
  EXPECT_EQ(throttle.take("k", 400), 600);
  EXPECT_EQ(throttle.take("other", 0), 0) << "keys are counted apart";
  EXPECT_EQ(throttle.take("k", 1000), 0);
  EXPECT_EQ(throttle.take("k", 1000), 1000);
  // Idle for long, the whole burst is back, not more.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(throttle.take("k", 60'000), 0) << i;
  EXPECT_GT(throttle.take("k", 60'000), 0);
  key_throttle off{{0, 1}, 1000};
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(off.take("k", 0), 0);
}

TEST(key_throttle, memory_stays_bounded) {
  key_throttle throttle{{1, 1}, 64};
  int untracked = 0;
  for (int i = 0; i < 1000; ++i) {
    bool missed = false;
    EXPECT_EQ(throttle.take("key" + std::to_string(i), 0, &missed), 0);
    untracked += missed ? 1 : 0;
  }
  EXPECT_LE(throttle.keys(), 64u);
  EXPECT_GE(untracked, 1000 - 64);
  // Once their minute has passed the keys are idle and make room.
  bool missed = false;
  EXPECT_EQ(throttle.take("late", 60'000, &missed), 0);
  EXPECT_FALSE(missed);
}

TEST(auth_throttle, refuses_by_address_or_by_email_with_a_retry_time) {
  auth_throttle throttle{{{60, 2}, {6, 3}, 1000, nullptr}};
  EXPECT_TRUE(throttle.admit("192.0.2.1", "a@x.example", 0).allowed);
  EXPECT_TRUE(throttle.admit("192.0.2.1", "b@x.example", 0).allowed);
  auto by_address = throttle.admit("192.0.2.1", "c@x.example", 0);
  EXPECT_FALSE(by_address.allowed);
  EXPECT_STREQ(by_address.by, "address");
  EXPECT_EQ(by_address.retry_after_seconds, 1);
  // The email throttle holds across addresses.
  EXPECT_TRUE(throttle.admit("192.0.2.2", "a@x.example", 0).allowed);
  EXPECT_TRUE(throttle.admit("192.0.2.3", "a@x.example", 0).allowed);
  auto by_email = throttle.admit("192.0.2.4", "a@x.example", 0);
  EXPECT_FALSE(by_email.allowed);
  EXPECT_STREQ(by_email.by, "email");
  EXPECT_EQ(by_email.retry_after_seconds, 10);
  // An unknown address is not counted by address.
  EXPECT_TRUE(throttle.admit("", "d@x.example", 0).allowed);
  EXPECT_TRUE(throttle.admit("", "e@x.example", 0).allowed);
  EXPECT_TRUE(throttle.admit("", "f@x.example", 0).allowed);
}

TEST(auth_throttle, ipv6_clients_count_by_their_64) {
  EXPECT_EQ(address_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_key("::ffff:192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(address_key("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(address_key("not an address"), "not an address");
  auth_throttle throttle{{{60, 1}, {0, 1}, 1000, nullptr}};
  EXPECT_TRUE(throttle.admit("2001:db8:1:2::1", "a@x.example", 0).allowed);
  EXPECT_FALSE(throttle.admit("2001:db8:1:2::2", "b@x.example", 0).allowed);
  EXPECT_TRUE(throttle.admit("2001:db8:1:3::1", "c@x.example", 0).allowed);
}

// -- client addresses behind proxies ------------------------------------------

TEST(client_address, only_a_trusted_proxy_names_the_client) {
  std::vector<address_range> trusted{*parse_address_range("10.0.0.0/8"),
                                     *parse_address_range("127.0.0.1")};
  // No proxies configured, or a peer that is none: the peer, header or not.
  EXPECT_EQ(client_address("10.0.0.5", "198.51.100.1", {}), "10.0.0.5");
  EXPECT_EQ(client_address("192.0.2.9", "198.51.100.1", trusted), "192.0.2.9");
  // From a proxy: the rightmost address that is no proxy.
  EXPECT_EQ(client_address("10.0.0.5", "198.51.100.1", trusted),
            "198.51.100.1");
  EXPECT_EQ(client_address("10.0.0.5", "203.0.113.7, 198.51.100.1", trusted),
            "198.51.100.1")
      << "what the client wrote itself counts for nothing";
  EXPECT_EQ(client_address("10.0.0.5", "198.51.100.1, 10.1.2.3", trusted),
            "198.51.100.1")
      << "a chain of proxies";
  EXPECT_EQ(client_address("10.0.0.5", "10.0.0.1 , 10.0.0.2", trusted),
            "10.0.0.1");
  EXPECT_EQ(client_address("10.0.0.5", "junk, 198.51.100.1", trusted),
            "198.51.100.1");
  EXPECT_EQ(client_address("10.0.0.5", "198.51.100.1, junk", trusted),
            "10.0.0.5");
  EXPECT_EQ(client_address("10.0.0.5", "", trusted), "10.0.0.5");
  EXPECT_EQ(client_address("::ffff:127.0.0.1", "198.51.100.1", trusted),
            "198.51.100.1");
}

TEST(client_address, address_ranges) {
  auto v6 = parse_address_range("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(in_ranges("2001:db8:ffff::1", {*v6}));
  EXPECT_FALSE(in_ranges("2001:db9::1", {*v6}));
  EXPECT_FALSE(in_ranges("32.1.13.184", {*v6}));
  auto odd = parse_address_range("192.168.0.0/23");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(in_ranges("192.168.1.255", {*odd}));
  EXPECT_FALSE(in_ranges("192.168.2.0", {*odd}));
  EXPECT_TRUE(in_ranges("1.2.3.4", {*parse_address_range("0.0.0.0/0")}));
  for (const char* bad :
       {"", "x", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/a", "10.0/8"})
    EXPECT_FALSE(parse_address_range(bad)) << bad;
}

} // namespace
} // namespace rsv::http
