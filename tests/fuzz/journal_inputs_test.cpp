// Replays the journal fuzzer's inputs in the normal (gcc) build through the
// same harness as under libFuzzer: the seeds (fuzz/journal_corpus) must
// decode (they are real rows' entries, or, named snapshot_*, the content of
// real section snapshots), so that they keep reaching the entry and hold
// decoders when the format changes; the regressions
// (fuzz/journal_regressions, inputs that once crashed) must break nothing.

#include "journal.hpp"
#include "persistence/journal_codec.hpp"

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <iterator>
#include <string>

namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(fuzz_journal_inputs, every_regression_input_passes) {
  std::size_t inputs = 0;
  for (const auto& file :
       fs::directory_iterator(fs::path{RSV_FUZZ_DIR} / "journal_regressions")) {
    auto broken = rsv::fuzz::decode_journal_bytes(read_all(file.path()));
    EXPECT_TRUE(broken.empty())
        << file.path().filename() << ": " << broken.front();
    ++inputs;
  }
  EXPECT_GE(inputs, 1u) << "fuzz/journal_regressions lost its inputs";
}

TEST(fuzz_journal_inputs, every_seed_decodes_and_breaks_nothing) {
  std::size_t seeds = 0;
  std::size_t snapshots = 0;
  for (const auto& file :
       fs::directory_iterator(fs::path{RSV_FUZZ_DIR} / "journal_corpus")) {
    auto bytes = read_all(file.path());
    auto broken = rsv::fuzz::decode_journal_bytes(bytes);
    EXPECT_TRUE(broken.empty())
        << file.path().filename() << ": " << broken.front();
    // Sealed as the harness seals it, a seed is a row that decodes, or a
    // snapshot if its name says so.
    if (file.path().filename().string().starts_with("snapshot_")) {
      auto body = rsv::fuzz::sealed(rsv::fuzz::snapshot_header, bytes);
      EXPECT_TRUE(rsv::persistence::journal::decode_snapshot(body))
          << file.path().filename();
      ++snapshots;
    } else {
      auto row = rsv::fuzz::sealed(rsv::fuzz::row_header, bytes);
      EXPECT_TRUE(rsv::persistence::journal::decode(row))
          << file.path().filename();
    }
    ++seeds;
  }
  EXPECT_GE(seeds, 5u) << "fuzz/journal_corpus lost its seeds";
  EXPECT_GE(snapshots, 1u) << "fuzz/journal_corpus lost its snapshot seeds";
}

} // namespace
