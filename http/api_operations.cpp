// Operations: health, readiness and metrics, for load balancers and
// operators, and the build's version for the operator.

#include "core/partition.hpp"
#include "http/api.hpp"
#include "http/api_context.hpp"
#include "http/build_info.hpp"

#include <prometheus/text_serializer.h>

namespace rsv::http {

void api::health(context& ctx) {
  auto store_state = rt_.deps().store->health();
  auto kafka =
      config_.kafka_health ? config_.kafka_health() : service_state::disabled;
  auto redis =
      config_.redis_health ? config_.redis_health() : service_state::disabled;
  bool healthy = store_state != service_state::down &&
                 kafka != service_state::down && redis != service_state::down;
  nlohmann::json body = {
      {"status", healthy ? "healthy" : "unhealthy"},
      {"services",
       {{"store", to_string(store_state)},
        {"kafka", to_string(kafka)},
        {"redis", to_string(redis)}}},
  };
  if (auto projection = rt_.deps().store->projection()) {
    // How stale the tables (what operators query) may be: a journal node
    // projects them after the commit (docs/architecture.md, "The journal").
    body["projection"] = {{"backlog_rows", projection->backlog_rows},
                          {"lag_seconds", projection->lag_seconds}};
  }
  if (config_.cluster) {
    // This node's partitions and events, and every member as the owners
    // table says (docs/cluster.md, "Operating").
    auto table = config_.cluster->snapshot();
    auto dir = rt_.dir().snapshot();
    nlohmann::json members = nlohmann::json::object();
    nlohmann::json local = nlohmann::json::array();
    nlohmann::json loading = nlohmann::json::array();
    nlohmann::json epochs = nlohmann::json::array();
    for (uint32_t p = 0; p < table->size(); ++p) {
      const auto& info = (*table)[p];
      epochs.push_back(info.epoch);
      if (info.state == actors::partition_state::local) local.push_back(p);
      if (info.state == actors::partition_state::loading) loading.push_back(p);
      if (!info.owner.empty() && info.state != actors::partition_state::loading)
        members[info.owner].push_back(p);
    }
    nlohmann::json events = nlohmann::json::array();
    for (const auto& event : dir->events_ordered)
      events.push_back(event->def.id);
    auto group = config_.membership_health ? config_.membership_health()
                                           : service_state::disabled;
    body["cluster"] = {{"node", config_.cluster->self()},
                       {"partitions", config_.cluster->partitions()},
                       {"group", to_string(group)},
                       {"owned", std::move(local)},
                       {"loading", std::move(loading)},
                       {"events", std::move(events)},
                       {"members", std::move(members)},
                       {"epochs", std::move(epochs)}};
  }
  ctx.done(json_response(healthy ? 200 : 503, dump(body)));
}

void api::readiness(context& ctx) {
  bool ok = ready_ && rt_.deps().store->health() == service_state::ok;
  if (ok)
    ctx.done(json_response(200, R"({"status":"ready"})"));
  else
    ctx.done(problem(503, problem_code::unavailable,
                     "the node is starting, recovering or draining"));
}

void api::metrics(context& ctx) {
  prometheus::TextSerializer serializer;
  api_response response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = serializer.Serialize(registry_->Collect());
  ctx.done(std::move(response));
}

void api::version(context& ctx) {
  ctx.done(json_response(
      200, dump({{"version", build_version()}, {"commit", build_commit()}})));
}

} // namespace rsv::http
