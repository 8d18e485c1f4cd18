#pragma once

// One connection to Redis, whatever drives it: where Redis is, what a reply
// is, the backoff between attempts, the commands a new connection sends
// first, the scripts it loads and the NOSCRIPT resend. redis_client's threads
// (blocking, through redis_link) and redis_pipe (an Asio io_context) both
// drive their connections with these pieces. No hiredis type leaves
// messaging/: this header includes none.

#include "core/limits.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rsv::messaging {

/// Where Redis is, from `--redis-url`:
/// `redis://[[user]:password@]host[:port][/db]` (port 6379, db 0 by
/// default). `rediss://` (TLS) is refused: Debian 12's hiredis 0.14 has no
/// TLS; docs/operations.md says how to reach a TLS-only Redis.
struct redis_endpoint {
  std::string host;
  int port = 6379;
  std::string user;     // empty: AUTH with the password alone
  std::string password; // empty: no AUTH
  int db = 0;
};

/// Parses a Redis URL; errc::validation_failed naming what is wrong.
caf::expected<redis_endpoint> parse_redis_url(const std::string& url);

/// One Redis reply, copied out of hiredis so that no hiredis type leaves
/// messaging/. An error reply (`-ERR ...`) is a reply of kind `error`, not a
/// failed command.
struct redis_reply {
  enum class type { nil, integer, string, status, array, error };
  type kind = type::nil;
  long long integer = 0;
  std::string text; // string, status and error replies
  std::vector<redis_reply> elements;
};

/// What a command answers: its reply, or errc::unavailable when Redis could
/// not be asked (down, queue full, connection lost before the reply).
using redis_callback = std::function<void(caf::expected<redis_reply>)>;

/// numkeys, the keys, then the arguments: what EVAL and EVALSHA take after
/// the script.
std::vector<std::string> script_arguments(std::vector<std::string> keys,
                                          std::vector<std::string> args);

/// The answer for a command that Redis could not be asked: errc::unavailable
/// saying why.
caf::error redis_unavailable(const std::string& why);

/// The time between a connection's attempts: limits::redis_backoff_first_ms
/// after a loss, doubling after each failed attempt up to
/// limits::redis_backoff_max_ms, and the first again once one succeeds.
/// Owned by one connection, used on its thread only.
class redis_backoff {
public:
  /// How long to wait before the next attempt; the one after waits longer.
  std::chrono::milliseconds next();
  /// A connection succeeded: the next loss is retried quickly again.
  void reset();

private:
  std::chrono::milliseconds delay_{limits::redis_backoff_first_ms};
};

/// What one connection to Redis has written and waits for, in order: the
/// commands a new connection sends first (AUTH and SELECT as the endpoint
/// asks, SCRIPT LOAD of every script), then the caller's commands with their
/// callbacks. A script runs as EVALSHA of the hash its load answered; a
/// reply of NOSCRIPT (a Redis restarted or flushed since) sends it again
/// once, as EVAL of its source, whose reply then goes to the callback.
///
/// It does no I/O: its owner writes what it is given (`open`, `command`,
/// `script`, a `resend` outcome), reads the replies in order and hands each
/// to `on_reply`. Owned by one connection and used on that connection's
/// thread only.
class redis_session {
public:
  /// `scripts`: the Lua sources, named by their index in `script`.
  redis_session(redis_endpoint endpoint, std::vector<std::string> scripts);

  /// A new connection: what to write before anything else; `ready` once
  /// their replies have come. Whatever the old connection waited for must
  /// have been failed (`fail_all`) before.
  std::vector<std::vector<std::string>> open();

  /// Whether the opening commands have all been answered (and nothing
  /// failed since).
  bool ready() const { return open_ && opening_left_ == 0; }

  /// Registers one command, e.g. {"INCR", "key"}, whose reply goes to
  /// `done`; answers what to write (valid until the next call).
  const std::vector<std::string>& command(std::vector<std::string> args,
                                          redis_callback done);

  /// Registers a run of script number `script` (only once `ready`);
  /// `numkeys_keys_args` as EVAL takes them after the script. Answers what
  /// to write, an EVALSHA (valid until the next call).
  const std::vector<std::string>&
  script(std::size_t script, std::vector<std::string> numkeys_keys_args,
         redis_callback done);

  /// What a reply means for the connection.
  struct outcome {
    enum class kind {
      nothing, // an opening command's, more of them to come
      ready,   // the last opening command's: the connection is ready
      answer,  // a caller's: run `done` with `reply`
      resend,  // NOSCRIPT: write `resend` (an EVAL), its reply comes later
      broken,  // the connection is unusable (`why`): close it
    };
    kind what = kind::nothing;
    redis_callback done;
    redis_reply reply;
    const std::vector<std::string>* resend = nullptr;
    std::string why;
  };

  /// The next reply read from the connection, for the oldest command that
  /// waits. The callback of an `answer` has left the session: a callback
  /// that throws is never run again by `fail_all`.
  outcome on_reply(redis_reply reply);

  /// Commands written and not answered yet.
  std::size_t waiting() const { return waiting_.size(); }

  /// When the oldest of them was written; nullopt when none waits.
  std::optional<std::chrono::steady_clock::time_point> oldest_written() const;

  /// The connection is gone: every command that waits is answered
  /// unavailable (`why`), oldest first. Answers how many callbacks ran.
  std::size_t fail_all(const std::string& why);

private:
  static constexpr std::size_t no_script = static_cast<std::size_t>(-1);

  /// A command written and not answered yet. Opening commands have no
  /// callback; an EVALSHA keeps its script and command for a resend.
  struct written {
    std::vector<std::string> command;
    redis_callback done;
    std::size_t script = no_script;
    std::size_t loads = no_script; // SCRIPT LOAD of this script
    bool opening = false;
    std::chrono::steady_clock::time_point at;
  };

  written& add(std::vector<std::string> command, redis_callback done);
  outcome opening_reply(const written& w, redis_reply reply);

  redis_endpoint endpoint_;
  std::vector<std::string> scripts_;
  std::vector<std::string> hashes_; // SHA1 of each script, once loaded
  std::deque<written> waiting_;
  std::size_t opening_left_ = 0;
  bool open_ = false; // from `open` to `fail_all`
};

/// One blocking connection to Redis (hiredis), for a thread of its own that
/// may block on it: connecting takes at most `connect_timeout_ms`, and every
/// later write or read at most `command_timeout_ms` before the connection
/// counts as broken. Commands appended are written together, as one
/// pipeline, when the next reply is read. Owned and used by one thread.
class redis_link {
public:
  redis_link();
  ~redis_link();
  redis_link(const redis_link&) = delete;
  redis_link& operator=(const redis_link&) = delete;

  /// Connects and has the session's opening commands answered; false, with
  /// `error` saying why and the link closed, when any of it fails.
  bool connect(const redis_endpoint& endpoint, int connect_timeout_ms,
               int command_timeout_ms, redis_session& session);

  bool connected() const;
  void close();

  /// Appends a command to what the next `read` writes first.
  void append(const std::vector<std::string>& args);

  /// Writes what was appended and reads the next reply; nullopt, with
  /// `error` saying why, when the connection broke.
  std::optional<redis_reply> read();

  /// `append` and `read`: one command answered at once.
  std::optional<redis_reply> call(const std::vector<std::string>& args);

  /// Why the last connect or read failed.
  const std::string& error() const { return error_; }

private:
  struct context;
  std::unique_ptr<context> context_;
  std::string error_;
};

} // namespace rsv::messaging
