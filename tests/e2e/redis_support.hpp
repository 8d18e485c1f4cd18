#pragma once

// Redis for end-to-end tests: a real redis-server as a child process on a
// free loopback port (from 63790 upward), in memory only, and redis-cli to
// look at or change what it holds.

#include "harness.hpp"

#include <string>
#include <vector>

namespace rsv::e2e {

/// One redis-server child process, killed with this object. `kill` stops it
/// like a crash (SIGKILL, everything gone); `restart` starts a new, empty one
/// on the same port.
class redis_server {
public:
  /// Starts it and waits until it answers PING; throws on failure.
  redis_server();
  ~redis_server();

  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  unsigned short port() const { return port_; }
  /// `--redis-url` of this server.
  std::string url() const {
    return "redis://127.0.0.1:" + std::to_string(port_);
  }
  /// `serve` flags for a node on this Redis.
  std::vector<std::string> server_args() const {
    return {"--redis-url", url()};
  }

  void kill();
  void restart();
  bool running() const { return pid_ > 0; }

  /// redis-cli with these arguments against this server; its output
  /// (trailing newline dropped); throws when redis-cli fails.
  std::string cli(std::vector<std::string> args) const;

  std::string log() const;

private:
  void start();

  pid_t pid_ = -1;
  unsigned short port_ = 0;
  std::string log_path_;
};

} // namespace rsv::e2e
