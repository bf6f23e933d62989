// Invariant checks for fuzz targets: a violated invariant is a crash that
// libFuzzer records (with the input that caused it), so the message names
// the invariant and the input size.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond, what)                                                 \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "fuzz invariant violated at %s:%d: %s\n", __FILE__, \
                   __LINE__, what);                                            \
      std::abort();                                                            \
    }                                                                          \
  } while (0)
