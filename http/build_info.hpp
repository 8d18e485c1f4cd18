#pragma once

#include <string_view>

namespace rsv::http {

/// The project's version (CMake's `project(VERSION)`).
std::string_view build_version();

/// The git commit the build was configured from (CMake runs `git rev-parse`
/// at configure time); "unknown" outside a git checkout or without git.
std::string_view build_commit();

} // namespace rsv::http
