// Invariant checks for fuzz targets: a violated invariant is a crash that
// libFuzzer records (with the input that caused it), so the message names
// the invariant and the input size.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

#define FUZZ_CHECK(cond, what)                                                 \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "fuzz invariant violated at %s:%d: %s\n", __FILE__, \
                   __LINE__, what);                                            \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

// What the decoder made of the input, for the replay driver (replay_main.cc):
// a committed seed says in its name what it was made for (NAME.ok: its
// decoder accepts it; NAME.bad: its decoder refuses it), and the replay
// fails when the target reports otherwise, so a seed that no longer reaches
// the code it was written for is caught. libFuzzer builds ignore it.
enum class FuzzOutcome { kNone, kAccepted, kRejected };
inline FuzzOutcome g_fuzz_outcome = FuzzOutcome::kNone;
inline void FuzzReport(bool accepted) {
  g_fuzz_outcome = accepted ? FuzzOutcome::kAccepted : FuzzOutcome::kRejected;
}

// For an LMDB record decoder: a failure must be Corruption, and a decoded
// record must re-encode canonically (Encode(Decode(Encode(Decode(x)))) ==
// Encode(Decode(x))).
template <typename Decode, typename Encode>
void RoundTrip(std::string_view value, Decode decode, Encode encode) {
  auto first = decode(value);
  FuzzReport(first.ok());
  if (!first.ok()) {
    FUZZ_CHECK(first.status().kind() == cmkfs::ErrorKind::kCorruption,
               "decoder failed with a kind other than Corruption");
    return;
  }
  std::string encoded = encode(*first);
  auto second = decode(encoded);
  FUZZ_CHECK(second.ok(), "re-encoded record does not decode");
  FUZZ_CHECK(encode(*second) == encoded, "encoding is not canonical");
}
