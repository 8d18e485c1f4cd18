#pragma once

// Concurrent clients that hold, book, release and cancel through the real
// server and record every request with its outcome; and the checks that what
// a server shows afterwards agrees with what the clients were told.
//
// Shared by the crash test (kill -9 under load) and the outage test
// (PostgreSQL stopped under load). Every client loop is bounded by a count
// and a deadline; nothing sleeps to synchronise.

#include "harness.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rsv::e2e {

using steady_time = std::chrono::steady_clock::time_point;

/// What a request asked for.
enum class op_kind { hold_seats, hold_quantity, book, release, cancel };

/// How an answer counts for durability: a 2xx is acknowledged (the change is
/// durable), a 4xx rejected (no change), anything else indeterminate (5xx,
/// timeout, connection error: the change may or may not have happened).
enum class outcome { acknowledged, rejected, indeterminate };

std::string_view to_string(op_kind kind);
std::string_view to_string(outcome result);

/// One request of one client and its answer.
struct operation {
  int client = 0; // index into load_config::customers
  op_kind kind = op_kind::hold_quantity;
  std::string section_id;         // holds
  std::vector<std::string> seats; // hold_seats: the seats asked for
  int quantity = 0;               // hold_quantity
  std::string hold_id;            // book, release
  std::string booking_id;         // cancel
  std::string idempotency_key;    // POSTs
  bool retry = false; // a retry of an indeterminate request, same key
  steady_time sent{};
  steady_time answered{};
  outcome result = outcome::indeterminate;
  unsigned status = 0;        // 0: no answer (connection error or timeout)
  json body;                  // the answer's JSON body, null when none
  std::string code;           // the problem's code of a 4xx or 5xx
  bool problem_shape = false; // an RFC 9457 answer with that status and code
  bool retry_after = false;   // the answer had a Retry-After header
  std::string error;          // the connection error or timeout

  std::chrono::milliseconds latency() const;
  /// "client 3 book hld_1_7: 503 unavailable" and the like.
  std::string describe() const;
};

/// The event a load runs against and how its clients behave.
struct load_config {
  std::string event_id;
  /// Section id -> its seat ids, for holds of named seats.
  std::map<std::string, std::vector<std::string>> sections;
  /// One client thread for each; each client acts on its own holds only.
  std::vector<customer> customers;

  enum class plan {
    /// Holds (named seats or best available), bookings, releases and
    /// cancellations at random.
    mixed,
    /// Each client makes `burst_holds` holds; when every client has, all
    /// book theirs at once: a booking burst.
    hold_then_book,
  };
  plan what = plan::mixed;
  int burst_holds = 5;
  /// Mixed plan: a client with this many holds and bookings of its own (
  /// acknowledged, not released or cancelled) books, releases and cancels
  /// but holds nothing more until it has fewer, so that a long load keeps
  /// finding free seats. 0: no bound (the seats run out in the end).
  int live_max = 0;
  /// Requests per client at most, and the whole load's time at most.
  int requests_max = 400;
  std::chrono::milliseconds duration_max = 30s;
  /// The client side's limit on one request: far above any server deadline,
  /// so that a server that does not answer shows as a timeout.
  std::chrono::milliseconds request_timeout = 10s;
  /// After a 5xx a client waits this long, or until stopped, before its next
  /// request: it paces a client facing an outage instead of spinning.
  std::chrono::milliseconds pause_after_failure = 20ms;
  /// After every other request a client waits this long (0: not at all):
  /// a load that must last a given time without passing a count, however
  /// fast the machine.
  std::chrono::milliseconds pause_between_requests = 0ms;
  /// After an indeterminate answer (5xx, timeout, lost connection), how
  /// often a client sends the same request again (same Idempotency-Key),
  /// each time after `pause_after_failure`, before it gives the hold or
  /// booking up as unknown. 0: at once (its seats then stay taken, unseen
  /// by the load, until the hold expires).
  int retries_after_failure = 0;
  unsigned seed = 1;
  /// Further nodes of a cluster: with any, each client sends its requests
  /// round robin over the generator's port and these, and a lost
  /// connection (a node killed or frozen) does not stop it: it goes on with
  /// the next node after `pause_after_failure`.
  std::vector<unsigned short> more_ports;
};

/// Counters of a running load.
struct load_progress {
  int sent = 0;
  int answered = 0; // with an HTTP status, any
  int acknowledged = 0;
  int bookings_acknowledged = 0;
  int clients_done = 0;
};

/// The client threads of one load. A client stops at its request or time
/// limit, when asked to, or at its first connection error or timeout (its
/// server is gone: that request is indeterminate, and nothing else is sent).
class load_generator {
public:
  load_generator(unsigned short port, load_config config);
  /// Asks the clients to stop and joins them.
  ~load_generator();

  load_generator(const load_generator&) = delete;
  load_generator& operator=(const load_generator&) = delete;

  void start();
  /// Clients finish the request they are in and stop.
  void request_stop();
  /// Waits for every client; bounded by the clients' own limits.
  void join();

  load_progress progress() const;
  /// Waits until `condition` holds for the progress, or the deadline.
  bool wait_for(const std::function<bool(const load_progress&)>& condition,
                std::chrono::milliseconds deadline) const;

  /// After join: every client's requests, client by client, each client's
  /// in the order it sent them.
  std::vector<operation> operations() const;

  const load_config& config() const { return config_; }

private:
  void run_client(int index);
  void record(const operation& op);
  bool pause(std::chrono::milliseconds how_long);

  unsigned short port_;
  load_config config_;
  std::vector<std::vector<operation>> logs_; // one per client
  std::vector<std::thread> threads_;
  std::latch burst_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  load_progress progress_; // guarded by mutex_
  steady_time deadline_{};
};

/// Sends one request of the kind, target and body of `op` (its key too) as
/// its client and records the answer in a fresh operation. Used by the
/// clients, and by tests to retry indeterminate requests.
operation perform(http_connection& http, const load_config& config,
                  operation op);

/// What a server shows of a load's event: seat maps, counts, every hold the
/// clients know of, every client's bookings. Two observations with no
/// change between them compare equal.
struct observed_state {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>>
      seat_maps;                             // section -> (seat, status)
  std::map<std::string, json> sections;      // id -> GET /v1/events item
  std::map<std::string, json> holds;         // id -> GET /v1/holds/{id}
  std::map<int, json> bookings;              // client -> GET /v1/bookings
  std::map<std::string, json> booking_reads; // id -> GET /v1/bookings/{id}
  bool operator==(const observed_state&) const = default;
};

/// Reads what `observe` describes through `http`; throws on I/O errors.
observed_state observe(http_connection& http, const load_config& config,
                       const std::vector<operation>& operations);

/// Differences between two observations, one line each (empty: none).
std::vector<std::string> differences(const observed_state& before,
                                     const observed_state& after);

/// Checks a server's state against what its clients were told, answering
/// one line per violation (empty: consistent):
/// - every acknowledged hold exists with its seats, and its status agrees
///   with the last acknowledged request on it (active, booked, released;
///   a booking confirmed, or cancelled once its cancellation was
///   acknowledged); an indeterminate request may have gone either way, a 409
///   hold_booked or 410 hold_expired tells which way it went;
/// - no 4xx other than the ones a client must expect;
/// - no seat is in two active holds or confirmed bookings, the seat map
///   shows each hold's seats as held or booked, and every other seat that is
///   not free is explained by a hold request with an indeterminate outcome;
/// - every booking a client has belongs to a hold it tried to book, and
///   GET /v1/bookings/{id} shows each booking as the client's list does;
/// - for every section free + held + booked = seats_total, and the seat map
///   counts the same.
std::vector<std::string> check_consistent(const std::vector<operation>& ops,
                                          const observed_state& state);

/// Checks the database itself: no seat of the event is in two active holds
/// or confirmed bookings (view seat_state). One line per violation.
std::vector<std::string> check_store(const std::string& conninfo,
                                     const std::string& event_id);

/// Counts of operations by outcome, for the test's log.
std::string summary(const std::vector<operation>& ops);

/// The lines, numbered, for an assertion message.
std::string as_lines(const std::vector<std::string>& lines,
                     std::size_t max = 50);

} // namespace rsv::e2e
