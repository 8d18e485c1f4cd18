#pragma once

// Child processes for the messaging tests: the broker (path in the compile
// definition RSV_KAFKA_BROKER) and kcat. Every wait has a deadline and every
// child is killed and reaped when its owner goes, so a failing test leaves
// nothing behind and never hangs.

#include <chrono>
#include <csignal>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace rsv::messaging_test {

using namespace std::chrono_literals;

/// The absolute path of `name` in PATH; throws when it is not there.
std::string find_program(const std::string& name);

/// What a finished command wrote and how it ended.
struct command_result {
  /// The exit code, 128 + signal when a signal ended it, -1 when it was
  /// killed at the deadline.
  int exit_code = -1;
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

/// For test failure messages: exit code, time, stdout and stderr.
std::ostream& operator<<(std::ostream& os, const command_result& result);

/// Runs `args` (no shell; a bare args[0] is found in PATH) with standard
/// input from /dev/null, collecting stdout and stderr apart. Kills it at the
/// deadline.
command_result run_command(std::vector<std::string> args,
                           std::chrono::milliseconds deadline = 20s);

/// One rsv-kafka-broker child process. Its stdout (the protocol lines) is
/// read by this object, its stderr goes to a temporary log file. Owned and
/// used by one test thread; the destructor kills and reaps the child.
class broker_process {
public:
  /// Starts the broker with `args` and waits at most `deadline` for its
  /// `bootstrap=` line. Throws when it exits or stays silent.
  explicit broker_process(std::vector<std::string> args = {},
                          std::chrono::milliseconds deadline = 10s);
  ~broker_process();

  broker_process(const broker_process&) = delete;
  broker_process& operator=(const broker_process&) = delete;

  /// HOST:PORT[,HOST:PORT...] from the bootstrap line.
  const std::string& bootstrap() const { return bootstrap_; }
  pid_t pid() const { return pid_; }

  /// Sends `signal_number` and waits at most `deadline` for the stdout line
  /// `expected`. False when it does not come.
  bool signal_and_wait_for(int signal_number, std::string_view expected,
                           std::chrono::milliseconds deadline = 5s);

  /// Sends `signal_number` (SIGTERM by default) and waits at most
  /// `deadline` for the exit: its exit code, 128 + signal, or -1 when it
  /// had to be killed. Idempotent.
  int stop(std::chrono::milliseconds deadline = 5s,
           int signal_number = SIGTERM);

  /// Everything the broker has written to stderr so far.
  std::string log() const;

private:
  /// The next complete stdout line, nullopt at the deadline or end of file.
  std::optional<std::string> next_line(std::chrono::milliseconds deadline);

  pid_t pid_ = -1;
  int exit_code_ = -1;
  int stdout_fd_ = -1;
  std::string pending_; // stdout bytes after the last complete line
  std::string bootstrap_;
  std::string log_path_;
};

} // namespace rsv::messaging_test
