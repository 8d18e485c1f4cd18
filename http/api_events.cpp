// Events, their seat maps and sales figures, and their waiting rooms.

#include "core/limits.hpp"
#include "http/admission_ticket.hpp"
#include "http/api.hpp"
#include "http/api_context.hpp"
#include "persistence/cluster_store.hpp"

#include <caf/all.hpp>

namespace rsv::http {

void api::list_events(context& ctx) {
  if (!config_.cluster_db) {
    ctx.done(json_response(200, render_events(*rt_.dir().snapshot())));
    return;
  }
  // Each node has only its own events in memory: the list (with counts as
  // of the last commits) comes from PostgreSQL.
  config_.cluster_db->list_events(
      [done = ctx.done](caf::expected<std::vector<event_summary>> events) {
        if (!events)
          done(problem_from(events.error()));
        else
          done(json_response(200, render_events(*events)));
      });
}

void api::create_event(context& ctx) {
  auto& def = ctx.decoded.event;
  caf::anon_send(
      rt_.registry(),
      actors::create_event_request{
          std::move(*def),
          answer<std::shared_ptr<const actors::event_entry>>(
              ctx, [](const std::shared_ptr<const actors::event_entry>& e) {
                return created(render_event(*e), "/v1/events/" + e->def.id);
              })});
}

std::shared_ptr<const actors::event_entry> api::event_of_route(context& ctx) {
  auto event = rt_.dir().find_event(ctx.match.params[0]);
  if (!event)
    ctx.done(absent(problem(404, problem_code::not_found, "no such event"),
                    event_partition(ctx.match.params[0])));
  return event;
}

void api::get_event(context& ctx) {
  auto event = event_of_route(ctx);
  if (!event) return;
  if (!config_.reads_from_read_model) {
    ctx.done(json_response(200, render_event(*event)));
    return;
  }
  std::vector<std::string> ids;
  ids.reserve(event->sections.size());
  for (const auto& section : event->sections)
    ids.push_back(section->layout->section_id);
  config_.read_model->read_counts(
      event->def.id, ids,
      [event, done = ctx.done, resume = ctx.req.resume](
          caf::expected<std::vector<seat_counts>> counts) {
        // Without the read model's copy, the directory's counts (what the
        // sections published here) answer. Rendered on the I/O thread.
        auto render = [event, done, counts = std::move(counts)] {
          done(json_response(
              200, render_event(*event, counts ? &*counts : nullptr)));
        };
        on_io_thread(resume, std::move(render));
      });
}

void api::get_seats(context& ctx) {
  auto event = rt_.dir().find_event(ctx.match.params[0]);
  auto section = event ? event->find_section(ctx.match.params[1]) : nullptr;
  if (!section) {
    ctx.done(absent(
        problem(404, problem_code::not_found, "no such event or section"),
        event_partition(ctx.match.params[0])));
    return;
  }
  // Rendered off the actor, once per version (http/seat_maps.hpp).
  auto from_actor = [this, section,
                     gzip = ctx.req.accepts_gzip](respond_fn done) {
    seat_maps_.get(section, gzip, std::move(done));
  };
  if (!config_.reads_from_read_model) {
    from_actor(ctx.done);
    return;
  }
  config_.read_model->read_seats(
      event->def.id, section->layout->section_id, section->layout->seat_count(),
      [section, from_actor, done = ctx.done, resume = ctx.req.resume](
          caf::expected<messaging::section_availability> seats) {
        if (!seats) {
          from_actor(done);
          return;
        }
        // Rendering a large section is work: not on the Redis thread.
        auto render = [section, done,
                       statuses = std::move(seats->statuses)]() mutable {
          done(json_response(200, render_seat_map(seat_map_view{
                                      section->layout, std::move(statuses)})));
        };
        on_io_thread(resume, std::move(render));
      });
}

void api::get_stats(context& ctx) {
  auto event = event_of_route(ctx);
  if (!event) return;
  ctx.done(json_response(200, render_stats(*event)));
}

namespace {

api_response no_redis() {
  auto response = problem(503, problem_code::unavailable,
                          "the waiting room needs Redis, which this node "
                          "does not have configured");
  response.header("Retry-After", "1");
  return response;
}

} // namespace

void api::queue_join(context& ctx) {
  auto event = rt_.dir().find_event(ctx.match.params[0]);
  if (!event || !has_waiting_room(*event)) {
    ctx.done(
        absent(problem(404, problem_code::not_found,
                       "no such event with an enabled waiting room"),
               event ? std::nullopt : event_partition(ctx.match.params[0])));
    return;
  }
  if (!config_.waiting_room) {
    ctx.done(no_redis());
    return;
  }
  auto ticket = make_ticket(event->def.id, ctx.customer_id);
  config_.waiting_room->join(
      event->def.id, ctx.customer_id,
      [done = ctx.done,
       ticket](caf::expected<messaging::queue_standing> standing) {
        if (!standing) {
          done(problem_from(standing.error()));
          return;
        }
        // An admitted customer who joins again is at position 0, as the
        // ticket shows it.
        auto position =
            standing->what == messaging::queue_standing::kind::waiting
                ? standing->position
                : 0;
        done(created(dump({{"ticket", ticket}, {"position", position}}),
                     "/v1/queue/" + ticket));
      });
}

void api::queue_ticket(context& ctx) {
  const auto& named = ctx.decoded.ticket;
  auto event = named && named->customer_id == ctx.customer_id
                   ? rt_.dir().find_event(named->event_id)
                   : nullptr;
  if (!event || !has_waiting_room(*event)) {
    ctx.done(absent(problem(404, problem_code::not_found, "no such ticket"),
                    named && !event ? event_partition(named->event_id)
                                    : std::nullopt));
    return;
  }
  if (!config_.waiting_room) {
    ctx.done(no_redis());
    return;
  }
  auto ticket = ctx.match.params[0];
  auto ttl_ms = config_.admission_ttl_seconds * 1000;
  config_.waiting_room->poll(
      event->def.id, ctx.customer_id,
      [this, done = ctx.done, ticket, ttl_ms, event_id = event->def.id,
       customer_id =
           ctx.customer_id](caf::expected<messaging::queue_standing> standing) {
        if (!standing) {
          done(problem_from(standing.error()));
          return;
        }
        switch (standing->what) {
        case messaging::queue_standing::kind::absent:
          done(problem(404, problem_code::not_found,
                       "no such ticket: not in the queue, or its admission "
                       "is past its time (join again)"));
          return;
        case messaging::queue_standing::kind::waiting:
          done(json_response(200, dump({{"ticket", ticket},
                                        {"position", standing->position},
                                        {"admitted", false}})));
          return;
        case messaging::queue_standing::kind::admitted: {
          auto expires_at_ms = standing->admitted_at_ms + ttl_ms;
          done(json_response(
              200,
              dump({{"ticket", ticket},
                    {"position", 0},
                    {"admitted", true},
                    {"admission_token",
                     admissions_.issue(event_id, customer_id, expires_at_ms)},
                    {"expires_at", format_rfc3339(expires_at_ms)}})));
          return;
        }
        }
      });
}
} // namespace rsv::http
