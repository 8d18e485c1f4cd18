#include "http/problem.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"

#include <vector>

namespace rsv::http {

namespace {

const char* title_of(std::string_view code) {
  static const std::pair<const char*, const char*> titles[] = {
      {"invalid_json", "Request body is not valid JSON"},
      {"unsupported_media_type", "Request body must be application/json"},
      {"payload_too_large", "Request body is too large"},
      {"request_header_fields_too_large", "Request headers are too large"},
      {"method_not_allowed", "Method not allowed"},
      {"unauthorized", "Authentication required"},
      {"idempotency_key_reused", "Idempotency key reused with another request"},
      {"idempotency_key_in_use",
       "A request with this idempotency key is running"},
      {"admission_required", "Admission to the waiting room required"},
      {"rate_limited", "Too many requests"},
      {"not_found", "Not found"},
      {"validation_failed", "Validation failed"},
      {"unavailable", "Service unavailable"},
      {"seats_unavailable", "Seats are not available"},
      {"insufficient_seats", "Not enough free seats"},
      {"unknown_seat", "Unknown seat"},
      {"limit_exceeded", "Seat limit per customer exceeded"},
      {"hold_booked", "Hold already booked"},
      {"hold_expired", "Hold expired or released"},
      {"event_exists", "Event already exists"},
      {"email_taken", "Email already registered"},
      {"invalid_credentials", "Invalid email or password"},
      {"not_owner", "Misdirected request"},
  };
  for (const auto& [name, title] : titles)
    if (code == name) return title;
  return "Error";
}

/// `text` cut to at most `chars` UTF-8 characters (whole ones), with "..."
/// appended when anything was cut.
std::string truncated(std::string text, std::size_t chars) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (seen++ == chars) {
      text.resize(i);
      text += "...";
      return text;
    }
  }
  return text;
}

/// Every string in `value` (recursively) cut to problem_echo_chars_max.
void truncate_echoes(nlohmann::json& value) {
  if (value.is_string()) {
    auto& text = value.get_ref<std::string&>();
    if (text.size() > limits::problem_echo_chars_max)
      text = truncated(std::move(text), limits::problem_echo_chars_max);
  } else if (value.is_structured()) {
    for (auto& item : value)
      truncate_echoes(item);
  }
}

} // namespace

std::string dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

api_response problem(unsigned status, std::string_view code, std::string detail,
                     nlohmann::json extra) {
  nlohmann::json body = {
      {"type", "urn:rsv:problem:" + std::string{code}},
      {"title", title_of(code)},
      {"status", status},
      {"detail",
       truncated(std::move(detail), limits::problem_detail_chars_max)},
      {"code", std::string{code}},
  };
  truncate_echoes(extra);
  for (auto& [key, value] : extra.items())
    body[key] = value;
  api_response response;
  response.status = status;
  response.content_type = "application/problem+json";
  response.body = dump(body);
  if (status == 503) response.header("Retry-After", "1");
  if (status == 401) response.header("WWW-Authenticate", "Bearer");
  return response;
}

api_response problem_from(const caf::error& err) {
  const auto& context = err.context();
  auto detail_or = [&](std::string fallback) {
    if (context.match_elements<std::string>())
      return context.get_as<std::string>(0);
    return fallback;
  };
  auto seats = [&] {
    if (context.match_elements<std::vector<std::string>>())
      return context.get_as<std::vector<std::string>>(0);
    return std::vector<std::string>{};
  };
  switch (code_of(err)) {
  case errc::none:
    break;
  case errc::not_found:
    return problem(404, "not_found", detail_or("no such resource"));
  case errc::seats_unavailable:
    return problem(409, "seats_unavailable",
                   "some of the requested seats are not free",
                   {{"unavailable", seats()}});
  case errc::insufficient_seats:
    return problem(409, "insufficient_seats",
                   "fewer free seats than the requested quantity");
  case errc::unknown_seat:
    return problem(422, "unknown_seat",
                   "some of the requested seats do not exist in the section",
                   {{"unknown", seats()}});
  case errc::limit_exceeded:
    return problem(422, "limit_exceeded",
                   detail_or("the per-customer seat limit would be passed"));
  case errc::hold_booked: {
    auto booking_id = detail_or("");
    return problem(409, "hold_booked", "the hold was already booked",
                   {{"booking_id", booking_id}});
  }
  case errc::hold_expired:
    return problem(410, "hold_expired", "the hold expired or was released");
  case errc::event_exists:
    return problem(409, "event_exists", "an event with this id exists");
  case errc::email_taken:
    return problem(409, "email_taken", "this email is already registered");
  case errc::invalid_credentials:
    return problem(401, "invalid_credentials", "wrong email or password");
  case errc::validation_failed:
    return problem(422, "validation_failed", detail_or("invalid request"));
  case errc::not_owner:
    return problem(421, "not_owner",
                   "this node does not own the event; ask its owner");
  case errc::unavailable:
  case errc::overloaded:
  case errc::fenced:
    return problem(503, "unavailable",
                   "the service cannot answer now; retry with the same "
                   "Idempotency-Key to learn whether the request took effect");
  }
  return problem(500, "internal", "unexpected error");
}

} // namespace rsv::http
