#pragma once

#include "core/ids.hpp"
#include "core/model.hpp"
#include "http/admission_ticket.hpp"
#include "http/api_types.hpp"
#include "http/json_mapping.hpp"
#include "http/router.hpp"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace rsv::http {

/// What a request asks for, decoded as its route says (route_def::body and
/// ::path): at most one of the body members is set, at most one of the path
/// members.
struct command {
  std::optional<event_def> event;              // body_kind::event
  std::optional<hold_body> hold;               // body_kind::hold
  std::optional<credentials_body> credentials; // registration or login
  std::optional<std::string> hold_id;          // body_kind::booking
  std::optional<nlohmann::json> object;        // body_kind::json_object
  /// path_kind::hold and ::booking: the id's section and slot; nullopt for
  /// an id that is not one (the handler answers 404 for it, as for one no
  /// section has).
  std::optional<record_ref> record;
  /// path_kind::ticket: whose ticket it is; nullopt when it is not one.
  std::optional<ticket_owner> ticket;
};

struct decode_options {
  /// Whether events may enable a waiting room (the node has Redis).
  bool waiting_rooms = false;
};

/// A command, or the problem answer that refuses the request.
using decoded = std::variant<command, api_response>;

/// The pure stage between routing and a handler, shared by the API and the
/// fuzzer: the Content-Type rule (415 unless application/json, for a route
/// that has a body), JSON parsing (400), the route's body mapping (422 with
/// the field named) and the path parameter's id. No I/O, no clock.
decoded decode(const route_def& route, const api_request& req,
               const std::vector<std::string>& params,
               const decode_options& options);

} // namespace rsv::http
