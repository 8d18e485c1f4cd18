#pragma once

// The names of an enumeration are a list beside its declaration, in the
// order of its values: a value's name is looked up in that list, and so is
// a name read from outside (a table, a request), so that no module keeps a
// switch over the values of its own.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <type_traits>

namespace rsv {

/// The names of the enumeration `Enum`, whose values run from 0 without
/// gaps, in that order.
template <class Enum, std::size_t N>
struct enum_names {
  static_assert(std::is_enum_v<Enum>);
  std::array<const char*, N> list;

  /// `fallback` for a value outside the enumeration (a number cast from
  /// outside).
  constexpr const char* name(Enum value,
                             const char* fallback = "unknown") const {
    auto i = static_cast<std::size_t>(value);
    return i < N ? list[i] : fallback;
  }

  constexpr std::optional<Enum> value(std::string_view name) const {
    for (std::size_t i = 0; i < N; ++i)
      if (name == list[i]) return static_cast<Enum>(i);
    return std::nullopt;
  }
};

/// The names of the enumeration whose last value is `Last`: the compiler
/// checks that there is one for each value.
template <auto Last, std::size_t N>
constexpr enum_names<decltype(Last), N>
names_up_to(const char* const (&names)[N]) {
  static_assert(static_cast<std::size_t>(Last) + 1 == N,
                "one name for each value, in the order of the values");
  enum_names<decltype(Last), N> out{};
  for (std::size_t i = 0; i < N; ++i)
    out.list[i] = names[i];
  return out;
}

} // namespace rsv
