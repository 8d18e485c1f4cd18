#pragma once

// Kafka for end-to-end tests: the project's own Kafka-protocol broker
// (rsv-kafka-broker, librdkafka's mock cluster) as a child process, the
// independent client kcat to read what reached it, and what PostgreSQL says
// should have.

#include "harness.hpp"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace rsv::e2e {

/// One rsv-kafka-broker child process (path: RSV_KAFKA_BROKER), killed with
/// this object. `down` and `up` take its brokers away and back (SIGUSR1,
/// SIGUSR2) while it keeps what it stored.
class kafka_broker {
public:
  /// Starts it and waits for its bootstrap line; throws on failure.
  explicit kafka_broker(int partitions = 6,
                        std::vector<std::string> extra_args = {});
  ~kafka_broker();

  kafka_broker(const kafka_broker&) = delete;
  kafka_broker& operator=(const kafka_broker&) = delete;

  const std::string& bootstrap() const { return bootstrap_; }
  /// Each waits until the program reports it done; throws after 10 s.
  void down();
  void up();
  std::string log() const;

private:
  void signal_and_wait(int signal, const std::string& line);

  pid_t pid_ = -1;
  std::string log_path_;
  std::string bootstrap_;
  std::size_t reports_ = 0; // "brokers=" lines seen so far
};

/// A record as kcat consumed it.
struct consumed_record {
  int partition = 0;
  long long offset = 0;
  std::string key;
  std::string id_header; // the record's `id` header
  json value;            // its value, parsed
};

/// Every record of `topic` from the beginning, partition by partition in
/// offset order (kcat -C -e); throws when kcat fails.
std::vector<consumed_record> consume_all(const std::string& bootstrap,
                                         const std::string& topic);

/// The ids of the change records that the committed state in PostgreSQL
/// implies: an event.created per event, a hold.created per hold, a
/// hold.released or hold.expired per hold in that status, a
/// booking.confirmed per booking and a booking.cancelled per cancelled one.
std::set<std::string> committed_change_ids(const std::string& conninfo);

/// Checks consumed records against the committed ids, one line per
/// violation: after dropping duplicates by id, one record per committed
/// change and none other; the id header is the value's id; every record of
/// a key in one partition; per key, times never go back; per hold, created
/// comes first and booking.confirmed before booking.cancelled.
std::vector<std::string>
check_records(const std::vector<consumed_record>& records,
              const std::set<std::string>& committed);

/// The `--pg-batch-encoding` values: consumers must not be able to tell
/// which one a node uses, so the Kafka tests run with each.
inline const std::vector<std::string> batch_encodings{"pipeline", "journal"};

/// A test's name suffix: its encoding.
inline std::string
batch_encoding_name(const ::testing::TestParamInfo<std::string>& param) {
  return param.param;
}

/// Journal rows not yet projected into the tables (migration 0009), -1 when
/// psql fails. With the journal, committed_change_ids sees a change only
/// once this is 0 (it reads the tables).
long long unprojected_journal_rows(const std::string& conninfo);

/// Rows that hold records not yet relayed or rows not yet let go: outbox
/// rows and journal rows. 0 once the relay and the projector are done; -1
/// when psql fails.
long long outbox_and_journal_rows(const std::string& conninfo);

/// Rows a reader still has to read: outbox rows, and journal rows beyond
/// the projector's cursor or, with records, the relay's. Journal rows both
/// passed may stay until their sections' snapshots cover them (migration
/// 0012). -1 when psql fails.
long long rows_waiting_for_readers(const std::string& conninfo);

/// Polls kcat until the topic holds every committed id, or the deadline;
/// answers the last consumption.
std::vector<consumed_record>
consume_until_complete(const std::string& bootstrap, const std::string& topic,
                       const std::string& conninfo,
                       std::chrono::milliseconds deadline);

} // namespace rsv::e2e
