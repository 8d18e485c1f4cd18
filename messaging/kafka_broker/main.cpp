// rsv-kafka-broker: a Kafka-protocol broker on loopback for the run and test
// commands, built on librdkafka's mock cluster (see README in messaging/).
//
// Protocol on stdout, one line each, flushed: `bootstrap=HOST:PORT[,...]` once
// the topics exist, then `brokers=down` / `brokers=up` after each SIGUSR1 /
// SIGUSR2 took effect. Everything else goes to stderr. Exit code 0 after
// SIGTERM or SIGINT, 2 on bad options or when the cluster cannot be made.

#include "mock_cluster.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <pthread.h>
#include <set>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>

namespace {

using rsv::messaging::kafka_broker::cluster_options;
using rsv::messaging::kafka_broker::mock_cluster;
using rsv::messaging::kafka_broker::topic_spec;

constexpr int exit_usage = 2;

// Limits on what one local process should host: the mock keeps every
// partition's log in memory and runs every broker on one thread.
constexpr int broker_count_max = 16;
constexpr int partition_count_max = 1000;
// Kafka's own limit on topic name length.
constexpr std::size_t topic_name_length_max = 249;

/// Writes one protocol line to stdout and flushes it, so that a reader
/// waiting for it sees it now. False when stdout is gone.
bool announce(const std::string& line) {
  bool ok = std::fputs(line.c_str(), stdout) >= 0 &&
            std::fputc('\n', stdout) != EOF && std::fflush(stdout) == 0;
  if (!ok) spdlog::warn("could not write '{}' to stdout", line);
  return ok;
}

/// "" when Kafka accepts `name` as a topic name, otherwise why not.
std::string topic_name_problem(std::string_view name) {
  if (name.empty()) return "is empty";
  if (name.size() > topic_name_length_max) return "is longer than 249 bytes";
  if (name == "." || name == "..") return "is . or ..";
  auto legal = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  };
  if (!std::all_of(name.begin(), name.end(), legal))
    return "has characters other than ASCII letters, digits, '.', '_', '-'";
  return {};
}

/// Checks what CLI11 cannot check alone and reads the `--topic` values
/// (NAME or NAME:PARTITIONS) into `options`; "" or the problem.
std::string options_problem(const std::vector<std::string>& topic_values,
                            int default_partition_count,
                            cluster_options& options) {
  if (options.replication_factor < 1 ||
      options.replication_factor > options.broker_count)
    return "--replication must be between 1 and --brokers (" +
           std::to_string(options.broker_count) + ")";
  std::set<std::string> seen;
  for (const auto& value : topic_values) {
    topic_spec topic;
    if (auto problem = rsv::messaging::kafka_broker::parse_topic_spec(
            value, default_partition_count, partition_count_max, topic);
        !problem.empty())
      return "--topic '" + value + "' " + problem;
    if (auto problem = topic_name_problem(topic.name); !problem.empty())
      return "--topic '" + value + "' " + problem;
    if (!seen.insert(topic.name).second)
      return "--topic '" + topic.name + "' is given twice";
    options.topics.push_back(std::move(topic));
  }
  return {};
}

/// Answers the outage-control signals until SIGTERM or SIGINT arrives.
/// Runs on the main thread, which takes the blocked signals with sigwait, so
/// no work happens inside a signal handler.
void serve_signals(mock_cluster& cluster, const sigset_t& signals) {
  while (true) {
    int signal_number = 0;
    if (int failed = sigwait(&signals, &signal_number); failed != 0) {
      spdlog::error("sigwait: {}", std::strerror(failed));
      continue;
    }
    switch (signal_number) {
    case SIGTERM:
    case SIGINT:
      spdlog::info("{}: stopping",
                   signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
      return;
    case SIGUSR1:
      if (auto error = cluster.set_all_down(); !error.empty()) {
        spdlog::error("SIGUSR1: taking the brokers down failed: {}", error);
      } else {
        spdlog::info("SIGUSR1: every broker is down (connections dropped, "
                     "new ones refused)");
        announce("brokers=down");
      }
      break;
    case SIGUSR2:
      if (auto error = cluster.set_all_up(); !error.empty()) {
        spdlog::error("SIGUSR2: bringing the brokers up failed: {}", error);
      } else {
        spdlog::info("SIGUSR2: every broker accepts connections again");
        announce("brokers=up");
      }
      break;
    default:
      break;
    }
  }
}

/// The broker's command line, checked; nothing (after printing why, or the
/// help) when it should exit with `exit_code`.
std::optional<cluster_options> parse_options(int argc, char** argv,
                                             int& exit_code) {
  cluster_options options;
  // NAME or NAME:PARTITIONS, read after parsing (the default count may come
  // after them on the command line).
  std::vector<std::string> topic_values{"reservation-events"};
  int partition_count = 6;
  int replication_factor = 0; // 0: min(3, brokers), decided after parsing

  CLI::App app{"A Kafka-protocol broker on loopback (librdkafka's mock "
               "cluster) for local runs and tests. Prints "
               "bootstrap=HOST:PORT[,...] on stdout when ready; SIGUSR1 takes "
               "every broker down, SIGUSR2 brings them up; SIGTERM or SIGINT "
               "stops it.",
               "rsv-kafka-broker"};
  app.add_option("--brokers", options.broker_count, "Number of brokers")
      ->check(CLI::Range(1, broker_count_max))
      ->capture_default_str();
  app.add_option("--topic", topic_values,
                 "Topic to create, NAME or NAME:PARTITIONS (e.g. "
                 "rsv-owners:16); repeat it or give a comma-separated list")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--partitions", partition_count,
                 "Partitions of each topic that does not give its own")
      ->check(CLI::Range(1, partition_count_max))
      ->capture_default_str();
  app.add_option("--replication", replication_factor,
                 "Replicas of each partition (default: min(3, brokers))")
      ->check(CLI::PositiveNumber);
  app.add_option("--debug", options.debug_contexts,
                 "librdkafka debug contexts to log, e.g. mock,broker,protocol");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end well; any real parse error is a usage error.
    exit_code = app.exit(e) == 0 ? 0 : exit_usage;
    return std::nullopt;
  }
  options.replication_factor = replication_factor != 0
                                   ? replication_factor
                                   : std::min(3, options.broker_count);
  if (auto problem = options_problem(topic_values, partition_count, options);
      !problem.empty()) {
    spdlog::critical("{}", problem);
    exit_code = exit_usage;
    return std::nullopt;
  }
  return options;
}

} // namespace

int main(int argc, char** argv) {
  // stdout carries the protocol lines only, so the log goes to stderr.
  auto logger = spdlog::stderr_color_mt("rsv-kafka-broker");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v",
                      spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  int exit_code = 0;
  auto options = parse_options(argc, argv, exit_code);
  if (!options) return exit_code;

  // Blocked before librdkafka starts its threads, which inherit the mask:
  // these signals then reach only the sigwait below. A reader of stdout that
  // went away must not kill the broker with SIGPIPE either.
  sigset_t signals;
  sigemptyset(&signals);
  for (int signal_number : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2})
    sigaddset(&signals, signal_number);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::string error;
  auto cluster = mock_cluster::create(*options, error);
  if (!cluster) {
    spdlog::critical("cannot start the mock cluster: {}", error);
    return exit_usage;
  }
  auto bootstraps = cluster->bootstraps();
  std::string topic_list;
  for (const auto& topic : options->topics)
    topic_list += (topic_list.empty() ? "" : ",") + topic.name + ":" +
                  std::to_string(topic.partition_count);
  spdlog::info("{} broker(s) on {}; topic(s):partitions {}, replication {}",
               options->broker_count, bootstraps, topic_list,
               options->replication_factor);
  announce("bootstrap=" + bootstraps);

  serve_signals(*cluster, signals);
  cluster.reset();
  spdlog::info("stopped");
  return 0;
}
