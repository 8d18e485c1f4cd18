#include "front_end.hpp"

#include "actors/directory.hpp"
#include "core/errc.hpp"
#include "core/ids.hpp"
#include "core/limits.hpp"
#include "http/admission_ticket.hpp"
#include "http/auth.hpp"
#include "http/decode.hpp"
#include "http/json_mapping.hpp"
#include "http/problem.hpp"
#include "http/request_mapping.hpp"
#include "http/router.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

namespace rsv::fuzz {

namespace bhttp = boost::beast::http;
using http::api_request;
using http::api_response;
using http::method;
using nlohmann::json;

namespace {

/// A fixed "now" (2026-06-01T00:00:00Z), so that the seed corpus's token
/// stays valid and every run of an input does the same.
constexpr millis fixed_now_ms = 1'780'272'000'000;

const http::token_signer& signer() {
  static const http::token_signer instance{
      "fuzz-secret-fuzz-secret-fuzz-secret-0123", 24 * 3600};
  return instance;
}

/// Collects broken invariants.
class checker {
public:
  void expect(bool ok, std::string what) {
    if (!ok) broken_.push_back(std::move(what));
  }

  /// What every answer must be: a status a client understands and, for
  /// JSON content types, a body that parses.
  void answer(const api_response& response, const char* where) {
    expect(response.status >= 200 && response.status <= 599,
           std::string{where} + ": status " + std::to_string(response.status));
    if (response.content_type == "application/json" ||
        response.content_type == "application/problem+json")
      expect(json::accept(response.body),
             std::string{where} + ": the body is not JSON: " + response.body);
  }

  /// A problem answer must also name its status and code in the body.
  void problem(const api_response& response, const char* where) {
    answer(response, where);
    auto body = json::parse(response.body, nullptr, false);
    if (body.is_discarded()) return;
    expect(body.is_object() && body.value("status", 0u) == response.status &&
               body.contains("code") && body["code"].is_string(),
           std::string{where} + ": not a problem body: " + response.body);
  }

  std::vector<std::string> take() { return std::move(broken_); }

private:
  std::vector<std::string> broken_;
};

/// A parsed event as the registry would publish it, rendered as the API
/// renders it; the rendering must say what was parsed.
void render_event_def(const event_def& def, checker& check) {
  actors::event_entry entry;
  entry.def = def;
  uint32_t seats = 0;
  for (std::size_t i = 0; i < def.sections.size(); ++i) {
    auto section = std::make_shared<actors::section_entry>();
    section->layout =
        section_layout::make(def.id, def.sections[i], static_cast<uint32_t>(i));
    section->publish({section->layout->seat_count(), 0, 0});
    seats += section->layout->seat_count();
    entry.section_index.emplace(def.sections[i].id, i);
    entry.sections.push_back(std::move(section));
  }
  for (auto& section : entry.def.sections)
    section.rows.clear();
  auto rendered = json::parse(http::render_event(entry), nullptr, false);
  check.expect(!rendered.is_discarded(), "render_event: not JSON");
  if (rendered.is_discarded()) return;
  check.expect(rendered.value("id", std::string{}) == def.id,
               "render_event: another id");
  check.expect(rendered["sections"].size() == def.sections.size(),
               "render_event: another number of sections");
  check.expect(entry.seat_count() == seats, "event_entry: seat count");
  // Seat maps of small sections (a million seats would only slow the
  // fuzzer down): every seat id must map back to its index.
  for (const auto& section : entry.sections) {
    const auto& layout = *section->layout;
    if (layout.seat_count() > 2000) continue;
    seat_map_view map{section->layout,
                      std::vector<seat_status>(layout.seat_count())};
    check.expect(json::accept(http::render_seat_map(map)),
                 "render_seat_map: not JSON");
    for (uint32_t i = 0; i < layout.seat_count(); ++i) {
      auto index = layout.seat_index(layout.seat_id(i));
      check.expect(index && *index == i,
                   "seat " + layout.seat_id(i) + " does not map back");
    }
  }
  actors::directory_snapshot snapshot;
  snapshot.events_ordered.push_back(
      std::make_shared<const actors::event_entry>(std::move(entry)));
  check.expect(json::accept(http::render_events(snapshot)),
               "render_events: not JSON");
}

/// A parsed hold as a section actor would answer it.
void render_hold_body(const http::hold_body& body, checker& check) {
  check.expect(body.seats.empty() != (body.quantity == 0),
               "parse_hold: not exactly one of seats and quantity");
  hold_view hold;
  hold.hold_id = make_hold_id({1, 2});
  hold.event_id = body.event_id;
  hold.section_id = body.section_id;
  hold.seats = body.seats;
  hold.expires_at_ms = fixed_now_ms;
  auto rendered = json::parse(http::render_hold(hold), nullptr, false);
  check.expect(!rendered.is_discarded(), "render_hold: not JSON");
  if (rendered.is_discarded()) return;
  check.expect(rendered["seats"] == json(body.seats),
               "render_hold: other seats");
}

/// Renders what the decode stage accepted as the API would, and checks the
/// ids it decoded from the path.
void render_command(const http::command& command,
                    const std::vector<std::string>& params, checker& check) {
  if (command.event) render_event_def(*command.event, check);
  if (command.hold) render_hold_body(*command.hold, check);
  if (command.hold_id)
    check.expect(!command.hold_id->empty(), "parse_booking: an empty hold id");
  if (command.object)
    check.expect(command.object->is_object(), "a JSON object that is not one");
  if (command.record)
    check.expect(!params.empty() &&
                     (parse_hold_id(params[0]) || parse_booking_id(params[0])),
                 "a record decoded from no id");
  if (command.ticket)
    check.expect(
        http::read_ticket(http::make_ticket(command.ticket->event_id,
                                            command.ticket->customer_id))
            .has_value(),
        "ticket round trip: " + params.at(0));
}

/// What api::handle does with a request before its handler runs: the
/// router, the checks the route's row asks for, and the decode stage (the
/// very functions the API calls).
void route_and_decode(const api_request& req, checker& check) {
  auto match = http::match_route(req.verb, req.target);
  if (match.result == http::route_match::kind::not_found) {
    check.problem(
        http::problem(404, http::problem_code::not_found, "no such route"),
        "404");
    return;
  }
  if (match.result == http::route_match::kind::wrong_method) {
    check.expect(!match.allow.empty(), "405 without Allow");
    check.problem(http::problem(405, http::problem_code::method_not_allowed,
                                "this route allows " + match.allow),
                  "405");
    return;
  }
  const auto& row = *match.def;
  check.expect(row.handler != nullptr, std::string{row.name} + ": no handler");
  // The session token check of the customer routes (api::limited makes it
  // on every rate-limited route too).
  auto token = http::bearer_token(req.authorization);
  if (auto customer = signer().verify(token, fixed_now_ms))
    check.expect(!customer->empty(), "a token verified to no customer");
  if (row.idempotent && req.has_idempotency_key)
    (void)is_valid_idempotency_key(req.idempotency_key);
  // Path parameters: hold and booking ids route by the section number they
  // carry; a well-formed one must survive the round trip.
  for (const auto& param : match.params) {
    if (auto hold = parse_hold_id(param))
      check.expect(parse_hold_id(make_hold_id(*hold)).has_value(),
                   "hold id round trip: " + param);
    if (auto booking = parse_booking_id(param))
      check.expect(parse_booking_id(make_booking_id(*booking)).has_value(),
                   "booking id round trip: " + param);
    (void)is_valid_slug(param);
  }
  auto decoded = http::decode(row, req, match.params, {});
  if (auto* refused = std::get_if<api_response>(&decoded)) {
    check.problem(*refused, row.name);
    check.expect(refused->status >= 400, std::string{row.name} +
                                             ": a refusal answered " +
                                             std::to_string(refused->status));
    return;
  }
  render_command(std::get<http::command>(decoded), match.params, check);
}

} // namespace

std::string valid_token() {
  return signer().issue("cus_fuzz", fixed_now_ms).token;
}

std::vector<std::string> serve_bytes(std::string_view bytes) {
  checker check;
  // As server.cpp reads a connection: the header first (8 KiB at most),
  // then the route's body limit, 413 beyond it, 431 for a long header.
  for (int served = 0; served < 4 && !bytes.empty(); ++served) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(limits::header_bytes_max);
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.eager(false);
    bool header_checked = false;
    boost::system::error_code ec;
    while (!parser.is_done()) {
      // The rest has not arrived: the server would wait for it and close
      // the connection at its read timeout.
      if (bytes.empty()) return check.take();
      auto used =
          parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(used);
      if (ec == bhttp::error::need_more) {
        if (used == 0) return check.take(); // the rest has not arrived
        ec = {};
        continue;
      }
      if (ec == bhttp::error::header_limit) {
        check.problem(http::problem(431, http::problem_code::headers_too_large,
                                    "request headers exceed 8 KiB"),
                      "431");
        return check.take(); // the server closes the connection
      }
      if (ec == bhttp::error::body_limit) {
        check.problem(http::problem(413, http::problem_code::payload_too_large,
                                    "too large"),
                      "413 (chunked)");
        return check.take();
      }
      if (ec) return check.take();        // garbage: the server closes silently
      if (used == 0) return check.take(); // nothing it could take
      if (parser.is_header_done() && !header_checked) {
        header_checked = true;
        const auto& header = parser.get();
        auto limit = http::body_limit_for(header.method(), header.target());
        auto length = parser.content_length();
        if (length && *length > limit) {
          check.problem(http::problem(413,
                                      http::problem_code::payload_too_large,
                                      "too large"),
                        "413");
          return check.take();
        }
        parser.body_limit(limit);
        parser.eager(true);
      }
    }
    auto message = parser.release();
    bool keep_alive = message.keep_alive();
    auto req = http::to_api_request(std::move(message));
    check.expect(req.body.size() <=
                     http::body_limit_for(
                         bhttp::string_to_verb(req.method_text), req.target),
                 "a body above its route's limit got through");
    route_and_decode(req, check);
    if (!keep_alive) break; // the server closes after this answer
  }
  return check.take();
}

} // namespace rsv::fuzz
