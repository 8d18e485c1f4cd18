// The libFuzzer entry point of every fuzz target (clang -fsanitize=fuzzer).
// CMake names the target's header (RSV_FUZZ_HEADER) and its check
// (RSV_FUZZ_CHECK): a function from one input's bytes to the invariants
// they broke. A broken invariant aborts, which libFuzzer reports like a
// crash and saves as crash-<sha1>.
#include RSV_FUZZ_HEADER

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  auto broken = RSV_FUZZ_CHECK(
      std::string_view{reinterpret_cast<const char*>(data), size});
  if (!broken.empty()) {
    for (const auto& line : broken)
      std::fprintf(stderr, "broken invariant: %s\n", line.c_str());
    std::abort();
  }
  return 0;
}
