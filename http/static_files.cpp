#include "http/static_files.hpp"

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "http/problem.hpp"

#include <array>
#include <fstream>
#include <sodium.h>
#include <sstream>
#include <system_error>

namespace rsv::http {

namespace fs = std::filesystem;

namespace {

/// Vite puts every built script and style sheet under assets/ with a hash
/// of its content in the name, so a browser may keep them for good; the
/// pages that name them (index.html, operator.html) must be revalidated on
/// every load, or a new build would never reach a browser that has one.
constexpr std::string_view immutable_prefix = "/assets/";

std::string etag_of(const std::string& body) {
  unsigned char digest[16];
  crypto_generichash(digest, sizeof(digest),
                     reinterpret_cast<const unsigned char*>(body.data()),
                     body.size(), nullptr, 0);
  char hex[sizeof(digest) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
  return '"' + std::string{hex} + '"';
}

bool hidden(const fs::path& relative) {
  for (const auto& part : relative)
    if (!part.empty() && part.native().front() == '.') return true;
  return false;
}

/// Whether `if_none_match` (a list of ETags, or `*`) names `etag`.
bool matches(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match.empty()) return false;
  if (if_none_match == "*") return true;
  std::size_t start = 0;
  while (start < if_none_match.size()) {
    auto end = if_none_match.find(',', start);
    auto item = if_none_match.substr(
        start, end == std::string_view::npos ? end : end - start);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (item.substr(0, 2) == "W/") item.remove_prefix(2);
    if (item == etag) return true;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return false;
}

} // namespace

std::string content_type_for(std::string_view file_name) {
  struct mapping {
    std::string_view extension;
    const char* type;
  };
  static constexpr std::array types{
      mapping{".html", "text/html; charset=utf-8"},
      mapping{".js", "text/javascript; charset=utf-8"},
      mapping{".mjs", "text/javascript; charset=utf-8"},
      mapping{".css", "text/css; charset=utf-8"},
      mapping{".json", "application/json"},
      mapping{".map", "application/json"},
      mapping{".svg", "image/svg+xml"},
      mapping{".png", "image/png"},
      mapping{".ico", "image/x-icon"},
      mapping{".webp", "image/webp"},
      mapping{".woff2", "font/woff2"},
      mapping{".txt", "text/plain; charset=utf-8"},
      mapping{".webmanifest", "application/manifest+json"},
  };
  auto dot = file_name.rfind('.');
  if (dot != std::string_view::npos) {
    auto extension = file_name.substr(dot);
    for (const auto& known : types)
      if (known.extension == extension) return known.type;
  }
  return "application/octet-stream";
}

caf::expected<std::shared_ptr<const static_files>>
static_files::load(const fs::path& root) {
  auto fail = [&root](const std::string& why) {
    return make_error(errc::validation_failed,
                      "web root " + root.string() + ": " + why);
  };
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return fail("not a directory");
  auto files = std::make_shared<static_files>();
  // Symbolic links are neither followed nor served: what is served is what
  // the build put under the root, nothing it points to.
  fs::recursive_directory_iterator it{root, fs::directory_options::none, ec};
  if (ec) return fail(ec.message());
  for (; it != fs::recursive_directory_iterator{}; it.increment(ec)) {
    if (ec) return fail(ec.message());
    auto relative = it->path().lexically_relative(root);
    if (hidden(relative)) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
    if (files->files_.size() >= limits::web_files_max)
      return fail("more than " + std::to_string(limits::web_files_max) +
                  " files");
    std::ifstream in{it->path(), std::ios::binary};
    std::ostringstream body;
    body << in.rdbuf();
    if (!in && !in.eof()) return fail("cannot read " + relative.string());
    static_file file;
    file.body = std::move(body).str();
    files->bytes_ += file.body.size();
    if (files->bytes_ > limits::web_bytes_max)
      return fail("more than " +
                  std::to_string(limits::web_bytes_max / (1024 * 1024)) +
                  " MiB");
    auto key = "/" + relative.generic_string();
    file.content_type = content_type_for(key);
    file.cache_control = key.rfind(immutable_prefix, 0) == 0
                             ? "public, max-age=31536000, immutable"
                             : "no-cache";
    file.etag = etag_of(file.body);
    files->files_.emplace(std::move(key), std::move(file));
  }
  if (!files->find("/")) return fail("no index.html (is the web build done?)");
  return std::shared_ptr<const static_files>{std::move(files)};
}

const static_file* static_files::find(std::string_view target) const {
  auto path = target.substr(0, target.find('?'));
  path = path.substr(0, path.find('#'));
  if (path.empty() || path.front() != '/') return nullptr;
  auto found = path.back() == '/'
                   ? files_.find(std::string{path} + "index.html")
                   : files_.find(std::string{path});
  return found == files_.end() ? nullptr : &found->second;
}

api_response static_files::serve(std::string_view target,
                                 std::string_view if_none_match) const {
  const auto* file = find(target);
  if (!file) return problem(404, problem_code::not_found, "no such page");
  api_response response;
  response.header("Cache-Control", file->cache_control);
  response.header("ETag", file->etag);
  response.header("X-Content-Type-Options", "nosniff");
  if (file->content_type.rfind("text/html", 0) == 0)
    // The pages use only their own scripts and styles and the API of the
    // same origin: nothing comes from anywhere else, and no other site may
    // frame them.
    response.header("Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; "
                    "base-uri 'none'; form-action 'self'; "
                    "frame-ancestors 'none'");
  if (matches(if_none_match, file->etag)) {
    response.status = 304;
    response.content_type.clear();
    return response;
  }
  response.content_type = file->content_type;
  response.body = file->body;
  return response;
}

} // namespace rsv::http
