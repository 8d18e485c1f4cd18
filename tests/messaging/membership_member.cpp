// rsv-membership-member: one cluster_membership in a process of its own, for
// the test that kills a member with SIGKILL (a crash: no LeaveGroup, no
// revocation) and measures how long the survivors wait for its partitions.
//
//   rsv-membership-member BROKERS CLIENT_ID SESSION_TIMEOUT_MS HEARTBEAT_MS
//
// Protocol on stdout, one line each, flushed: `started` once the membership
// runs, then `owned=P,P,...` (the whole assignment, sorted) after every
// assignment, revocation or loss. The log goes to stderr. SIGTERM or SIGINT
// leave the group cleanly and exit 0; bad arguments exit 2.

#include "messaging/cluster_membership.hpp"

#include <csignal>
#include <cstdio>
#include <mutex>
#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <string>

namespace {

std::mutex stdout_mutex;

void announce_owned(const rsv::messaging::cluster_membership& membership) {
  std::string line = "owned=";
  bool first = true;
  for (auto partition : membership.owned()) {
    line += (first ? "" : ",") + std::to_string(partition);
    first = false;
  }
  std::lock_guard<std::mutex> guard{stdout_mutex};
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("rsv-membership-member");
  spdlog::set_default_logger(logger);
  if (argc != 5) {
    spdlog::critical("usage: rsv-membership-member BROKERS CLIENT_ID "
                     "SESSION_TIMEOUT_MS HEARTBEAT_MS");
    return 2;
  }
  // Taken by sigwait below, before librdkafka's threads inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  rsv::messaging::membership_config config;
  config.brokers = argv[1];
  config.client_id = argv[2];
  try {
    config.session_timeout_ms = std::stoi(argv[3]);
    config.heartbeat_interval_ms = std::stoi(argv[4]);
  } catch (const std::exception&) {
    spdlog::critical("SESSION_TIMEOUT_MS and HEARTBEAT_MS are numbers");
    return 2;
  }
  // The handlers run on the membership's thread after it is constructed.
  rsv::messaging::cluster_membership* self = nullptr;
  auto announce = [&self](std::vector<uint32_t>) { announce_owned(*self); };
  rsv::messaging::cluster_membership membership{
      config, {announce, announce, announce}, nullptr};
  self = &membership;
  membership.start();
  {
    std::lock_guard<std::mutex> guard{stdout_mutex};
    std::fputs("started\n", stdout);
    std::fflush(stdout);
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  membership.stop();
  return 0;
}
