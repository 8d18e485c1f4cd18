#pragma once

#include <cstdio>
#include <cstdlib>

/// Programmer errors crash loudly with context, in release builds too.
#define RSV_ASSERT(condition, message)                                         \
  do {                                                                         \
    if (!(condition)) {                                                        \
      std::fprintf(stderr, "%s:%d: assertion failed: %s (%s)\n", __FILE__,     \
                   __LINE__, #condition, message);                             \
      std::abort();                                                            \
    }                                                                          \
  } while (false)
