#include "app/components.hpp"
#include "app/config.hpp"
#include "app/validate.hpp"
#include "core/json_log.hpp"

#include <chrono>
#include <csignal>
#include <ctime>
#include <pthread.h>
#include <sodium.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <string>

namespace rsv::app {

namespace {

using steady = std::chrono::steady_clock;

void setup_logging(const serve_config& cfg) {
  auto logger = spdlog::stderr_color_mt("rsv");
  if (cfg.log_format == log_style::json)
    logger->set_formatter(make_json_log_formatter());
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v",
                        spdlog::pattern_time_type::utc);
  logger->set_level(cfg.log_level);
  spdlog::set_default_logger(logger);
}

/// SIGTERM and SIGINT, blocked in the calling thread and so in every thread
/// it starts after: they are taken by sigwait on the main thread only.
sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return signals;
}

/// Waits until `until` or until one of `signals` comes, whichever is first.
void wait_unless_signalled(const sigset_t& signals, steady::time_point until) {
  while (steady::now() < until) {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
        until - steady::now());
    timespec wait{static_cast<time_t>(left.count() / 1'000'000'000),
                  static_cast<long>(left.count() % 1'000'000'000)};
    if (sigtimedwait(&signals, nullptr, &wait) > 0) return;
  }
}

/// The exit code of a stop, and its last log line: what was not finished
/// within the deadline, if anything.
int report_stop(const serve_config& cfg, int64_t took_ms,
                std::size_t unanswered,
                const messaging::kafka_relay::stop_report& relayed,
                bool relays) {
  if (unanswered == 0 && relayed.flushed) {
    spdlog::info("stopped after {} ms: every request answered, every change "
                 "committed{}",
                 took_ms, relays ? " and relayed to Kafka" : "");
    return exit_code::ok;
  }
  std::string left;
  if (unanswered > 0)
    left +=
        std::to_string(unanswered) + " requests in progress were not answered";
  if (!relayed.flushed) {
    if (!left.empty()) left += "; ";
    left += relayed.rows_left >= 0
                ? std::to_string(relayed.rows_left) +
                      " outbox rows were not relayed to Kafka"
                : std::string{"the outbox could not be read"};
    left += " (they stay in the outbox: the next start relays them)";
  }
  spdlog::error("stopped after {} ms, past the shutdown deadline of {} s: {}",
                took_ms, cfg.shutdown_timeout_seconds, left);
  return exit_code::failed;
}

/// Waits for SIGTERM or SIGINT, then stops the node within the shutdown
/// deadline (docs/operations.md, "Shutdown"): /ready fails, the node keeps
/// serving for the drain delay, the listener closes, the requests in
/// progress are answered, and the stack stops in its order. The drain
/// delay, the requests, the last commits and the relay share one deadline,
/// so that the process is gone before the orchestrator's own stop timeout
/// sends SIGKILL.
int serve_until_signalled(const serve_config& cfg, server_stack& stack,
                          const sigset_t& signals) {
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  auto stop_began = steady::now();
  auto until = stop_began + std::chrono::seconds(cfg.shutdown_timeout_seconds);
  auto remaining = [&until] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        until - steady::now()));
  };
  spdlog::info("signal {}: draining (at most {} s); /ready answers 503",
               signal_number, cfg.shutdown_timeout_seconds);
  stack.set_ready(false);
  if (cfg.shutdown_delay_ms > 0) {
    // Still serving as before while load balancers see /ready fail. A
    // second signal ends the wait.
    spdlog::info("serving {} ms more before the listener closes",
                 cfg.shutdown_delay_ms);
    wait_unless_signalled(
        signals, stop_began + std::chrono::milliseconds(cfg.shutdown_delay_ms));
  }
  auto unanswered = stack.drain(remaining());
  auto relayed = stack.stop(remaining);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                  steady::now() - stop_began)
                  .count();
  return report_stop(cfg, took, unanswered, relayed, stack.relays());
}

} // namespace

int serve(const serve_config& cfg) {
  setup_logging(cfg);
  if (sodium_init() < 0) {
    spdlog::critical("libsodium failed to initialise");
    return exit_code::failed;
  }
  auto checked = check_config(cfg);
  if (!checked) return exit_code::refused;
  if (cfg.store != store_kind::postgres)
    spdlog::warn("STORE IS MEMORY: NOTHING IS DURABLE. Every hold and "
                 "booking is lost when this process ends.");
  // Before any thread starts, so that every thread inherits the mask.
  auto signals = block_stop_signals();
  server_stack stack{cfg, *checked};
  if (auto code = stack.start(); code != exit_code::ok) return code;
  return serve_until_signalled(cfg, stack, signals);
}

} // namespace rsv::app
