#pragma once

// End-to-end test harness: starts the real `reservations` binary (path in the
// environment variable RSV_BINARY) and talks HTTP/1.1 to it over loopback.
//
// Nothing here sleeps to synchronise: every wait polls a condition against a
// deadline, and every I/O operation has a timeout.

#include "support/eventually.hpp"

#include <chrono>
#include <functional>
#include <gtest/gtest.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace rsv::e2e {

using json = nlohmann::json;
using namespace std::chrono_literals;
using headers_t = std::vector<std::pair<std::string, std::string>>;

// -- the server process -------------------------------------------------------

/// One `reservations serve` child process on a free loopback port, with its
/// stderr and stdout in a temporary log file.
class server_process {
public:
  /// Starts the server and waits until `GET /ready` answers 200. Retries on a
  /// few fresh ports when the process does not come up. Throws on failure.
  /// `admin_token` empty: one of its own (the nodes of a cluster share one).
  /// The harness's own flags (its token secret, cheap password hashes, no
  /// per-address login throttle) give way to the same flags in
  /// `extra_args`. `launcher`: a command that runs the server, such as
  /// `prlimit --nofile=256:256` (it must exec it, keeping the pid).
  explicit server_process(std::vector<std::string> extra_args = {},
                          std::string admin_token = {},
                          std::vector<std::string> launcher = {});
  ~server_process();

  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  unsigned short port() const { return port_; }
  const std::string& admin_token() const { return admin_token_; }
  pid_t pid() const { return pid_; }

  /// Sends SIGTERM and waits (bounded) for the exit. Returns the exit code,
  /// or 128 + signal when the process died of a signal, or -1 when it had to
  /// be killed after the deadline. Idempotent.
  int stop(std::chrono::milliseconds deadline = 30s);

  bool running() const { return pid_ > 0; }

  /// Everything the server has written so far.
  std::string log() const;

private:
  bool start_once(const std::vector<std::string>& extra_args, std::string& why);

  pid_t pid_ = -1;
  unsigned short port_ = 0;
  int exit_code_ = -1;
  std::string admin_token_;
  std::vector<std::string> launcher_;
  std::string log_path_;
};

/// A port that was free a moment ago (bound to 0, read, closed).
unsigned short pick_free_port();

// -- child processes ----------------------------------------------------------

/// A user account that a child process can run as: tests that run as root
/// start PostgreSQL as its owner, since PostgreSQL refuses to run as root.
struct os_account {
  uid_t uid = 0;
  gid_t gid = 0;
};

/// The account of that name; throws when there is none.
os_account find_account(const std::string& name);

/// The absolute path of `name` in PATH; throws when it is not there.
std::string find_program(const std::string& name);

/// Starts `args` (args[0] an absolute path) as a child process, as `as` when
/// given, with standard input from /dev/null and standard output and error
/// into `out_fd`. The child gets SIGKILL when the calling thread ends, so
/// nothing outlives a test that crashed. Answers its pid; throws on failure.
pid_t spawn_child(std::vector<std::string> args, int out_fd,
                  const std::optional<os_account>& as = std::nullopt);

/// Waits at most `deadline` for the child to end and reaps it: its exit
/// code, or 128 + signal when a signal ended it; nullopt while it runs.
std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds deadline);

/// Runs a command (no shell; a bare name is found in PATH), stdout and
/// stderr together; kills it at the deadline (exit_code -1 then).
struct command_result {
  int exit_code = -1;
  std::string output;
};
command_result run_command(std::vector<std::string> args,
                           std::chrono::milliseconds deadline = 20s,
                           const std::optional<os_account>& as = std::nullopt);

/// Creates an empty file `$TMPDIR/<prefix>-XXXXXX` (TMPDIR defaults to
/// /tmp) and answers its path; throws on failure.
std::string make_temp_file(std::string_view prefix);

/// The server binary from RSV_BINARY; throws when unset.
std::string server_binary();

// -- PostgreSQL ---------------------------------------------------------------

/// Runs SQL with psql against `conninfo` (libpq's PG* variables fill in what
/// it leaves out), stopping at the first error; the output is unaligned
/// tuples only, one row a line, columns separated by '|'.
command_result run_psql(const std::string& conninfo, const std::string& sql);

/// A fresh database on the PostgreSQL of libpq's PG* variables (the one
/// scripts/test starts with pg_virtualenv), dropped with this object.
class scratch_database {
public:
  /// Creates it; throws when PGHOST is unset or createdb fails.
  scratch_database();
  ~scratch_database();

  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;

  const std::string& name() const { return name_; }
  /// libpq's connection string of this database.
  std::string conninfo() const { return "dbname=" + name_; }
  /// `serve` flags for a server on this database.
  std::vector<std::string> server_args() const {
    return {"--store", "postgres", "--pg-dsn", conninfo()};
  }

private:
  std::string name_;
};

// -- HTTP ---------------------------------------------------------------------

struct http_response {
  unsigned status = 0;
  headers_t headers;
  std::string body;
  bool keep_alive = true;

  /// The first header of that name (case-insensitive).
  std::optional<std::string> header(std::string_view name) const;
  /// The body as JSON; throws std::runtime_error when it is not JSON.
  json body_json() const;
};

std::ostream& operator<<(std::ostream& os, const http_response& response);

/// A keep-alive HTTP/1.1 client connection, synchronous, every operation
/// bounded by a timeout. Reconnects when the server closed the connection
/// after a response that said so. Throws std::runtime_error on I/O errors
/// and timeouts.
class http_connection {
public:
  /// `from`: the local address to connect from (any of 127.0.0.0/8 is
  /// loopback: another client address to the server); empty: 127.0.0.1.
  explicit http_connection(unsigned short port,
                           std::chrono::milliseconds timeout = 10s,
                           std::string from = {});
  ~http_connection();

  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  http_response request(std::string_view method, std::string_view target,
                        const headers_t& headers = {}, std::string body = {});

  // Conveniences. `token` empty means no Authorization header.
  http_response get(std::string_view target, std::string_view token = {});
  http_response del(std::string_view target, std::string_view token = {});
  /// POST with Content-Type: application/json and the JSON dumped as body.
  http_response post(std::string_view target, const json& body,
                     std::string_view token = {}, headers_t extra = {});
  /// POST with Content-Type: application/json and a raw body.
  http_response post_raw(std::string_view target, std::string body,
                         std::string_view token = {}, headers_t extra = {});

  /// How many TCP connections this object has opened so far.
  int connects() const;
  bool is_open() const;
  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A raw TCP connection for malformed, partial, pipelined or oversized
/// requests. Never throws on I/O errors: they show up as return values and
/// in last_error().
class raw_connection {
public:
  /// Connects to 127.0.0.1:`port`, from `source_address` when given (any
  /// of 127.0.0.0/8: a second client address on loopback).
  explicit raw_connection(unsigned short port,
                          const std::string& source_address = {});
  ~raw_connection();

  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  /// Writes all bytes; false on error or timeout.
  bool send(std::string_view bytes, std::chrono::milliseconds timeout = 5s);
  /// Reads one HTTP response (responses may arrive pipelined); nullopt on
  /// end of stream, error or timeout.
  std::optional<http_response>
  read_response(std::chrono::milliseconds timeout = 5s);
  /// Reads and discards until the server closes the connection. True when
  /// it closed (end of stream or reset) within the timeout.
  bool wait_closed(std::chrono::milliseconds timeout);
  /// What the last failed operation met: "timeout", or the error message
  /// (end of stream, connection reset, ...); empty after a success.
  const std::string& last_error() const;
  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// -- API helpers --------------------------------------------------------------

headers_t bearer(std::string_view token);

struct customer {
  std::string id;
  std::string email;
  std::string password;
  std::string token;
};

/// An email address no other call of this process has used.
std::string unique_email(std::string_view tag = "user");

/// Registers a customer (201 expected) and logs in (201 expected); throws
/// otherwise.
customer new_customer(http_connection& http, std::string_view tag = "user");

/// A section as POST /v1/events takes it.
json section_json(std::string id, std::int64_t price_cents,
                  std::vector<std::pair<std::string, int>> rows,
                  std::string name = {});

/// An event body with the given sections; no `max_seats_per_customer`.
json event_json(std::string id, std::vector<json> sections,
                std::string starts_at = "2026-12-31T20:00:00Z");

/// POST /v1/events as admin; throws unless 201. Returns the event JSON.
json create_event(http_connection& http, const std::string& admin_token,
                  const json& body);

/// POST /v1/holds; returns the response.
http_response hold_seats(http_connection& http, const customer& who,
                         const std::string& event_id,
                         const std::string& section_id,
                         std::vector<std::string> seats, headers_t extra = {});
http_response hold_quantity(http_connection& http, const customer& who,
                            const std::string& event_id,
                            const std::string& section_id, int quantity,
                            headers_t extra = {});

/// Seat id -> status of one section's seat map, and the ids in order.
struct seat_map {
  std::vector<std::string> order;
  std::vector<std::pair<std::string, std::string>> seats; // id, status
  std::string status(const std::string& id) const;
  std::vector<std::string> with_status(std::string_view status) const;
};
seat_map get_seat_map(http_connection& http, const std::string& event_id,
                      const std::string& section_id);

/// Section counts from GET /v1/events/{id}: {free, held, booked}.
struct counts {
  std::int64_t free = 0, held = 0, booked = 0;
  bool operator==(const counts&) const = default;
};
std::ostream& operator<<(std::ostream& os, const counts& c);
counts section_counts(http_connection& http, const std::string& event_id,
                      const std::string& section_id);

/// An RFC 3339 UTC time ("2026-12-31T20:00:00Z", optional fraction).
std::optional<std::chrono::system_clock::time_point>
parse_time(std::string_view text);

/// Checks an RFC 9457 problem answer: status, content type, and the members
/// type (urn:rsv:problem:<code>), title, status, detail and code.
::testing::AssertionResult is_problem(const http_response& response,
                                      unsigned status, std::string_view code);

/// The sum of a Prometheus metric's samples in the text of `/metrics`: all
/// of them, or only those whose labels contain `labels` (e.g.
/// `kind="section"`); -1 when there is none.
double metric_value(const std::string& text, const std::string& name,
                    const std::string& labels = {});

/// The value of one sample of the node's /metrics, named with its labels as
/// written there, e.g. `rsv_relay_lag{unit="rows"}`; nullopt when absent.
std::optional<double> metric(http_connection& http, const std::string& name);

/// Polls `condition` until it holds or the deadline passes.
using test_support::eventually;

// -- fixture ------------------------------------------------------------------

/// A test with its own server. The server's log is printed when the test
/// failed; the server must stop with exit code 0 on SIGTERM.
class server_test : public ::testing::Test {
protected:
  void SetUp() override;
  void TearDown() override;

  /// Extra `serve` flags for this fixture.
  virtual std::vector<std::string> server_args() const { return {}; }

  server_process& server() { return *server_; }
  unsigned short port() const { return server_->port(); }
  const std::string& admin() const { return server_->admin_token(); }
  /// A shared keep-alive connection.
  http_connection& http() { return *http_; }

  std::unique_ptr<server_process> server_;
  std::unique_ptr<http_connection> http_;
};

} // namespace rsv::e2e
