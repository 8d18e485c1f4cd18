#include "http/auth.hpp"

#include "core/assert.hpp"
#include "http/ascii.hpp"

#include <charconv>
#include <sodium.h>

namespace rsv::http {

namespace {

/// HMAC-SHA256 of `payload` under `key`: the digest's bytes.
std::string hmac(std::string_view key, std::string_view payload) {
  unsigned char digest[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(
      &state, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(payload.data()),
      payload.size());
  crypto_auth_hmacsha256_final(&state, digest);
  return {reinterpret_cast<const char*>(digest), sizeof(digest)};
}

/// The same, base64url without padding (as tokens carry it).
std::string hmac_base64(std::string_view key, std::string_view payload) {
  auto digest = hmac(key, payload);
  char encoded[sodium_base64_ENCODED_LEN(
      crypto_auth_hmacsha256_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(encoded, sizeof(encoded),
                    reinterpret_cast<const unsigned char*>(digest.data()),
                    digest.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return encoded;
}

} // namespace

std::string forward_marker(std::string_view token_secret) {
  return "f1." + hmac_base64(token_secret, "rsv forwarded request");
}

std::string key_id(std::string_view secret) {
  return hmac_base64(secret, "rsv key id").substr(0, 8);
}

token_signer::token_signer(std::string secret, int64_t ttl_seconds,
                           std::vector<std::string> accepted)
    : ttl_seconds_(ttl_seconds) {
  keys_.push_back({key_id(secret), std::move(secret)});
  for (auto& other : accepted) {
    auto id = key_id(other);
    bool known = false;
    for (const auto& k : keys_)
      known = known || k.id == id;
    if (!known) keys_.push_back({std::move(id), std::move(other)});
  }
  for (const auto& k : keys_)
    RSV_ASSERT(k.secret.size() >= 32, "token secrets have at least 32 bytes");
}

token_signer::issued token_signer::issue(const std::string& customer_id,
                                         millis now_ms) const {
  const auto& signing = keys_.front();
  auto expires_s = now_ms / 1000 + ttl_seconds_;
  std::string payload =
      "v2." + signing.id + "." + customer_id + "." + std::to_string(expires_s);
  auto signature = hmac_base64(signing.secret, payload);
  return {payload + "." + signature, expires_s * 1000};
}

namespace {

/// `<customer id>.<expiry unix seconds>` of a signed payload: the customer
/// id while `now_ms` is before the expiry.
std::optional<std::string> unexpired_customer(std::string_view rest,
                                              millis now_ms) {
  auto dot = rest.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  int64_t expires_s = 0;
  auto digits = rest.substr(dot + 1);
  auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), expires_s);
  if (ec != std::errc{} || end != digits.data() + digits.size())
    return std::nullopt;
  if (expires_s * 1000 <= now_ms) return std::nullopt;
  return std::string{rest.substr(0, dot)};
}

} // namespace

std::optional<std::string> token_signer::verify(std::string_view token,
                                                millis now_ms) const {
  if (token.size() > 512) return std::nullopt;
  if (token.substr(0, 3) == "v1.") return verify_v1(token, now_ms);
  if (token.substr(0, 3) != "v2.") return std::nullopt;
  auto last_dot = token.rfind('.');
  auto id_end = token.find('.', 3);
  if (id_end == std::string_view::npos || id_end >= last_dot)
    return std::nullopt;
  auto id = token.substr(3, id_end - 3);
  for (const auto& k : keys_) {
    if (k.id != id) continue;
    auto payload = token.substr(0, last_dot);
    if (!secrets_equal(hmac_base64(k.secret, payload),
                       token.substr(last_dot + 1)))
      return std::nullopt;
    // The signature is ours, so the payload is well-formed; parse it anyway.
    return unexpired_customer(payload.substr(id_end + 1), now_ms);
  }
  return std::nullopt; // a key this node does not accept (any more)
}

std::optional<std::string> token_signer::verify_v1(std::string_view token,
                                                   millis now_ms) const {
  // Issued before tokens named their key: any accepted key may have signed
  // it. Kept so that upgrading logs nobody out; such tokens are gone once
  // the last one issued by the old version expires.
  auto last_dot = token.rfind('.');
  if (last_dot == std::string_view::npos || last_dot < 3) return std::nullopt;
  auto payload = token.substr(0, last_dot);
  for (const auto& k : keys_)
    if (secrets_equal(hmac_base64(k.secret, payload),
                      token.substr(last_dot + 1)))
      return unexpired_customer(payload.substr(3), now_ms);
  return std::nullopt;
}

admission_signer::admission_signer(const std::string& secret,
                                   const std::vector<std::string>& accepted) {
  // A key of its own per secret: HMAC(secret, purpose).
  RSV_ASSERT(secret.size() >= 32, "token secrets have at least 32 bytes");
  keys_.push_back(hmac(secret, "rsv admission tokens v1"));
  for (const auto& other : accepted) {
    RSV_ASSERT(other.size() >= 32, "token secrets have at least 32 bytes");
    keys_.push_back(hmac(other, "rsv admission tokens v1"));
  }
}

std::string admission_signer::issue(const std::string& event_id,
                                    const std::string& customer_id,
                                    millis expires_at_ms) const {
  std::string payload = "a1." + event_id + "." + customer_id + "." +
                        std::to_string(expires_at_ms);
  auto signature = hmac_base64(keys_.front(), payload);
  return payload + "." + signature;
}

bool admission_signer::verify(std::string_view token,
                              const std::string& event_id,
                              const std::string& customer_id,
                              millis now_ms) const {
  if (token.size() > 512) return false;
  auto last_dot = token.rfind('.');
  if (last_dot == std::string_view::npos) return false;
  auto payload = token.substr(0, last_dot);
  // The payload must name this event and this customer; what follows is the
  // expiry. Event ids have no dot, so the prefix cannot be shifted.
  std::string prefix = "a1." + event_id + "." + customer_id + ".";
  if (payload.size() <= prefix.size() ||
      payload.substr(0, prefix.size()) != prefix)
    return false;
  auto digits = payload.substr(prefix.size());
  millis expires_ms = 0;
  auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), expires_ms);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return false;
  if (expires_ms <= now_ms) return false;
  auto signature = token.substr(last_dot + 1);
  for (const auto& key : keys_)
    if (secrets_equal(hmac_base64(key, payload), signature)) return true;
  return false;
}

std::string hash_password(std::string_view password, password_cost cost) {
  char out[crypto_pwhash_argon2id_STRBYTES];
  if (crypto_pwhash_argon2id_str(out, password.data(), password.size(),
                                 cost.ops, cost.memory_kib * 1024) != 0)
    return {};
  return out;
}

bool verify_password(const std::string& encoded_hash,
                     std::string_view password) {
  return crypto_pwhash_argon2id_str_verify(
             encoded_hash.c_str(), password.data(), password.size()) == 0;
}

bool secrets_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size() || a.empty()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() <= scheme.size()) return {};
  // The scheme is case-insensitive (RFC 9110).
  if (!ascii_iequals(authorization.substr(0, scheme.size()), scheme)) return {};
  auto token = authorization.substr(scheme.size());
  while (!token.empty() && token.front() == ' ')
    token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ')
    token.remove_suffix(1);
  return token;
}

} // namespace rsv::http
