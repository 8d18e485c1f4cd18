#pragma once

#include "core/service_state.hpp"
#include "messaging/redis_connection.hpp"

#include <cstdint>
#include <memory>
#include <prometheus/registry.h>
#include <string>
#include <vector>

namespace rsv {
struct crash_fault; // core/supervised.hpp
} // namespace rsv

namespace rsv::messaging {

struct redis_config {
  redis_endpoint endpoint;
  /// Commands waiting for the connection at most; beyond it `submit` fails
  /// the command at once (see core/limits.hpp).
  std::size_t queue_max = 0; // 0: limits::redis_queue_max, over all
  /// Connections, each with its own thread (0: limits::redis_connections).
  std::size_t connections = 0;
  /// A connection attempt, and one batch's write and replies, may take this
  /// long before the connection counts as broken.
  int connect_timeout_ms = limits::redis_connect_timeout_ms;
  int command_timeout_ms = limits::redis_command_timeout_ms;
  /// Where the rsv_redis_* metrics go; may be null.
  std::shared_ptr<prometheus::Registry> registry;
  /// The chaos facility's crashes of the connection threads (one count for
  /// all of them); may be null.
  std::shared_ptr<crash_fault> crashes;
};

/// The node's connections to Redis: each has a thread of its own that owns a
/// blocking hiredis connection and a bounded queue. The thread takes
/// everything queued (up to a batch), writes it as one pipeline and reads
/// the replies, so concurrent requests share round trips; several
/// connections keep several pipelines in flight. Commands go to the
/// connections in turn, or, with a `shard`, always to the same one, so that
/// commands of one shard (a section's read model) keep their order. Nothing
/// here ever blocks the caller: `submit` only queues.
///
/// Callbacks run on the client's thread, one after another: they must be
/// short and must not block (post the answer to where it belongs). When
/// Redis is known to be down or the queue is full, the callback runs at once
/// on the caller's thread, before `submit` returns.
///
/// Each connection is a redis_link driven by a redis_session
/// (redis_connection.hpp): it is made again after every failure, with the
/// bounded backoff of redis_backoff; while idle the thread PINGs every
/// limits::redis_idle_ping_ms so that `health` notices an outage without
/// traffic. Scripts added with `add_script` are loaded again on every
/// connection (a restarted Redis has none), and a script Redis lost since is
/// sent again as EVAL.
///
/// Lifecycle: construct, `add_script` for every script, `start`, then
/// `submit`/`eval` from any thread, `stop` (or the destructor) last.
class redis_client {
public:
  explicit redis_client(redis_config config);
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  /// A Lua script; the answer names it in `eval`. Only before `start`.
  std::size_t add_script(std::string source);

  /// Starts the thread; it connects in the background (`health` is down
  /// until the first connection succeeds).
  void start();

  /// Fails what is still queued and joins the thread.
  void stop();

  /// No shard: the next connection in turn.
  static constexpr uint64_t any_connection = ~uint64_t{0};

  /// Sends one command, e.g. {"INCR", "key"}.
  void submit(std::vector<std::string> command, redis_callback done,
              uint64_t shard = any_connection);

  /// Runs a script added with `add_script` (EVALSHA, EVAL when Redis lost
  /// it). `keys` and `args` as EVAL takes them.
  void eval(std::size_t script, std::vector<std::string> keys,
            std::vector<std::string> args, redis_callback done,
            uint64_t shard = any_connection);

  /// ok while every connection is up, down otherwise.
  service_state health() const;

  /// Connections made since start (the first ones included), over all.
  uint64_t connections() const;

  /// Where it connects, and with what timeouts.
  const redis_config& config() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace rsv::messaging
