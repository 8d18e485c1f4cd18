#include "redis_support.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

namespace rsv::e2e {

namespace {

/// True when nothing listens on 127.0.0.1:port and it can be bound.
bool port_free(unsigned short port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

} // namespace

redis_server::redis_server() {
  log_path_ = make_temp_file("rsv-redis");
  // From 63790 upward, past ports that other tests' servers hold; the
  // process id spreads parallel test processes apart.
  auto first = static_cast<unsigned short>(63790 + (::getpid() % 200) * 5);
  for (unsigned short candidate = first; candidate < first + 500; ++candidate)
    if (port_free(candidate)) {
      port_ = candidate;
      break;
    }
  if (port_ == 0) throw std::runtime_error("no free port for redis-server");
  start();
}

redis_server::~redis_server() {
  kill();
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

void redis_server::start() {
  int fd = ::open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("open " + log_path_ + ": " + std::strerror(errno));
  // In memory only: no RDB snapshots, no append-only file, so a kill loses
  // everything, as the tests want, and nothing is left on disk.
  pid_ = spawn_child({find_program("redis-server"), "--port",
                      std::to_string(port_), "--bind", "127.0.0.1", "--save",
                      "", "--appendonly", "no", "--daemonize", "no",
                      "--protected-mode", "yes", "--loglevel", "warning"},
                     fd);
  ::close(fd);
  bool up = eventually(
      [&] {
        if (wait_child(pid_, 0ms)) return true;
        auto ping = run_command({"redis-cli", "-h", "127.0.0.1", "-p",
                                 std::to_string(port_), "PING"},
                                5s);
        return ping.exit_code == 0 && ping.output.find("PONG") == 0;
      },
      10s, 20ms);
  if (!up || wait_child(pid_, 0ms)) {
    pid_ = -1;
    throw std::runtime_error("redis-server did not start on port " +
                             std::to_string(port_) + ": " + log());
  }
}

void redis_server::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_child(pid_, 10s);
  pid_ = -1;
}

void redis_server::restart() {
  kill();
  // The port is ours again once the old process is reaped; a new server may
  // briefly meet TIME_WAIT of accepted connections, which Redis's
  // SO_REUSEADDR allows.
  start();
}

std::string redis_server::cli(std::vector<std::string> args) const {
  std::vector<std::string> command{"redis-cli", "-h", "127.0.0.1", "-p",
                                   std::to_string(port_)};
  command.insert(command.end(), args.begin(), args.end());
  auto result = run_command(command, 10s);
  if (result.exit_code != 0)
    throw std::runtime_error("redis-cli failed: " + result.output);
  while (!result.output.empty() && result.output.back() == '\n')
    result.output.pop_back();
  return result.output;
}

std::string redis_server::log() const {
  std::ifstream in{log_path_};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace rsv::e2e
