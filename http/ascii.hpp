#pragma once

// ASCII case folding for what HTTP compares without case (header values such
// as media types and auth schemes) and for emails: one helper instead of a
// hand-written loop at every use. Locale-free on purpose: std::tolower
// depends on the C locale, and these rules are ASCII by their RFCs.

#include <string>
#include <string_view>

namespace rsv::http {

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string ascii_lowercase(std::string_view text) {
  std::string lower{text};
  for (auto& c : lower)
    c = ascii_lower(c);
  return lower;
}

constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

/// The media type of a Content-Type value, lower-case, without its
/// parameters: "Application/JSON; charset=utf-8" is "application/json".
inline std::string media_type(std::string_view content_type) {
  auto type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ')
    type.remove_suffix(1);
  return ascii_lowercase(type);
}

} // namespace rsv::http
