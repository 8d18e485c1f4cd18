#pragma once

// JSON written by hand where it is written for every request or every
// change: building an nlohmann tree for an event's read, or for each outbox
// record on a writer's thread, cost more than everything else on its way
// (docs/benchmarks.md). Strings are escaped as RFC 8259 requires; the text
// is taken to be UTF-8 already (it was, when it was parsed).

#include <string>
#include <string_view>
#include <type_traits>

namespace rsv {

/// Appends `text` as a JSON string: quotes, backslashes and control
/// characters escaped.
void append_json_string(std::string& out, std::string_view text);

/// Writes one JSON object into `out` member by member, with the commas
/// between them; the object closes when the writer goes.
class json_object_writer {
public:
  explicit json_object_writer(std::string& out) : out_(out) { out_ += '{'; }
  ~json_object_writer() { out_ += '}'; }
  json_object_writer(const json_object_writer&) = delete;
  json_object_writer& operator=(const json_object_writer&) = delete;

  /// A string (anything that converts to a string_view) or a number.
  template <class Value>
  json_object_writer& member(std::string_view name, const Value& value) {
    name_next(name);
    if constexpr (std::is_convertible_v<Value, std::string_view>)
      append_json_string(out_, value);
    else
      out_ += std::to_string(value);
    return *this;
  }

  /// A member whose value is JSON text already.
  json_object_writer& raw(std::string_view name, std::string_view json) {
    name_next(name);
    out_ += json;
    return *this;
  }

  /// Starts a member whose value the caller writes to `out` next, as JSON.
  std::string& value_of(std::string_view name) {
    name_next(name);
    return out_;
  }

private:
  void name_next(std::string_view name) {
    if (!first_) out_ += ',';
    first_ = false;
    append_json_string(out_, name);
    out_ += ':';
  }

  std::string& out_;
  bool first_ = true;
};

} // namespace rsv
