#pragma once

// The ids tests expect, for every test module. Header-only.

#include "core/partition.hpp"

#include <cstdio>
#include <string>
#include <string_view>

namespace rsv::test_support {

/// What the hold and booking ids of `event_id` end in (core/ids.hpp): an
/// underscore and the hash of the event id in hex.
inline std::string id_hash_suffix(std::string_view event_id) {
  char hex[24];
  std::snprintf(hex, sizeof(hex), "%llx",
                static_cast<unsigned long long>(fnv1a_64(event_id)));
  return "_" + std::string{hex};
}

} // namespace rsv::test_support
