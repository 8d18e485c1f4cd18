// rsv-kafka-broker seen through kcat, a Kafka client that shares no code
// with the program's options or signal handling: the topics a client sees,
// keyed messages coming back in order, an outage staged by SIGUSR1/SIGUSR2,
// and the exit codes the run and test commands rely on.

#include "child_process.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unistd.h>

namespace rsv::messaging::test {
namespace {

using json = nlohmann::json;

const std::string default_topic = "reservation-events";

/// A file of kcat -P input that is removed with this object.
class input_file {
public:
  explicit input_file(const std::vector<std::string>& lines) {
    char path[] = "/tmp/rsv-kafka-broker-input-XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    ::close(fd);
    path_ = path;
    std::ofstream out(path_);
    for (const auto& line : lines)
      out << line << '\n';
  }
  ~input_file() { ::unlink(path_.c_str()); }
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

struct message {
  std::string key;
  std::string payload;
  int partition = -1;
  long long offset = -1;
};

/// `KEY:VALUE` lines: `per_key` messages for each key, values
/// `<tag>-<key>-<n>` in the order they are produced.
std::vector<std::string> keyed_lines(const std::vector<std::string>& keys,
                                     int per_key, const std::string& tag) {
  std::vector<std::string> lines;
  for (int n = 0; n < per_key; ++n)
    for (const auto& key : keys)
      lines.push_back(key + ":" + tag + "-" + key + "-" + std::to_string(n));
  return lines;
}

/// Produces `KEY:VALUE` lines with kcat; delivery gives up after
/// `message_timeout_ms`, so kcat ends well before the command's deadline.
command_result produce(const std::string& bootstrap,
                       const std::vector<std::string>& lines,
                       std::vector<std::string> extra = {},
                       int message_timeout_ms = 10000) {
  input_file input(lines);
  std::vector<std::string> args{"kcat",
                                "-P",
                                "-b",
                                bootstrap,
                                "-t",
                                default_topic,
                                "-K:",
                                "-X",
                                "message.timeout.ms=" +
                                    std::to_string(message_timeout_ms),
                                "-l",
                                input.path()};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_command(std::move(args), 20s);
}

/// Every message of the topic from the beginning, in kcat's order (which
/// is offset order within a partition).
std::vector<message> consume_all(const std::string& bootstrap) {
  auto result = run_command({"kcat", "-C", "-b", bootstrap, "-t", default_topic,
                             "-o", "beginning", "-e", "-J", "-q"},
                            20s);
  if (result.exit_code != 0)
    throw std::runtime_error("kcat -C failed: " + result.err);
  std::vector<message> messages;
  std::istringstream lines(result.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    auto parsed = json::parse(line);
    messages.push_back({parsed.at("key").get<std::string>(),
                        parsed.at("payload").get<std::string>(),
                        parsed.at("partition").get<int>(),
                        parsed.at("offset").get<long long>()});
  }
  return messages;
}

/// Each key's values in offset order; fails when a key's messages are in
/// more than one partition or its offsets do not grow.
std::map<std::string, std::vector<std::string>>
values_by_key(const std::vector<message>& messages) {
  std::map<std::string, std::vector<std::string>> values;
  std::map<std::string, int> partition_of;
  std::map<std::string, long long> last_offset;
  for (const auto& m : messages) {
    auto [known, fresh] = partition_of.try_emplace(m.key, m.partition);
    EXPECT_EQ(known->second, m.partition)
        << "key " << m.key << " is in two partitions";
    if (!fresh) {
      EXPECT_GT(m.offset, last_offset[m.key])
          << "key " << m.key << " goes back in partition " << m.partition;
    }
    last_offset[m.key] = m.offset;
    values[m.key].push_back(m.payload);
  }
  return values;
}

/// What values_by_key should answer for keyed_lines(...) batches in order.
std::map<std::string, std::vector<std::string>>
expected_values(const std::vector<std::vector<std::string>>& batches) {
  std::map<std::string, std::vector<std::string>> values;
  for (const auto& batch : batches)
    for (const auto& line : batch) {
      auto colon = line.find(':');
      values[line.substr(0, colon)].push_back(line.substr(colon + 1));
    }
  return values;
}

json metadata(const std::string& bootstrap, const std::string& topic) {
  auto result = run_command(
      {"kcat", "-L", "-b", bootstrap, "-t", topic, "-J", "-m", "5"}, 20s);
  if (result.exit_code != 0)
    throw std::runtime_error("kcat -L failed: " + result.err);
  return json::parse(result.out);
}

/// A broker per test, stopped with SIGTERM at the end: exit code 0 is part
/// of every test. Its log is printed when the test failed.
class kafka_broker_test : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    // The independent client; scripts/install-deps installs it.
    ASSERT_NO_THROW(find_program("kcat")) << "kcat is not installed";
  }

  void start(std::vector<std::string> args = {}) {
    broker_ = std::make_unique<broker_process>(std::move(args));
  }

  void TearDown() override {
    if (!broker_) return;
    EXPECT_EQ(broker_->stop(5s), 0) << "SIGTERM must end the broker with 0";
    if (HasFailure()) std::cerr << "broker log:\n" << broker_->log();
    broker_.reset();
  }

  const std::string& bootstrap() const { return broker_->bootstrap(); }

  std::unique_ptr<broker_process> broker_;
};

TEST_F(kafka_broker_test, listens_on_loopback_with_the_default_topic) {
  start();
  EXPECT_EQ(bootstrap().rfind("127.0.0.1:", 0), 0u) << bootstrap();
  EXPECT_EQ(bootstrap().find(','), std::string::npos) << "one broker";

  auto info = metadata(bootstrap(), default_topic);
  ASSERT_EQ(info.at("brokers").size(), 1u) << info;
  EXPECT_EQ(info["brokers"][0].at("name").get<std::string>(), bootstrap());
  ASSERT_EQ(info.at("topics").size(), 1u) << info;
  const auto& topic = info["topics"][0];
  EXPECT_EQ(topic.at("topic"), default_topic);
  EXPECT_FALSE(topic.contains("error")) << topic;
  EXPECT_EQ(topic.at("partitions").size(), 6u) << topic;
}

TEST_F(kafka_broker_test, creates_the_configured_brokers_topics_partitions) {
  start({"--brokers", "3", "--partitions", "4", "--topic",
         default_topic + ",holds", "--topic", "audit"});
  auto brokers = std::count(bootstrap().begin(), bootstrap().end(), ',') + 1;
  EXPECT_EQ(brokers, 3) << bootstrap();

  for (const auto& name :
       std::vector<std::string>{default_topic, "holds", "audit"}) {
    auto info = metadata(bootstrap(), name);
    EXPECT_EQ(info.at("brokers").size(), 3u) << info;
    for (const auto& broker : info["brokers"])
      EXPECT_EQ(broker.at("name").get<std::string>().rfind("127.0.0.1:", 0), 0u)
          << broker;
    ASSERT_EQ(info.at("topics").size(), 1u) << info;
    const auto& partitions = info["topics"][0].at("partitions");
    EXPECT_EQ(partitions.size(), 4u) << name << ": " << info;
    for (const auto& partition : partitions)
      EXPECT_EQ(partition.at("replicas").size(), 3u)
          << "replication defaults to min(3, brokers): " << partition;
  }
}

TEST_F(kafka_broker_test, keyed_messages_come_back_in_order_per_key) {
  start();
  auto batch = keyed_lines({"A1", "A2", "B7", "C3", "D9"}, 20, "held");
  auto produced = produce(bootstrap(), batch);
  ASSERT_EQ(produced.exit_code, 0) << produced;

  auto messages = consume_all(bootstrap());
  EXPECT_EQ(messages.size(), batch.size());
  EXPECT_EQ(values_by_key(messages), expected_values({batch}));
}

TEST_F(kafka_broker_test, takes_an_idempotent_producer_with_acks_all) {
  // The outbox relay produces idempotently with acks=all, as it will on
  // MSK; the local broker must take that too.
  start({"--brokers", "3"});
  auto batch = keyed_lines({"A1", "B7"}, 10, "booked");
  auto produced = produce(bootstrap(), batch,
                          {"-X", "enable.idempotence=true", "-X", "acks=all"});
  ASSERT_EQ(produced.exit_code, 0) << produced;
  EXPECT_EQ(values_by_key(consume_all(bootstrap())), expected_values({batch}));
}

TEST_F(kafka_broker_test, outage_refuses_clients_and_keeps_the_messages) {
  start();
  auto before = keyed_lines({"A1", "B7", "C3"}, 5, "before");
  auto produced = produce(bootstrap(), before);
  ASSERT_EQ(produced.exit_code, 0) << produced;

  ASSERT_TRUE(broker_->signal_and_wait_for(SIGUSR1, "brokers=down"));
  auto listed = run_command(
      {"kcat", "-L", "-b", bootstrap(), "-t", default_topic, "-m", "2"}, 20s);
  EXPECT_NE(listed.exit_code, 0) << "metadata while down: " << listed;
  EXPECT_LT(listed.elapsed, 15s) << listed;
  auto refused =
      produce(bootstrap(), keyed_lines({"A1"}, 1, "during"), {}, 3000);
  EXPECT_NE(refused.exit_code, 0) << "produce while down: " << refused;
  EXPECT_LT(refused.elapsed, 15s) << refused;

  ASSERT_TRUE(broker_->signal_and_wait_for(SIGUSR2, "brokers=up"));
  auto after = keyed_lines({"A1", "B7", "D9"}, 5, "after");
  produced = produce(bootstrap(), after);
  ASSERT_EQ(produced.exit_code, 0) << produced;

  // The refused message never reached a broker (its connection was
  // refused), so exactly the two batches are there, in order.
  auto messages = consume_all(bootstrap());
  EXPECT_EQ(messages.size(), before.size() + after.size());
  EXPECT_EQ(values_by_key(messages), expected_values({before, after}));
}

TEST_F(kafka_broker_test, sigint_ends_it_with_exit_code_zero) {
  start();
  EXPECT_EQ(broker_->stop(5s, SIGINT), 0) << broker_->log();
}

TEST(kafka_broker_options, bad_options_exit_with_code_two) {
  const std::vector<std::vector<std::string>> bad = {
      {"--brokers", "0"},     {"--brokers", "two"}, {"--partitions", "0"},
      {"--replication", "2"}, // one broker
      {"--topic", "a/b"},     {"--topic", "a,a"},   {"--no-such-option"},
  };
  for (const auto& args : bad) {
    std::vector<std::string> command{RSV_KAFKA_BROKER};
    command.insert(command.end(), args.begin(), args.end());
    auto result = run_command(command, 10s);
    EXPECT_EQ(result.exit_code, 2) << args[0] << ": " << result;
    EXPECT_EQ(result.out.find("bootstrap="), std::string::npos) << result;
    EXPECT_FALSE(result.err.empty()) << args[0] << ": says nothing";
  }
}

} // namespace
} // namespace rsv::messaging::test
