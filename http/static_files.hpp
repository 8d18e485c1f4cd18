#pragma once

#include "http/api_types.hpp"

#include <caf/expected.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace rsv::http {

/// One file of the web pages, ready to send.
struct static_file {
  std::string body;
  std::string content_type;
  std::string cache_control;
  std::string etag; // strong, quoted: a hash of the body
};

/// The built web pages (web/, `vite build`), read into memory once at start
/// and immutable afterwards, so any I/O thread may serve them without a lock
/// and without touching the disk.
///
/// Only files found under the root when it was loaded can be served: a
/// request path is a key into that table, never a path handed to the file
/// system, so `..`, encoded dots or symbolic links cannot reach outside it.
/// Symbolic links and dot files under the root are not loaded at all.
class static_files {
public:
  /// Reads every regular file under `root`; fails when `root` is not a
  /// directory, has no index.html, or passes the bounds in core/limits.hpp.
  static caf::expected<std::shared_ptr<const static_files>>
  load(const std::filesystem::path& root);

  /// The file a GET of `target` (path, optional query) names: `/` and paths
  /// ending in `/` mean their index.html. nullptr when there is none.
  const static_file* find(std::string_view target) const;

  /// Answers a GET of `target`: 200 with the file, 304 when
  /// `if_none_match` names its current ETag, 404 problem when there is none.
  api_response serve(std::string_view target,
                     std::string_view if_none_match) const;

  std::size_t file_count() const { return files_.size(); }
  std::size_t byte_count() const { return bytes_; }

private:
  std::unordered_map<std::string, static_file> files_;
  std::size_t bytes_ = 0;
};

/// Content-Type by file name extension (application/octet-stream when
/// unknown); text types say UTF-8.
std::string content_type_for(std::string_view file_name);

} // namespace rsv::http
