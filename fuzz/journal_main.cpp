// The libFuzzer entry point of the journal decoder (clang
// -fsanitize=fuzzer): every input is one journal row's entries. A broken
// invariant aborts, which libFuzzer reports like a crash.
#include "journal.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  auto broken = rsv::fuzz::decode_journal_bytes(
      std::string_view{reinterpret_cast<const char*>(data), size});
  if (!broken.empty()) {
    for (const auto& line : broken)
      std::fprintf(stderr, "broken invariant: %s\n", line.c_str());
    std::abort();
  }
  return 0;
}
