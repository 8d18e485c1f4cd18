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

namespace rsv::messaging::test {

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

/// A child process whose stdout carries protocol lines, one a line: it is
/// ready when it printed a first line starting with a given prefix. Its
/// stderr goes to a temporary log file. Owned and used by one test thread;
/// the destructor kills and reaps the child.
class line_process {
public:
  /// Starts `args` (args[0] the program) and waits at most `deadline` for a
  /// first line that starts with `ready_prefix`. Throws when it exits or
  /// stays silent.
  line_process(std::vector<std::string> args, std::string_view ready_prefix,
               std::chrono::milliseconds deadline);
  ~line_process();

  line_process(const line_process&) = delete;
  line_process& operator=(const line_process&) = delete;

  /// The first line without the prefix.
  const std::string& ready_line() const { return ready_line_; }
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

  /// Everything the child has written to stderr so far.
  std::string log() const;

  /// The next complete stdout line, nullopt at the deadline or end of file.
  std::optional<std::string> next_line(std::chrono::milliseconds deadline);

private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  int stdout_fd_ = -1;
  std::string pending_; // stdout bytes after the last complete line
  std::string ready_line_;
  std::string log_path_;
};

/// One rsv-kafka-broker child process (path in RSV_KAFKA_BROKER), ready
/// when it printed its `bootstrap=` line.
class broker_process : public line_process {
public:
  explicit broker_process(std::vector<std::string> args = {},
                          std::chrono::milliseconds deadline = 10s);

  /// HOST:PORT[,HOST:PORT...] from the bootstrap line.
  const std::string& bootstrap() const { return ready_line(); }
};

} // namespace rsv::messaging::test
