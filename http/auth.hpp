#pragma once

#include "core/clock.hpp"
#include "core/limits.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rsv::http {

/// The id of an HMAC key as tokens name it: 8 characters of base64url of
/// HMAC(key, "rsv key id"), so it says which key signed a token without
/// saying anything about the key, and every node derives the same id from
/// the same key with nothing more to configure.
std::string key_id(std::string_view secret);

/// Issues and checks session tokens:
/// `v2.<key id>.<customer id>.<expiry unix seconds>.<HMAC-SHA256, base64url>`.
/// One key signs (the current one); tokens signed by any accepted key are
/// valid, so keys rotate without logging anyone out (docs/operations.md,
/// "Rotating the token secret"). Tokens of the format before key ids,
/// `v1.<customer id>.<expiry>.<HMAC>`, are still accepted when one of the
/// keys signed them, until they expire. Any node with the same keys checks
/// a token without a lookup. Immutable after construction; thread-safe.
class token_signer {
public:
  /// `secret` signs; it and `accepted` (previous keys) verify. Each has at
  /// least 32 bytes (RSV_TOKEN_SECRET, RSV_TOKEN_SECRETS_ACCEPTED).
  token_signer(std::string secret, int64_t ttl_seconds,
               std::vector<std::string> accepted = {});

  struct issued {
    std::string token;
    millis expires_at_ms = 0;
  };
  issued issue(const std::string& customer_id, millis now_ms) const;

  /// The customer id of a valid, unexpired token; nullopt otherwise.
  std::optional<std::string> verify(std::string_view token,
                                    millis now_ms) const;

  /// The id of the signing key.
  const std::string& current_key_id() const { return keys_.front().id; }

private:
  struct key {
    std::string id;
    std::string secret;
  };
  std::optional<std::string> verify_v1(std::string_view token,
                                       millis now_ms) const;
  std::vector<key> keys_; // the signing key first
  int64_t ttl_seconds_;
};

/// Issues and checks the waiting room's admission tokens:
/// `a1.<event id>.<customer id>.<expiry unix ms>.<HMAC-SHA256, base64url>`,
/// with a key derived from the session secret for this purpose alone, so a
/// session token is never an admission token or the other way round. A token
/// names its customer and its event, so checking it needs no lookup (no
/// Redis round trip) and a token of another customer or event is refused.
/// Admission tokens live minutes, so they carry no key id: a token is
/// checked against the key of each accepted secret in turn (at most
/// limits::token_secrets_accepted_max + 1). Immutable after construction;
/// thread-safe.
class admission_signer {
public:
  explicit admission_signer(const std::string& secret,
                            const std::vector<std::string>& accepted = {});

  std::string issue(const std::string& event_id, const std::string& customer_id,
                    millis expires_at_ms) const;

  /// True for a token this signer issued to that customer for that event
  /// that has not expired at `now_ms`.
  bool verify(std::string_view token, const std::string& event_id,
              const std::string& customer_id, millis now_ms) const;

private:
  std::vector<std::string> keys_; // the signing key first
};

/// Cost of argon2id password hashes (libsodium crypto_pwhash).
struct password_cost {
  unsigned long long ops = limits::password_hash_ops_default;
  std::size_t memory_kib = limits::password_hash_memory_kib_default;
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
/// rate limits by claiming its request was forwarded. While a secret
/// rotates, nodes send the marker of their current secret and take those of
/// every accepted one.
std::string forward_marker(std::string_view token_secret);

/// Constant-time comparison for bearer secrets.
bool secrets_equal(std::string_view a, std::string_view b);

/// The token of an `Authorization: Bearer <token>` header, or empty.
std::string_view bearer_token(std::string_view authorization);

} // namespace rsv::http
