// Replays the fuzzer's inputs in the normal (gcc) build: every file of
// fuzz/regressions (inputs that once crashed or broke an invariant, kept
// after the fix) and of fuzz/corpus (the seed requests) goes through the
// same harness as under libFuzzer, and must break nothing.

#include "front_end.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <iterator>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_in(const std::string& folder) {
  std::vector<fs::path> files;
  for (const auto& entry :
       fs::directory_iterator(fs::path{RSV_FUZZ_DIR} / folder))
    if (entry.is_regular_file() && entry.path().filename() != "README.md")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string read_all(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void replay(const std::string& folder, std::size_t at_least) {
  auto files = inputs_in(folder);
  EXPECT_GE(files.size(), at_least) << "fuzz/" << folder << " lost its inputs";
  for (const auto& file : files) {
    auto broken = rsv::fuzz::serve_bytes(read_all(file));
    EXPECT_TRUE(broken.empty()) << file.filename() << ": " << broken.front();
  }
}

TEST(fuzz_inputs, every_regression_input_passes) {
  replay("regressions", 0);
}

TEST(fuzz_inputs, every_seed_request_passes) {
  replay("corpus", 20);
}

// The seeds are what the fuzzer mutates: they must reach the deep parts
// (a token the harness accepts, bodies the mappings accept).
TEST(fuzz_inputs, the_seed_token_is_the_harness_token) {
  auto seed = read_all(fs::path{RSV_FUZZ_DIR} / "corpus" / "hold_seats.http");
  EXPECT_NE(seed.find("Bearer " + rsv::fuzz::valid_token()), std::string::npos)
      << "regenerate the seed tokens: " << rsv::fuzz::valid_token();
}

} // namespace
