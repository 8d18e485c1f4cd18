#pragma once

// A PostgreSQL cluster of the test's own, for tests that stop and start
// PostgreSQL under a running server.

#include "harness.hpp"

#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace rsv::e2e {

/// A private PostgreSQL cluster: initdb into a temporary directory, the
/// postmaster a child of this process on a free loopback port with trust
/// authentication; the directory is removed with this object.
///
/// Why not the PostgreSQL of pg_virtualenv: CTest runs the pg tests in
/// parallel, and stopping the shared server would fail the others. Why not
/// pg_createcluster: its clusters are registered machine-wide under
/// /etc/postgresql and outlive a crashed test. This one is a plain child
/// process that gets SIGKILL when the thread that started it ends, so a test
/// that dies takes its PostgreSQL with it.
///
/// Runs initdb and postgres as the `postgres` account when this process is
/// root (PostgreSQL refuses to run as root), else as this process's user.
/// The binaries come from `pg_config --bindir` ($PG_CONFIG, else pg_config
/// in PATH). One thread starts and stops it.
class pg_cluster {
public:
  /// Creates and starts the cluster; throws with initdb's or the server
  /// log's text when that fails.
  pg_cluster();
  /// Stops PostgreSQL at once (immediate shutdown) and removes the files.
  ~pg_cluster();

  pg_cluster(const pg_cluster&) = delete;
  pg_cluster& operator=(const pg_cluster&) = delete;

  /// Fast shutdown, as `pg_ctl stop -m fast` does it (SIGINT: sessions are
  /// ended, a checkpoint written), and waits until the postmaster exited.
  /// Throws when it did not within 30 s (after killing it).
  void stop();
  /// Starts PostgreSQL on the same port and waits until it accepts
  /// connections; throws when it did not within 30 s.
  void start();
  bool running() const { return pid_ > 0; }
  /// Freezes PostgreSQL without ending it: SIGSTOP to the postmaster and
  /// every process it started (a stalled store: connections stay open and
  /// nothing answers). `thaw` sends SIGCONT to the same processes. Answers
  /// how many processes it signalled.
  int freeze();
  int thaw();

  unsigned short port() const { return port_; }
  /// libpq's connection string of a database of this cluster.
  std::string conninfo(const std::string& dbname) const;
  /// CREATE DATABASE; throws on failure.
  void create_database(const std::string& name);
  /// What PostgreSQL has logged so far.
  std::string log() const;

private:
  /// Starts the postmaster; false (and why) when it exited or did not come
  /// up in time.
  bool start_once(std::string& why);

  std::string bindir_;
  std::string dir_; // temporary; holds data/, the socket and the log
  std::string log_path_;
  std::optional<os_account> as_;
  unsigned short port_ = 0;
  pid_t pid_ = -1;
  std::vector<pid_t> frozen_;
};

/// Starts the cluster again when a scope ends with it stopped, whatever
/// ended the scope (a failed assertion returns early).
class pg_restart_guard {
public:
  explicit pg_restart_guard(pg_cluster& cluster) : cluster_(cluster) {}
  ~pg_restart_guard();

  pg_restart_guard(const pg_restart_guard&) = delete;
  pg_restart_guard& operator=(const pg_restart_guard&) = delete;

private:
  pg_cluster& cluster_;
};

} // namespace rsv::e2e
