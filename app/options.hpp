#pragma once

#include "app/config.hpp"

#include <CLI/CLI.hpp>
#include <string>

namespace rsv::app {

/// Adds every flag of `reservations serve` to `serve`, each bound to its
/// field of `config` and to its RSV_* environment variable, in the order
/// `--help` lists them. CLI11 checks each value's range or name; what
/// depends on several flags is checked when the node starts (validate.hpp).
void add_serve_options(CLI::App& serve, serve_config& config);

/// The value in `names` of a name CLI11 has checked against them.
template <class Enum>
Enum value_named(const option_names<Enum>& names, const std::string& name) {
  for (const auto& [entry_name, value] : names)
    if (entry_name == name) return value;
  RSV_ASSERT(false, "an option name CLI11 should have refused");
  return names.front().second;
}

/// An option with a fixed set of values: the command line names one of
/// `names`, `value` receives its enum. `--help` shows the names and the
/// name of `value`'s default.
template <class Enum>
CLI::Option* add_named_option(CLI::App& app, const std::string& flag,
                              Enum& value, const option_names<Enum>& names,
                              const std::string& help) {
  return app
      .add_option_function<std::string>(
          flag,
          [&value, &names](const std::string& name) {
            value = value_named(names, name);
          },
          help)
      ->check(CLI::IsMember(names))
      ->default_str(name_of(names, value));
}

} // namespace rsv::app
