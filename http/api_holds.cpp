// Holds and bookings: sent to the section actor that owns the seats.

#include "core/limits.hpp"
#include "http/api.hpp"
#include "http/api_context.hpp"
#include "persistence/cluster_store.hpp"

#include <caf/all.hpp>

namespace rsv::http {

namespace {

/// What a section actor needs to write the answer of an idempotent request
/// with the change: `render` is the very function that makes the answer.
template <class View, class Render>
actors::idempotency_capture_ptr<View>
capture_for(const std::shared_ptr<const idempotency_scope>& scope,
            Render render) {
  if (!scope) return nullptr;
  auto capture = std::make_shared<actors::idempotency_capture<View>>();
  capture->key = scope->key;
  capture->fingerprint = scope->fingerprint;
  capture->written = scope->written;
  capture->render = [render](const View& view) {
    auto response = render(view);
    return stored_response{response.status, std::move(response.body),
                           location_of(response)};
  };
  return capture;
}

} // namespace

void api::create_hold(context& ctx) {
  auto& body = ctx.decoded.hold;
  auto event = rt_.dir().find_event(body->event_id);
  auto section = event ? event->find_section(body->section_id) : nullptr;
  if (!section) {
    ctx.done(absent(
        problem(404, problem_code::not_found, "no such event or section"),
        event ? std::nullopt : event_partition(body->event_id)));
    return;
  }
  if (!admitted(ctx, *event)) return;
  if (!section->admit_request()) {
    rt_.deps().metrics->requests_shed.Increment();
    ctx.done(problem(503, problem_code::unavailable,
                     "this section is overloaded; retry shortly"));
    return;
  }
  auto render = [](const hold_view& h) {
    return created(render_hold(h), "/v1/holds/" + h.hold_id);
  };
  actors::hold_request hold{ctx.customer_id,
                            std::move(body->seats),
                            body->quantity,
                            false,
                            answer<hold_view>(ctx, render),
                            capture_for<hold_view>(ctx.idempotency, render)};
  if (event->def.max_seats_per_customer)
    caf::anon_send(rt_.shard_for(ctx.customer_id),
                   actors::reserve_quota_request{
                       event->def.id, *event->def.max_seats_per_customer,
                       section, std::move(hold)});
  else
    caf::anon_send(section->actor(), std::move(hold));
}

namespace {

/// The section that owns a hold or booking id, with one more request counted
/// as queued for it; nullptr, with `not_found` answered, when there is none.
template <class Absent>
std::shared_ptr<actors::section_entry>
owner_of(const actors::directory& dir, const std::optional<record_ref>& ref,
         const respond_fn& done, Absent&& absent) {
  auto section = ref ? dir.find_section(ref->section_no) : nullptr;
  if (!section) {
    done(absent());
    return nullptr;
  }
  section->count_request();
  return section;
}

api_response ok_hold(const hold_view& hold) {
  return json_response(200, render_hold(hold));
}

api_response ok_booking(const booking_view& booking) {
  return json_response(200, render_booking(booking));
}

api_response no_content(const hold_view&) {
  api_response response;
  response.status = 204;
  response.content_type.clear();
  return response;
}

} // namespace

template <class Request, class Render>
void api::send_to_record(context& ctx, caf::error (*missing)(), Render render) {
  const auto& ref = ctx.decoded.record;
  if (auto section = owner_of(rt_.dir(), ref, ctx.done, [&] {
        return absent(problem_from(missing()), record_partition(ref));
      }))
    caf::anon_send(section->actor(),
                   Request{ctx.customer_id, ref->slot,
                           answer<typename Request::view>(ctx, render)});
}

void api::get_hold(context& ctx) {
  send_to_record<actors::get_hold_request>(ctx, no_such_hold, ok_hold);
}

void api::release_hold(context& ctx) {
  send_to_record<actors::release_hold_request>(ctx, no_such_hold, no_content);
}

void api::create_booking(context& ctx) {
  auto ref = parse_hold_id(*ctx.decoded.hold_id);
  auto section = owner_of(rt_.dir(), ref, ctx.done, [&] {
    return absent(problem_from(no_such_hold()), record_partition(ref));
  });
  if (!section) return;
  auto render = [](const booking_view& b) {
    return created(render_booking(b), "/v1/bookings/" + b.booking_id);
  };
  caf::anon_send(
      section->actor(),
      actors::book_request{ctx.customer_id, ref->slot,
                           answer<booking_view>(ctx, render),
                           capture_for<booking_view>(ctx.idempotency, render)});
}

void api::list_bookings(context& ctx) {
  if (config_.cluster_db) {
    // Bookings of events that other nodes serve: PostgreSQL has them all,
    // and a booking answered 2xx is committed there.
    config_.cluster_db->list_bookings(
        ctx.customer_id,
        [done = ctx.done](caf::expected<std::vector<booking_view>> list) {
          if (!list)
            done(problem_from(list.error()));
          else
            done(json_response(200, render_bookings(*list)));
        });
    return;
  }
  caf::anon_send(rt_.shard_for(ctx.customer_id),
                 actors::list_bookings_request{
                     ctx.customer_id,
                     answer<std::vector<booking_view>>(
                         ctx, [](const std::vector<booking_view>& list) {
                           return json_response(200, render_bookings(list));
                         })});
}

void api::get_booking(context& ctx) {
  send_to_record<actors::get_booking_request>(ctx, no_such_booking, ok_booking);
}

void api::cancel_booking(context& ctx) {
  send_to_record<actors::cancel_booking_request>(ctx, no_such_booking,
                                                 ok_booking);
}

} // namespace rsv::http
