// Driver for builds without libFuzzer (gcc, or clang without CMKFS_FUZZ):
// runs a fuzz target once on every file of the given files or directories,
// so the committed corpora are regression tests in every build.
//
// Each seed's name says what it was made for (fuzz_check.h): NAME.ok must be
// accepted by the decoder its first byte selects, NAME.bad refused. A seed
// whose decoder now answers otherwise, or without such a name, fails the
// replay: a stale seed (say, a record format changed and the seed is now
// refused as Corruption at the first field) no longer passes silently.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const char* OutcomeName(FuzzOutcome o) {
  switch (o) {
    case FuzzOutcome::kAccepted:
      return "accepted";
    case FuzzOutcome::kRejected:
      return "refused";
    case FuzzOutcome::kNone:
      break;
  }
  return "not decoded at all";
}

bool RunFile(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  FuzzOutcome want;
  if (ext == ".ok") {
    want = FuzzOutcome::kAccepted;
  } else if (ext == ".bad") {
    want = FuzzOutcome::kRejected;
  } else {
    std::fprintf(stderr,
                 "FAIL: seed %s does not say what it is for: name it "
                 "NAME.ok (its decoder accepts it) or NAME.bad (refuses it)\n",
                 path.c_str());
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return false;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  g_fuzz_outcome = FuzzOutcome::kNone;
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  if (g_fuzz_outcome != want) {
    std::fprintf(stderr,
                 "FAIL: seed %s was made to be %s by its decoder, but it was "
                 "%s: regenerate it (fuzz_seed_gen) or fix the decoder\n",
                 path.c_str(), OutcomeName(want), OutcomeName(g_fuzz_outcome));
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  size_t runs = 0;
  size_t failed = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (!e.is_regular_file()) continue;
        if (!RunFile(e.path())) ++failed;
        ++runs;
      }
    } else {
      if (!RunFile(p)) ++failed;
      ++runs;
    }
  }
  if (runs == 0) {
    std::fprintf(stderr, "no inputs found\n");
    return 1;
  }
  if (failed > 0) {
    std::fprintf(stderr, "FAIL: %zu of %zu inputs\n", failed, runs);
    return 1;
  }
  std::printf("replayed %zu inputs, each decoded as its name says\n", runs);
  return 0;
}
