// Shared by the cli tests: run the real cmkctl binary and capture its
// output; a temporary state directory per test.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "json_io.h"

namespace cmkfs::cli::testing {

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs CMKFS_BINARY_DIR/cli/cmkctl with `args`, stdin from /dev/null, and
// the given extra environment ("NAME=value"). Waits for it, at most
// kCmkctlTimeout (then kills it and fails the test).
// With `interrupt_when`, polls it every few milliseconds while cmkctl runs
// and sends SIGINT once, the first time it returns true.
inline constexpr std::chrono::seconds kCmkctlTimeout{120};
RunResult RunCmkctl(const std::vector<std::string>& args,
                    const std::vector<std::string>& env = {},
                    const std::function<bool()>& interrupt_when = {});

// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Parses stdout as JSON, failing the test when it does not parse.
Json ParseJsonOrFail(const RunResult& r);

// A test fixture with a state dir; Ctl() prepends --state-dir.
class CmkctlTest : public ::testing::Test {
 protected:
  RunResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--state-dir", state_dir()});
    return RunCmkctl(args);
  }
  // Runs and expects exit 0 with empty stderr; returns stdout.
  std::string CtlOk(std::vector<std::string> args);
  std::string state_dir() const { return (dir_.path() / "state").string(); }
  const std::filesystem::path& tmp() const { return dir_.path(); }

 private:
  TempDir dir_;
};

}  // namespace cmkfs::cli::testing
