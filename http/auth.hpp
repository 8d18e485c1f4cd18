#pragma once

#include "core/clock.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rsv::http {

/// Issues and checks session tokens: `v1.<customer id>.<expiry unix
/// seconds>.<HMAC-SHA256, base64url>`. Any node with the same secret checks a
/// token without a lookup. Immutable after construction; thread-safe.
class token_signer {
public:
  /// `secret` is at least 32 bytes (RSV_TOKEN_SECRET); see app/config.
  token_signer(std::string secret, int64_t ttl_seconds);

  struct issued {
    std::string token;
    millis expires_at_ms = 0;
  };
  issued issue(const std::string& customer_id, millis now_ms) const;

  /// The customer id of a valid, unexpired token; nullopt otherwise.
  std::optional<std::string> verify(std::string_view token,
                                    millis now_ms) const;

private:
  std::string mac(std::string_view payload) const;
  std::string secret_;
  int64_t ttl_seconds_;
};

/// Issues and checks the waiting room's admission tokens:
/// `a1.<event id>.<customer id>.<expiry unix ms>.<HMAC-SHA256, base64url>`,
/// with a key derived from the session secret for this purpose alone, so a
/// session token is never an admission token or the other way round. A token
/// names its customer and its event, so checking it needs no lookup (no
/// Redis round trip) and a token of another customer or event is refused.
/// Immutable after construction; thread-safe.
class admission_signer {
public:
  explicit admission_signer(const std::string& secret);

  std::string issue(const std::string& event_id, const std::string& customer_id,
                    millis expires_at_ms) const;

  /// True for a token this signer issued to that customer for that event
  /// that has not expired at `now_ms`.
  bool verify(std::string_view token, const std::string& event_id,
              const std::string& customer_id, millis now_ms) const;

private:
  std::string mac(std::string_view payload) const;
  std::string key_;
};

/// Cost of argon2id password hashes (libsodium crypto_pwhash).
struct password_cost {
  unsigned long long ops = 2; // OWASP 2023: t=2, m=19 MiB, p=1
  std::size_t memory_kib = 19 * 1024;
};

/// A salted argon2id hash in libsodium's encoded string form. Slow on
/// purpose: callers run it on the blocking pool, never on an I/O or actor
/// thread. Returns an empty string when libsodium runs out of memory.
std::string hash_password(std::string_view password, password_cost cost);

/// Constant-time check of `password` against an encoded hash.
bool verify_password(const std::string& encoded_hash,
                     std::string_view password);

/// The X-Rsv-Forwarded value that marks a request one node of a cluster
/// forwarded to another: derived from the token secret, which every node
/// shares and no client knows, so a client cannot skip the first node's
/// rate limits by claiming its request was forwarded.
std::string forward_marker(std::string_view token_secret);

/// Constant-time comparison for bearer secrets.
bool secrets_equal(std::string_view a, std::string_view b);

/// The token of an `Authorization: Bearer <token>` header, or empty.
std::string_view bearer_token(std::string_view authorization);

} // namespace rsv::http
