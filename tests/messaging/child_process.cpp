#include "child_process.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace rsv::messaging::test {

namespace {

using clock_type = std::chrono::steady_clock;

std::runtime_error system_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

std::chrono::milliseconds left_until(clock_type::time_point until) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - clock_type::now());
  return left < 0ms ? 0ms : left;
}

/// Forks and execs `args` with stdin from /dev/null, stdout into `out_fd`
/// and stderr into `err_fd`. The child gets SIGKILL when the test thread
/// ends, so nothing outlives a crashed test.
pid_t spawn(std::vector<std::string> args, int out_fd, int err_fd) {
  if (args.empty()) throw std::invalid_argument("spawn: no program");
  if (args[0].find('/') == std::string::npos) args[0] = find_program(args[0]);
  std::vector<char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) throw system_error("open /dev/null");
  auto parent = ::getpid();
  pid_t child = ::fork();
  if (child < 0) {
    ::close(null_fd);
    throw system_error("fork");
  }
  if (child == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(null_fd);
  return child;
}

/// Reaps the child if it ended within `deadline`: its exit code or
/// 128 + signal; nullopt while it still runs.
std::optional<int> wait_for_exit(pid_t pid,
                                 std::chrono::milliseconds deadline) {
  auto until = clock_type::now() + deadline;
  while (true) {
    int status = 0;
    auto done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (done < 0 && errno != EINTR) return -1; // not our child any more
    if (clock_type::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(5ms); // poll interval, not a synchronisation
  }
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

} // namespace

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (!rest.empty()) {
    auto colon = rest.find(':');
    auto dir = std::string{rest.substr(0, colon)};
    auto candidate = (dir.empty() ? std::string{"."} : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  throw std::runtime_error(name + " is not in PATH");
}

std::ostream& operator<<(std::ostream& os, const command_result& result) {
  return os << "exit " << result.exit_code << " after "
            << result.elapsed.count() << " ms\nstdout:\n"
            << result.out << "\nstderr:\n"
            << result.err;
}

command_result run_command(std::vector<std::string> args,
                           std::chrono::milliseconds deadline) {
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw system_error("pipe");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw system_error("pipe");
  }
  auto started = clock_type::now();
  auto until = started + deadline;
  pid_t child = -1;
  try {
    child = spawn(std::move(args), out_pipe[1], err_pipe[1]);
  } catch (...) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]})
      ::close(fd);
    throw;
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);

  command_result result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  bool killed = false;
  while (open_count > 0) {
    auto left = left_until(until);
    if (left == 0ms) {
      ::kill(child, SIGKILL);
      killed = true;
      break;
    }
    int ready = ::poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < 2 && ready > 0; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      auto n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1; // poll ignores negative descriptors
        --open_count;
      }
    }
  }
  for (auto& fd : fds)
    if (fd.fd >= 0) ::close(fd.fd);
  // Both pipes closed: the child is exiting; a child that closed them
  // early still gets the rest of the deadline.
  auto code = killed ? std::nullopt : wait_for_exit(child, left_until(until));
  if (!code) kill_and_reap(child);
  result.exit_code = code.value_or(-1);
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      clock_type::now() - started);
  return result;
}

line_process::line_process(std::vector<std::string> args,
                           std::string_view ready_prefix,
                           std::chrono::milliseconds deadline) {
  char log_template[] = "/tmp/rsv-messaging-test-XXXXXX";
  int log_fd = ::mkstemp(log_template);
  if (log_fd < 0) throw system_error("mkstemp");
  log_path_ = log_template;
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    throw system_error("pipe");
  }
  auto program = args.empty() ? std::string{} : args[0];
  try {
    pid_ = spawn(std::move(args), out_pipe[1], log_fd);
  } catch (...) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    ::close(log_fd);
    throw;
  }
  ::close(out_pipe[1]);
  ::close(log_fd);
  stdout_fd_ = out_pipe[0];

  auto line = next_line(deadline);
  if (!line || line->rfind(ready_prefix, 0) != 0) {
    auto what = program + " did not print its '" + std::string{ready_prefix} +
                "' line within " + std::to_string(deadline.count()) +
                " ms (first line: '" + line.value_or("<none>") + "'); exit " +
                std::to_string(stop(1s, SIGKILL)) + "; log:\n" + log();
    ::close(stdout_fd_);
    ::unlink(log_path_.c_str());
    throw std::runtime_error(what);
  }
  ready_line_ = line->substr(ready_prefix.size());
}

namespace {

std::vector<std::string> with_program(std::string program,
                                      std::vector<std::string> args) {
  args.insert(args.begin(), std::move(program));
  return args;
}

} // namespace

broker_process::broker_process(std::vector<std::string> args,
                               std::chrono::milliseconds deadline)
    : line_process(with_program(RSV_KAFKA_BROKER, std::move(args)),
                   "bootstrap=", deadline) {}

line_process::~line_process() {
  if (pid_ > 0) kill_and_reap(pid_);
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

bool line_process::signal_and_wait_for(int signal_number,
                                       std::string_view expected,
                                       std::chrono::milliseconds deadline) {
  if (pid_ <= 0 || ::kill(pid_, signal_number) != 0) return false;
  auto until = clock_type::now() + deadline;
  while (auto line = next_line(left_until(until)))
    if (*line == expected) return true;
  return false;
}

int line_process::stop(std::chrono::milliseconds deadline, int signal_number) {
  if (pid_ <= 0) return exit_code_;
  ::kill(pid_, signal_number);
  auto code = wait_for_exit(pid_, deadline);
  if (!code) kill_and_reap(pid_);
  pid_ = -1;
  exit_code_ = code.value_or(-1);
  return exit_code_;
}

std::string line_process::log() const {
  return read_file(log_path_);
}

std::optional<std::string>
line_process::next_line(std::chrono::milliseconds deadline) {
  auto until = clock_type::now() + deadline;
  while (true) {
    if (auto newline = pending_.find('\n'); newline != std::string::npos) {
      auto line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      return line;
    }
    auto left = left_until(until);
    if (left == 0ms) return std::nullopt;
    pollfd pfd{stdout_fd_, POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    char buffer[1024];
    auto n = ::read(stdout_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt; // the child closed stdout: it exited
    pending_.append(buffer, static_cast<std::size_t>(n));
  }
}

} // namespace rsv::messaging::test
