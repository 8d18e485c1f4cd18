#pragma once

#include "http/api_types.hpp"

#include <caf/error.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace rsv::http {

/// Problem codes of the front end itself, beyond the domain's errc.
namespace problem_code {
constexpr const char* invalid_json = "invalid_json";
constexpr const char* unsupported_media_type = "unsupported_media_type";
constexpr const char* payload_too_large = "payload_too_large";
constexpr const char* headers_too_large = "request_header_fields_too_large";
constexpr const char* method_not_allowed = "method_not_allowed";
constexpr const char* unauthorized = "unauthorized";
constexpr const char* idempotency_key_reused = "idempotency_key_reused";
constexpr const char* idempotency_key_in_use = "idempotency_key_in_use";
constexpr const char* admission_required = "admission_required";
constexpr const char* rate_limited = "rate_limited";
constexpr const char* not_found = "not_found";
constexpr const char* validation_failed = "validation_failed";
constexpr const char* unavailable = "unavailable";
} // namespace problem_code

/// An RFC 9457 problem answer. `extra` members are merged into the body.
api_response problem(unsigned status, std::string_view code, std::string detail,
                     nlohmann::json extra = nlohmann::json::object());

/// The one mapping from domain errors to HTTP: status, code and extras
/// (`unavailable`, `unknown`, `booking_id`), with Retry-After on 503.
api_response problem_from(const caf::error& err);

/// Serialises JSON the same way everywhere: compact, invalid UTF-8 replaced.
std::string dump(const nlohmann::json& value);

} // namespace rsv::http
