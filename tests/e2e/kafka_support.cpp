#include "kafka_support.hpp"

#include "core/partition.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace rsv::e2e {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

/// RSV_KAFKA_BROKER when set, else the program this build made.
std::string broker_binary() {
  const char* path = std::getenv("RSV_KAFKA_BROKER");
  if (path != nullptr && *path != '\0') return path;
  return RSV_KAFKA_BROKER_PATH;
}

/// The lifecycle position of a change type within one hold.
int stage_of(const std::string& type) {
  if (type == "hold.created") return 0;
  if (type == "booking.cancelled") return 2;
  return 1; // released, expired, booking.confirmed
}

} // namespace

kafka_broker::kafka_broker(int partitions,
                           std::vector<std::string> extra_args) {
  log_path_ = make_temp_file("rsv-kafka");
  int fd = ::open(log_path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("open " + log_path_ + ": " + std::strerror(errno));
  std::vector<std::string> args{broker_binary(), "--partitions",
                                std::to_string(partitions)};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = spawn_child(std::move(args), fd);
  ::close(fd);
  bool started = eventually(
      [&] {
        for (const auto& line : lines_of(log()))
          if (line.rfind("bootstrap=", 0) == 0) {
            bootstrap_ = line.substr(10);
            return true;
          }
        return wait_child(pid_, 0ms).has_value();
      },
      10s);
  if (!started || bootstrap_.empty())
    throw std::runtime_error("rsv-kafka-broker did not start: " + log());
}

kafka_broker::~kafka_broker() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!wait_child(pid_, 10s)) {
      ::kill(pid_, SIGKILL);
      wait_child(pid_, 10s);
    }
  }
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

std::string kafka_broker::log() const {
  return slurp(log_path_);
}

void kafka_broker::signal_and_wait(int signal, const std::string& line) {
  auto before = reports_;
  ::kill(pid_, signal);
  bool done = eventually(
      [&] {
        std::size_t seen = 0;
        bool last_matches = false;
        for (const auto& l : lines_of(log()))
          if (l.rfind("brokers=", 0) == 0) {
            ++seen;
            last_matches = l == line;
          }
        if (seen > before && last_matches) {
          reports_ = seen;
          return true;
        }
        return false;
      },
      10s);
  if (!done)
    throw std::runtime_error("rsv-kafka-broker did not report " + line + ": " +
                             log());
}

void kafka_broker::down() {
  signal_and_wait(SIGUSR1, "brokers=down");
}
void kafka_broker::up() {
  signal_and_wait(SIGUSR2, "brokers=up");
}

std::vector<consumed_record> consume_all(const std::string& bootstrap,
                                         const std::string& topic) {
  // -e: exit at the end of every partition; -J: one JSON envelope a line
  // with partition, offset, key, headers and payload; -q: nothing else.
  auto result = run_command({find_program("kcat"), "-C", "-b", bootstrap, "-t",
                             topic, "-o", "beginning", "-e", "-J", "-q", "-X",
                             "topic.metadata.refresh.interval.ms=1000"},
                            30s);
  if (result.exit_code != 0)
    throw std::runtime_error("kcat -C: exit " +
                             std::to_string(result.exit_code) + ": " +
                             result.output.substr(0, 2000));
  std::vector<consumed_record> out;
  for (const auto& line : lines_of(result.output)) {
    auto envelope = json::parse(line, nullptr, false);
    if (!envelope.is_object()) continue; // kcat's own messages, if any
    consumed_record record;
    record.partition = envelope.value("partition", -1);
    record.offset = envelope.value("offset", -1LL);
    if (envelope.contains("key") && envelope["key"].is_string())
      record.key = envelope["key"].get<std::string>();
    if (envelope.contains("headers") && envelope["headers"].is_array()) {
      const auto& headers = envelope["headers"];
      for (std::size_t i = 0; i + 1 < headers.size(); i += 2)
        if (headers[i] == "id" && headers[i + 1].is_string())
          record.id_header = headers[i + 1].get<std::string>();
    }
    if (envelope.contains("payload") && envelope["payload"].is_string())
      record.value =
          json::parse(envelope["payload"].get<std::string>(), nullptr, false);
    out.push_back(std::move(record));
  }
  return out;
}

std::set<std::string> committed_change_ids(const std::string& conninfo) {
  // Hold and booking ids end in the hash of their event's id
  // (core/partition.hpp), which C++ adds: `<id without it>|<event id>|<type>`.
  auto result = run_psql(conninfo, R"sql(
    SELECT 'evt_' || id || ':event.created' FROM events
    UNION ALL
    SELECT 'hld_' || to_hex(h.section_no) || '_' || to_hex(h.slot) || '|' ||
           s.event_id || '|hold.created'
    FROM holds h JOIN sections s USING (section_no)
    UNION ALL
    SELECT 'hld_' || to_hex(h.section_no) || '_' || to_hex(h.slot) || '|' ||
           s.event_id || '|hold.' || h.status
    FROM holds h JOIN sections s USING (section_no)
    WHERE h.status IN ('released', 'expired')
    UNION ALL
    SELECT 'bkg_' || to_hex(b.section_no) || '_' || to_hex(b.slot) || '|' ||
           s.event_id || '|booking.confirmed'
    FROM bookings b JOIN sections s USING (section_no)
    UNION ALL
    SELECT 'bkg_' || to_hex(b.section_no) || '_' || to_hex(b.slot) || '|' ||
           s.event_id || '|booking.cancelled'
    FROM bookings b JOIN sections s USING (section_no)
    WHERE b.status = 'cancelled'
  )sql");
  if (result.exit_code != 0) throw std::runtime_error("psql: " + result.output);
  std::set<std::string> ids;
  for (const auto& line : lines_of(result.output)) {
    if (line.empty()) continue;
    auto first = line.find('|');
    if (first == std::string::npos) {
      ids.insert(line);
      continue;
    }
    auto second = line.find('|', first + 1);
    char hash[24];
    std::snprintf(hash, sizeof(hash), "_%llx",
                  static_cast<unsigned long long>(
                      fnv1a_64(line.substr(first + 1, second - first - 1))));
    ids.insert(line.substr(0, first) + hash + ':' + line.substr(second + 1));
  }
  return ids;
}

std::vector<std::string>
check_records(const std::vector<consumed_record>& records,
              const std::set<std::string>& committed) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  std::map<std::string, int> partition_of_key;
  std::map<std::string, std::chrono::system_clock::time_point> last_time_of_key;
  std::map<std::string, int> stage_of_hold;
  // kcat reads partition by partition in offset order, so within a key
  // (one partition) this is the order Kafka keeps.
  for (const auto& record : records) {
    if (!record.value.is_object()) {
      out.push_back("a record whose value is not JSON, partition " +
                    std::to_string(record.partition) + " offset " +
                    std::to_string(record.offset));
      continue;
    }
    auto id = record.value.value("id", std::string{});
    if (id.empty() || id != record.id_header)
      out.push_back("record " + id + ": id header '" + record.id_header +
                    "' differs from the value's id");
    if (!seen.insert(id).second) continue; // a duplicate: consumers drop it
    if (!committed.count(id))
      out.push_back("record " + id + " is no committed change");
    auto [where, fresh] =
        partition_of_key.emplace(record.key, record.partition);
    if (!fresh && where->second != record.partition)
      out.push_back("key " + record.key + " is in partitions " +
                    std::to_string(where->second) + " and " +
                    std::to_string(record.partition));
    auto type = record.value.value("type", std::string{});
    auto expected_key = record.value.value("event_id", std::string{});
    if (type != "event.created")
      expected_key += "/" + record.value.value("section_id", std::string{});
    if (record.key != expected_key)
      out.push_back("record " + id + " has key '" + record.key +
                    "', expected '" + expected_key + "'");
    auto text = record.value.value("occurred_at", std::string{});
    auto at = parse_time(text);
    if (!at) {
      out.push_back("record " + id + " has no occurred_at time: " + text);
    } else {
      auto [last, none] = last_time_of_key.emplace(record.key, *at);
      if (!none && *at < last->second)
        out.push_back("record " + id + " at " + text +
                      " comes after a later one in key " + record.key);
      last->second = std::max(last->second, *at);
    }
    if (type != "event.created") {
      auto hold = record.value.value("hold_id", std::string{});
      auto stage = stage_of(type);
      auto [known, first] = stage_of_hold.emplace(hold, stage);
      if (first && stage != 0)
        out.push_back("record " + id + " comes before its hold.created");
      else if (!first && stage <= known->second)
        out.push_back("record " + id + " comes out of order for " + hold);
      known->second = std::max(known->second, stage);
    }
  }
  for (const auto& id : committed)
    if (!seen.count(id))
      out.push_back("committed change " + id + " is missing");
  return out;
}

namespace {

long long count_of(const std::string& conninfo, const std::string& sql) {
  auto result = run_psql(conninfo, sql);
  if (result.exit_code != 0) return -1;
  try {
    return std::stoll(result.output);
  } catch (const std::exception&) {
    return -1;
  }
}

} // namespace

long long unprojected_journal_rows(const std::string& conninfo) {
  return count_of(conninfo,
                  "SELECT count(*) FROM journal j LEFT JOIN journal_cursors c "
                  "ON c.reader = 'projector' AND c.stream = j.stream WHERE "
                  "j.seq > coalesce(c.seq, 0)");
}

long long rows_waiting_for_readers(const std::string& conninfo) {
  return count_of(
      conninfo,
      "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM journal "
      "j LEFT JOIN journal_cursors p ON p.reader = 'projector' AND p.stream "
      "= j.stream LEFT JOIN journal_cursors r ON r.reader = 'relay' AND "
      "r.stream = j.stream WHERE j.seq > coalesce(p.seq, 0) OR (j.records > "
      "0 AND j.seq > coalesce(r.seq, 0)))");
}

long long outbox_and_journal_rows(const std::string& conninfo) {
  return count_of(conninfo, "SELECT (SELECT count(*) FROM outbox) + (SELECT "
                            "count(*) FROM journal)");
}

std::vector<consumed_record>
consume_until_complete(const std::string& bootstrap, const std::string& topic,
                       const std::string& conninfo,
                       std::chrono::milliseconds deadline) {
  std::vector<consumed_record> records;
  eventually(
      [&] {
        auto committed = committed_change_ids(conninfo);
        records = consume_all(bootstrap, topic);
        std::set<std::string> ids;
        for (const auto& record : records)
          if (record.value.is_object())
            ids.insert(record.value.value("id", std::string{}));
        for (const auto& id : committed)
          if (!ids.count(id)) return false;
        return true;
      },
      deadline, 250ms);
  return records;
}

} // namespace rsv::e2e
