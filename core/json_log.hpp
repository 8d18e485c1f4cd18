#pragma once

#include <memory>
#include <spdlog/formatter.h>

namespace rsv {

/// The formatter of `--log-format json`: one JSON object a line, with
/// `time` (UTC, milliseconds), `level`, `thread` and `msg`. The message is
/// escaped as JSON (quotes, backslashes, newlines and control characters,
/// invalid UTF-8 replaced), so that what libraries say (PostgreSQL's
/// errors quote names; librdkafka's span lines) never breaks a line.
std::unique_ptr<spdlog::formatter> make_json_log_formatter();

} // namespace rsv
