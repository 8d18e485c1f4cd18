#pragma once

#include "messaging/redis_connection.hpp"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace rsv::messaging {

struct redis_pipe_config {
  redis_endpoint endpoint;
  int connect_timeout_ms = limits::redis_connect_timeout_ms;
  /// A command not answered in this time breaks the connection (what waits
  /// is answered unavailable, and it connects again).
  int command_timeout_ms = limits::redis_command_timeout_ms;
  /// Lua scripts, loaded on every connection; `eval` names them by index.
  std::vector<std::string> scripts;
};

/// One Redis connection driven by an Asio io_context, for code that runs on
/// that io_context's thread (an HTTP I/O thread): a command is written at
/// once, without blocking, while earlier ones are still being answered; the
/// io_context reads the replies, hiredis's reader parses them, and the
/// callbacks run on that thread in the order the commands were given. There
/// is no other thread, no queue between threads and no lock: every member is
/// for the io_context's thread only, `up` aside.
///
/// It connects at `start` and again after every failure, after the bounded
/// backoff of redis_backoff; a redis_session (redis_connection.hpp) keeps
/// what waits for its reply, the opening commands and the scripts. Commands
/// given during the first attempt wait for it (a node that just started does
/// not skip its first checks); otherwise, while it is not connected (or still
/// authenticating and loading its scripts), a command fails at once with
/// errc::unavailable, on the caller's stack. A read is always pending, so a
/// Redis that goes away is noticed at once, idle or not. An EVALSHA that finds
/// the script gone (NOSCRIPT: a restarted or flushed Redis) is sent again as
/// EVAL.
///
/// Lifecycle: construct and `start` on the io_context's thread; `stop` there
/// too, or once the io_context no longer runs, before it is destroyed.
class redis_pipe {
public:
  redis_pipe(boost::asio::io_context& io, redis_pipe_config config);
  ~redis_pipe();
  redis_pipe(const redis_pipe&) = delete;
  redis_pipe& operator=(const redis_pipe&) = delete;

  void start();

  /// Closes the connection and answers what waits unavailable; no
  /// reconnection after it.
  void stop();

  /// Runs script number `script` of the config: EVALSHA, EVAL should Redis
  /// have lost it.
  void eval(std::size_t script, const std::vector<std::string>& keys,
            const std::vector<std::string>& args, redis_callback done);

  /// Whether it is connected and ready; readable from any thread.
  std::shared_ptr<const std::atomic<bool>> up() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace rsv::messaging
