#include "core/ids.hpp"

#include <array>
#include <cstdio>
#include <sodium.h>

namespace rsv {

namespace {

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_upper_alnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::optional<uint32_t> parse_hex_u32(std::string_view text) {
  if (text.empty() || text.size() > 8) return std::nullopt;
  uint32_t value = 0;
  for (char c : text) {
    uint32_t digit;
    if (c >= '0' && c <= '9')
      digit = static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      digit = static_cast<uint32_t>(c - 'a' + 10);
    else
      return std::nullopt;
    value = value * 16 + digit;
  }
  return value;
}

std::optional<uint64_t> parse_hex_u64(std::string_view text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    auto digit = parse_hex_u32(std::string_view{&c, 1});
    if (!digit) return std::nullopt;
    value = value * 16 + *digit;
  }
  return value;
}

std::string make_record_id(std::string_view prefix, record_ref ref) {
  char buf[64];
  if (ref.event_hash == 0)
    std::snprintf(buf, sizeof(buf), "%.*s_%x_%x",
                  static_cast<int>(prefix.size()), prefix.data(),
                  ref.section_no, ref.slot);
  else
    std::snprintf(buf, sizeof(buf), "%.*s_%x_%x_%llx",
                  static_cast<int>(prefix.size()), prefix.data(),
                  ref.section_no, ref.slot,
                  static_cast<unsigned long long>(ref.event_hash));
  return buf;
}

std::optional<record_ref> parse_record_id(std::string_view prefix,
                                          std::string_view id) {
  if (id.size() < prefix.size() + 4 || id.substr(0, prefix.size()) != prefix ||
      id[prefix.size()] != '_')
    return std::nullopt;
  auto rest = id.substr(prefix.size() + 1);
  auto sep = rest.find('_');
  if (sep == std::string_view::npos) return std::nullopt;
  auto section = parse_hex_u32(rest.substr(0, sep));
  rest = rest.substr(sep + 1);
  auto hash_sep = rest.find('_');
  auto slot = parse_hex_u32(rest.substr(0, hash_sep));
  std::optional<uint64_t> hash = uint64_t{0};
  if (hash_sep != std::string_view::npos)
    hash = parse_hex_u64(rest.substr(hash_sep + 1));
  if (!section || !slot || !hash) return std::nullopt;
  // Reject non-canonical spellings (leading zeros) so one record has one id.
  record_ref ref{*section, *slot, *hash};
  if (make_record_id(prefix, ref) != id) return std::nullopt;
  return ref;
}

// Howard Hinnant's days_from_civil / civil_from_days.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool is_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr std::array<unsigned, 12> days{31, 28, 31, 30, 31, 30,
                                                 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

std::optional<unsigned> digits(std::string_view text, std::size_t pos,
                               std::size_t count) {
  if (pos + count > text.size()) return std::nullopt;
  unsigned value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(text[i] - '0');
  }
  return value;
}

} // namespace

bool is_valid_slug(std::string_view id) {
  if (id.empty() || id.size() > 64 || !is_lower_alnum(id[0])) return false;
  for (char c : id)
    if (!is_lower_alnum(c) && c != '-') return false;
  return true;
}

bool is_valid_row_label(std::string_view label) {
  if (label.empty() || label.size() > 4) return false;
  for (char c : label)
    if (!is_upper_alnum(c)) return false;
  return true;
}

std::optional<seat_ref> parse_seat_id(std::string_view seat_id) {
  auto dash = seat_id.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto label = seat_id.substr(0, dash);
  auto number = seat_id.substr(dash + 1);
  if (!is_valid_row_label(label) || number.empty() || number.size() > 7 ||
      number[0] == '0')
    return std::nullopt;
  uint32_t value = 0;
  for (char c : number) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  return seat_ref{label, value};
}

bool is_valid_idempotency_key(std::string_view key) {
  if (key.empty() || key.size() > 255) return false;
  for (char c : key)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

std::string make_hold_id(record_ref ref) {
  return make_record_id("hld", ref);
}

std::string make_booking_id(record_ref ref) {
  return make_record_id("bkg", ref);
}

std::optional<record_ref> parse_hold_id(std::string_view id) {
  return parse_record_id("hld", id);
}

std::optional<record_ref> parse_booking_id(std::string_view id) {
  return parse_record_id("bkg", id);
}

std::string make_random_id(std::string_view prefix) {
  std::array<unsigned char, 8> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  std::string out{prefix};
  out += '_';
  static constexpr char hex[] = "0123456789abcdef";
  for (auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 0xf];
  }
  return out;
}

std::string format_rfc3339(int64_t unix_ms) {
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  auto ms = static_cast<unsigned>(unix_ms - secs * 1000);
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  auto sod = static_cast<unsigned>(secs - days * 86400);
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  char buf[96];
  if (ms == 0)
    std::snprintf(buf, sizeof(buf), "%04lld-%02u-%02uT%02u:%02u:%02uZ",
                  static_cast<long long>(y), m, d, sod / 3600, sod / 60 % 60,
                  sod % 60);
  else
    std::snprintf(buf, sizeof(buf), "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ",
                  static_cast<long long>(y), m, d, sod / 3600, sod / 60 % 60,
                  sod % 60, ms);
  return buf;
}

std::optional<int64_t> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  auto year = digits(text, 0, 4);
  auto month = digits(text, 5, 2);
  auto day = digits(text, 8, 2);
  auto hour = digits(text, 11, 2);
  auto minute = digits(text, 14, 2);
  auto second = digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second ||
      text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' ||
      text[16] != ':')
    return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 ||
      *day > days_in_month(*year, *month) || *hour > 23 || *minute > 59 ||
      *second > 59)
    return std::nullopt;
  std::size_t pos = 19;
  int64_t ms = 0;
  if (text[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    int64_t scale = 100;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      ms += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start || pos - start > 9) return std::nullopt;
  }
  if (pos >= text.size()) return std::nullopt;
  int64_t offset_minutes = 0;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    auto oh = digits(text, pos + 1, 2);
    auto om = digits(text, pos + 4, 2);
    if (!oh || !om || pos + 6 > text.size() || text[pos + 3] != ':' ||
        *oh > 23 || *om > 59)
      return std::nullopt;
    // Signed arithmetic: the digits are unsigned, and a negative offset
    // multiplied in unsigned became a date thousands of years away.
    auto magnitude = static_cast<int64_t>(*oh) * 60 + static_cast<int64_t>(*om);
    offset_minutes = text[pos] == '+' ? magnitude : -magnitude;
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  int64_t days = days_from_civil(*year, *month, *day);
  int64_t secs = days * 86400 + static_cast<int64_t>(*hour) * 3600 +
                 static_cast<int64_t>(*minute) * 60 +
                 static_cast<int64_t>(*second) - offset_minutes * 60;
  return secs * 1000 + ms;
}

} // namespace rsv
