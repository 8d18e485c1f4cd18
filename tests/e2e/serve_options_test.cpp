// The options of `reservations serve` as an operator meets them: a value
// outside an option's names is refused by the command line, and flags that
// need each other refuse to start the node (exit code 2), saying why,
// before anything is started. No database or broker is needed: every case
// stops before one would be reached, except the scheduler's, which serves a
// hold on a memory node under each of its two values.

#include "harness.hpp"

namespace rsv::e2e {
namespace {

bool mentions(const command_result& result, const std::string& text) {
  return result.output.find(text) != std::string::npos;
}

command_result serve(std::vector<std::string> flags) {
  flags.insert(flags.begin(), {server_binary(), "serve"});
  return run_command(std::move(flags));
}

TEST(serve_options, AValueOutsideAnOptionsNamesIsRefused) {
  std::vector<std::pair<std::string, std::string>> options = {
      {"--store", "{memory,postgres}"},
      {"--pg-batch-encoding", "{journal,pipeline}"},
      {"--read-model", "{off,publish,serve}"},
      {"--log-level", "{trace,debug,info,warn,error}"},
      {"--log-format", "{text,json}"},
      {"--actor-scheduler", "{sharing,stealing}"},
  };
  for (const auto& [flag, names] : options) {
    auto refused = serve({flag, "nope"});
    EXPECT_NE(refused.exit_code, 0) << flag << "\n" << refused.output;
    EXPECT_TRUE(mentions(refused, flag + ": nope not in " + names))
        << refused.output;
  }
}

TEST(serve_options, NamedValuesReachTheNode) {
  // JSON lines at level error: the warning of a missing token secret is
  // not written, the refusal is, as JSON.
  auto refused = serve({"--log-format", "json", "--log-level", "error",
                        "--trusted-proxies", "nowhere"});
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(mentions(refused, "\"level\":\"critical\"")) << refused.output;
  EXPECT_TRUE(mentions(refused, "--trusted-proxies nowhere")) << refused.output;
  EXPECT_FALSE(mentions(refused, "no --token-secret")) << refused.output;
}

TEST(serve_options, EitherActorSchedulerServesAHold) {
  for (std::string scheduler : {"sharing", "stealing"}) {
    SCOPED_TRACE(scheduler);
    server_process node{
        {"--actor-scheduler", scheduler, "--actor-threads", "2"}};
    EXPECT_TRUE(node.log().find("2 actor threads " + scheduler) !=
                std::string::npos)
        << node.log();
    http_connection http{node.port()};
    auto buyer = new_customer(http, "scheduler");
    const std::string event = "scheduler-concert"; // a fresh memory node
    create_event(http, node.admin_token(),
                 event_json(event, {section_json("floor", 5000, {{"A", 4}})}));
    auto held = hold_seats(http, buyer, event, "floor", {"A-1", "A-2"});
    ASSERT_EQ(held.status, 201u) << held << node.log();
    EXPECT_EQ(section_counts(http, event, "floor"), (counts{2, 2, 0}));
  }
}

TEST(serve_options, FlagsThatNeedEachOtherRefuseToStart) {
  const std::string secret = "0123456789abcdef0123456789abcdef";
  std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--redis-url", "http://127.0.0.1"}, "--redis-url"},
      {{"--rate-limit-customer", "5"}, "need --redis-url"},
      {{"--kafka-brokers", "127.0.0.1:1"},
       "--kafka-brokers needs --store postgres"},
      {{"--store", "postgres", "--kafka-brokers", "127.0.0.1:1",
        "--kafka-property", "acks"},
       "--kafka-property acks: expected NAME=VALUE"},
      {{"--listen", "8080"}, "--listen 8080: expected HOST:PORT"},
      {{"--token-secret", "short"}, "--token-secret must have at least"},
      {{"--token-secrets-accepted", secret},
       "--token-secrets-accepted needs --token-secret"},
      {{"--shutdown-delay-ms", "5000", "--shutdown-timeout-seconds", "5"},
       "--shutdown-delay-ms (5000) must be below"},
      {{"--admin-token", "short"}, "must have at least 32 characters"},
      {{"--cluster", "--store", "postgres", "--kafka-brokers", "127.0.0.1:1"},
       "--cluster needs --token-secret"},
  };
  for (const auto& [flags, why] : cases) {
    auto refused = serve(flags);
    EXPECT_EQ(refused.exit_code, 2) << flags.front() << "\n" << refused.output;
    EXPECT_TRUE(mentions(refused, why)) << why << "\n" << refused.output;
    EXPECT_FALSE(mentions(refused, "listening on")) << refused.output;
  }
}

} // namespace
} // namespace rsv::e2e
