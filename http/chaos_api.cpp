// The chaos facility's admin routes (--chaos; docs/operations.md, "Chaos"):
// an extension outside the contract, for operators and the chaos suite.
// Without --chaos they are not in the route table: 404 like any unknown
// path (never 405).

#include "core/limits.hpp"
#include "core/supervised.hpp"
#include "http/api.hpp"
#include "http/api_context.hpp"
#include "http/json_mapping.hpp"
#include "http/problem.hpp"

#include <spdlog/spdlog.h>
#include <vector>

namespace rsv::http {

namespace {

api_response chaos_answer(unsigned status, const nlohmann::json& body) {
  api_response response;
  response.status = status;
  response.body = dump(body);
  return response;
}

/// An integer member of `body` within [low, high], `fallback` when absent;
/// nullopt (and why in `why`) when it is there but not such an integer.
std::optional<int64_t> bounded(const nlohmann::json& body, const char* name,
                               int64_t low, int64_t high, int64_t fallback,
                               std::string& why) {
  auto it = body.find(name);
  if (it == body.end()) return fallback;
  if (it->is_number_integer()) {
    auto value = it->get<int64_t>();
    if (value >= low && value <= high) return value;
  }
  why = std::string{name} + ": must be an integer from " + std::to_string(low) +
        " to " + std::to_string(high);
  return std::nullopt;
}

/// The first member of `body` not in `known`, as a reason; empty when every
/// one is known. A misspelt fault would otherwise be a silent no-op.
std::string unknown_member(const nlohmann::json& body,
                           const std::vector<const char*>& known) {
  for (const auto& [name, value] : body.items()) {
    bool found = false;
    for (const char* k : known)
      found = found || name == k;
    if (!found) {
      std::string why = name + ": unknown member; expected";
      const char* separator = " ";
      for (const char* k : known) {
        why += separator;
        why += k;
        separator = ", ";
      }
      return why;
    }
  }
  return {};
}

/// Crashes to come: 0 to limits::chaos_crashes_max, `fault`'s count when
/// absent; nullopt (and why) otherwise.
std::optional<int> crash_count(const nlohmann::json& body, const char* name,
                               const crash_fault& fault, std::string& why) {
  auto value = bounded(body, name, 0, limits::chaos_crashes_max,
                       fault.crashes.load(), why);
  if (!value) return std::nullopt;
  return static_cast<int>(*value);
}

/// A member of a chaos request that sets a thread's crashes to come.
struct crash_member {
  const char* name;
  crash_fault& fault;
};

/// The counts of `members`, in their order, when the body names no other
/// member and every count is allowed; nullopt (and why) otherwise.
std::optional<std::vector<int>> crash_counts(const nlohmann::json& body,
                                             std::vector<crash_member> members,
                                             std::string& why) {
  std::vector<const char*> names;
  for (const auto& member : members)
    names.push_back(member.name);
  why = unknown_member(body, names);
  if (!why.empty()) return std::nullopt;
  std::vector<int> counts;
  for (const auto& member : members) {
    auto count = crash_count(body, member.name, member.fault, why);
    if (!count) return std::nullopt;
    counts.push_back(*count);
  }
  return counts;
}

/// A chaos request this node cannot carry out: `why` says what is missing.
api_response unsupported(const std::string& why) {
  return problem(409, "chaos_unsupported", why);
}

/// `threads` when the service they belong to runs on this node, else
/// nullptr with 409 answered, `missing` saying how to start it.
template <class Threads>
Threads* running(const request_context& ctx, Threads* threads, bool service,
                 const std::string& missing) {
  if (threads != nullptr && service) return threads;
  ctx.done(unsupported(missing));
  return nullptr;
}

api_response invalid(const std::string& why) {
  return problem(422, problem_code::validation_failed, why);
}

} // namespace

void api::chaos_state(context& ctx) {
  nlohmann::json body{{"random_kills", rt_.chaos_killing()}};
  if (auto* faults = rt_.deps().store->faults())
    body["store"] = {
        {"commit_delay_ms", faults->commit_delay_ms.load()},
        {"commit_failure_percent", faults->commit_failure_percent.load()},
        {"writer_crashes", faults->writer_crashes.load()}};
  else
    body["store"] = nullptr;
  // The relay and the Redis threads: null when the node does not run them.
  const auto* threads = config_.chaos_threads.get();
  body["relay"] = nullptr;
  body["redis"] = nullptr;
  if (threads && config_.kafka_health)
    body["relay"] = {{"crashes", threads->relay.crashes.load()}};
  if (threads && config_.redis_health) {
    body["redis"] = {
        {"connection_crashes", threads->redis_connection.crashes.load()},
        {"read_model_crashes", nullptr},
        {"waiting_room_crashes", threads->waiting_room.crashes.load()}};
    if (config_.read_model)
      body["redis"]["read_model_crashes"] = threads->read_model.crashes.load();
  }
  ctx.done(chaos_answer(200, body));
}

void api::chaos_clear(context& ctx) {
  rt_.chaos_stop();
  if (auto* faults = rt_.deps().store->faults()) {
    faults->commit_delay_ms = 0;
    faults->commit_failure_percent = 0;
    faults->writer_crashes = 0;
  }
  if (auto* threads = config_.chaos_threads.get())
    for (auto* fault : {&threads->relay, &threads->redis_connection,
                        &threads->read_model, &threads->waiting_room})
      fault->crashes = 0;
  spdlog::warn("chaos: every fault cleared");
  chaos_state(ctx);
}

void api::chaos_kill_section(context& ctx) {
  // A JSON object, as its row says (router.cpp).
  const auto& json = ctx.decoded.object;
  auto text = [&](const char* name) {
    auto it = json->find(name);
    return it != json->end() && it->is_string() ? it->get<std::string>()
                                                : std::string{};
  };
  auto event_id = text("event_id");
  auto section_id = text("section_id");
  if (event_id.empty() || section_id.empty()) {
    ctx.done(problem(422, problem_code::validation_failed,
                     "event_id and section_id: required strings"));
    return;
  }
  auto event = rt_.dir().find_event(event_id);
  auto section = event ? event->find_section(section_id) : nullptr;
  if (!section) {
    ctx.done(problem(404, problem_code::not_found, "no such event or section"));
    return;
  }
  bool killed = actors::kill_section(*section, *rt_.deps().metrics);
  spdlog::warn("chaos: killed the actor of section {} of event {}", section_id,
               event_id);
  ctx.done(chaos_answer(202, {{"event_id", event_id},
                              {"section_id", section_id},
                              {"killed", killed}}));
}

void api::chaos_kill_random(context& ctx) {
  // A JSON object, as its row says (router.cpp).
  const auto& json = ctx.decoded.object;
  std::string why;
  auto interval =
      bounded(*json, "interval_ms", limits::chaos_kill_interval_ms_min,
              limits::chaos_duration_ms_max, 100, why);
  auto duration = interval ? bounded(*json, "duration_ms", 1,
                                     limits::chaos_duration_ms_max, 30'000, why)
                           : std::nullopt;
  if (!duration) {
    ctx.done(invalid(why));
    return;
  }
  rt_.chaos_kill_random(*interval, *duration);
  spdlog::warn("chaos: killing a random section actor every {} ms for {} ms",
               *interval, *duration);
  ctx.done(chaos_answer(
      202, {{"interval_ms", *interval}, {"duration_ms", *duration}}));
}

void api::chaos_store(context& ctx) {
  // A JSON object, as its row says (router.cpp).
  const auto& json = ctx.decoded.object;
  auto* faults = rt_.deps().store->faults();
  if (faults == nullptr) {
    ctx.done(unsupported(std::string{"the "} + rt_.deps().store->name() +
                         " store has no writer to inject faults into; use "
                         "--store postgres"));
    return;
  }
  std::string why;
  auto delay =
      bounded(*json, "commit_delay_ms", 0, limits::chaos_commit_delay_ms_max,
              faults->commit_delay_ms.load(), why);
  auto failures = delay ? bounded(*json, "commit_failure_percent", 0, 100,
                                  faults->commit_failure_percent.load(), why)
                        : std::nullopt;
  auto crashes =
      failures ? bounded(*json, "writer_crashes", 0, limits::chaos_crashes_max,
                         faults->writer_crashes.load(), why)
               : std::nullopt;
  if (!crashes) {
    ctx.done(invalid(why));
    return;
  }
  faults->commit_delay_ms = *delay;
  faults->commit_failure_percent = static_cast<int>(*failures);
  faults->writer_crashes = static_cast<int>(*crashes);
  spdlog::warn("chaos: store commits delayed {} ms, {}% failing, {} writer "
               "crashes to come",
               *delay, *failures, *crashes);
  chaos_state(ctx);
}

void api::chaos_relay(context& ctx) {
  auto* threads = running(ctx, config_.chaos_threads.get(),
                          static_cast<bool>(config_.kafka_health),
                          "this node runs no Kafka relay; start it with "
                          "--kafka-brokers");
  if (threads == nullptr) return;
  // A JSON object, as its row says (router.cpp).
  const auto& json = ctx.decoded.object;
  std::string why;
  auto counts = crash_counts(*json, {{"crashes", threads->relay}}, why);
  if (!counts) {
    ctx.done(invalid(why));
    return;
  }
  threads->relay.crashes = counts->at(0);
  spdlog::warn("chaos: {} relay crashes to come", counts->at(0));
  chaos_state(ctx);
}

void api::chaos_redis(context& ctx) {
  auto* threads = running(ctx, config_.chaos_threads.get(),
                          static_cast<bool>(config_.redis_health),
                          "this node has no Redis threads; start it with "
                          "--redis-url");
  if (threads == nullptr) return;
  // A JSON object, as its row says (router.cpp).
  const auto& json = ctx.decoded.object;
  std::string why;
  auto counts = crash_counts(*json,
                             {{"connection_crashes", threads->redis_connection},
                              {"read_model_crashes", threads->read_model},
                              {"waiting_room_crashes", threads->waiting_room}},
                             why);
  if (!counts) {
    ctx.done(invalid(why));
    return;
  }
  int connection = counts->at(0);
  int read_model = counts->at(1);
  int waiting_room = counts->at(2);
  if (read_model > 0 && !config_.read_model) {
    ctx.done(unsupported("this node runs no read model (--read-model off)"));
    return;
  }
  threads->redis_connection.crashes = connection;
  threads->read_model.crashes = read_model;
  threads->waiting_room.crashes = waiting_room;
  spdlog::warn("chaos: Redis crashes to come: {} of a connection thread, {} "
               "of the read model, {} of the admission thread",
               connection, read_model, waiting_room);
  chaos_state(ctx);
}

} // namespace rsv::http
