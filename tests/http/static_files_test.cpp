#include "core/errc.hpp"
#include "core/limits.hpp"
#include "http/static_files.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <sodium.h>

namespace rsv::http {
namespace {

namespace fs = std::filesystem;

std::string header_of(const api_response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers)
    if (key == name) return value;
  return {};
}

/// A web root in a fresh temporary folder, with a secret file beside it
/// that no request may reach.
class static_files_test : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    std::string pattern =
        (fs::temp_directory_path() / "rsv-web-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    base_ = pattern;
    root_ = base_ / "web";
    fs::create_directories(root_ / "assets");
    fs::create_directories(root_ / "docs");
    fs::create_directories(root_ / ".git");
    write(root_ / "index.html", "<!doctype html><title>buy</title>");
    write(root_ / "operator.html", "<!doctype html><title>operate</title>");
    write(root_ / "assets" / "main-1a2b3c.js", "console.log(1)");
    write(root_ / "assets" / "main-1a2b3c.css", "body{}");
    write(root_ / "docs" / "index.html", "<p>docs</p>");
    write(root_ / ".git" / "config", "secret");
    write(root_ / ".env", "secret");
    write(base_ / "secret.txt", "secret");
    fs::create_symlink(base_ / "secret.txt", root_ / "linked.txt");
    fs::create_directory_symlink(base_, root_ / "up");
  }
  void TearDown() override { fs::remove_all(base_); }

  static void write(const fs::path& path, const std::string& text) {
    std::ofstream{path, std::ios::binary} << text;
  }

  std::shared_ptr<const static_files> load() {
    auto files = static_files::load(root_);
    EXPECT_TRUE(files) << (files ? "" : describe(files.error()));
    return files ? *files : nullptr;
  }

  fs::path base_;
  fs::path root_;
};

TEST_F(static_files_test, pages_come_with_their_type_and_cache_rules) {
  auto files = load();
  ASSERT_TRUE(files);
  auto index = files->serve("/", "");
  EXPECT_EQ(index.status, 200u);
  EXPECT_EQ(index.body, "<!doctype html><title>buy</title>");
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(header_of(index, "Cache-Control"), "no-cache");
  EXPECT_NE(header_of(index, "Content-Security-Policy").find("'self'"),
            std::string::npos);
  EXPECT_EQ(files->serve("/index.html?event=x", "").body, index.body);
  EXPECT_EQ(files->serve("/docs/", "").body, "<p>docs</p>");
  EXPECT_EQ(files->serve("/operator.html", "").body,
            "<!doctype html><title>operate</title>");

  auto script = files->serve("/assets/main-1a2b3c.js", "");
  EXPECT_EQ(script.status, 200u);
  EXPECT_EQ(script.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(header_of(script, "Cache-Control"),
            "public, max-age=31536000, immutable");
  EXPECT_EQ(header_of(script, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(files->serve("/assets/main-1a2b3c.css", "").content_type,
            "text/css; charset=utf-8");
}

TEST_F(static_files_test, an_unchanged_page_is_answered_304) {
  auto files = load();
  ASSERT_TRUE(files);
  auto first = files->serve("/", "");
  auto etag = header_of(first, "ETag");
  ASSERT_EQ(etag.size(), 34u); // a quoted 128-bit hash
  auto again = files->serve("/", "\"other\", " + etag);
  EXPECT_EQ(again.status, 304u);
  EXPECT_TRUE(again.body.empty());
  EXPECT_EQ(files->serve("/", "W/" + etag).status, 304u);
  EXPECT_EQ(files->serve("/", "\"other\"").status, 200u);
  EXPECT_NE(header_of(files->serve("/operator.html", ""), "ETag"), etag);
}

TEST_F(static_files_test, missing_pages_are_404_problems) {
  auto files = load();
  ASSERT_TRUE(files);
  auto missing = files->serve("/nothing.html", "");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.content_type, "application/problem+json");
  EXPECT_EQ(files->serve("/assets/", "").status, 404u);
  EXPECT_EQ(files->serve("", "").status, 404u);
  EXPECT_EQ(files->serve("index.html", "").status, 404u);
}

TEST_F(static_files_test, nothing_outside_the_root_or_hidden_is_served) {
  auto files = load();
  ASSERT_TRUE(files);
  for (const auto* target :
       {"/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt",
        "/..%2fsecret.txt", "//secret.txt", "/linked.txt", "/up/secret.txt",
        "/up/web/index.html", "/.env", "/.git/config", "/assets/../index.html",
        "/./index.html", "/index.html/", "/INDEX.HTML"}) {
    auto response = files->serve(target, "");
    EXPECT_EQ(response.status, 404u) << target;
    EXPECT_EQ(response.body.find("secret"), std::string::npos) << target;
  }
  // What was loaded: the five pages and assets, no link, no dot file.
  EXPECT_EQ(files->file_count(), 5u);
}

TEST_F(static_files_test, a_root_without_index_or_over_the_bounds_fails) {
  EXPECT_FALSE(static_files::load(base_ / "nothing"));
  fs::remove(root_ / "index.html");
  auto no_index = static_files::load(root_);
  ASSERT_FALSE(no_index);
  EXPECT_NE(describe(no_index.error()).find("index.html"), std::string::npos);
  write(root_ / "index.html", "<!doctype html>");
  for (std::size_t i = 0; i < limits::web_files_max; ++i)
    write(root_ / "assets" / ("chunk-" + std::to_string(i) + ".js"), "1");
  auto too_many = static_files::load(root_);
  ASSERT_FALSE(too_many);
  EXPECT_NE(describe(too_many.error()).find("files"), std::string::npos);
}

TEST(static_file_types, by_extension) {
  EXPECT_EQ(content_type_for("/a.svg"), "image/svg+xml");
  EXPECT_EQ(content_type_for("/favicon.ico"), "image/x-icon");
  EXPECT_EQ(content_type_for("/x.json"), "application/json");
  EXPECT_EQ(content_type_for("/x.woff2"), "font/woff2");
  EXPECT_EQ(content_type_for("/noextension"), "application/octet-stream");
  EXPECT_EQ(content_type_for("/x.html.bak"), "application/octet-stream");
}

} // namespace
} // namespace rsv::http
