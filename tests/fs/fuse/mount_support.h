// Test harness for real mounts: runs the cmkfs and cmkctl binaries built in
// this tree against a fresh state directory, and always unmounts in TearDown.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cmkfs::testing {

struct RunResult {
  int exit_code = -1;  // -1: killed after the timeout
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] a path) with stdout/stderr captured; kills it after
// `timeout`.
RunResult RunProgram(const std::vector<std::string>& argv,
                     std::chrono::seconds timeout = std::chrono::seconds(60));

// A zeroed buffer aligned for O_DIRECT (4096 bytes).
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n)
      : size(n), data(static_cast<uint8_t*>(std::aligned_alloc(4096, n))) {
    std::memset(data, 0, n);
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  size_t size;
  uint8_t* data;
};

// The names in `dir`.
std::set<std::string> ListDir(const std::filesystem::path& dir);

std::filesystem::path CmkfsBinary();
std::filesystem::path CmkctlBinary();

bool IsMounted(const std::filesystem::path& dir);
// True if `pid` exists and is not a zombie.
bool ProcessAlive(pid_t pid);

// A temporary state directory and mountpoint; helpers for cmkctl and the
// daemon. TearDown stops the daemon (a daemon that does not stop on SIGTERM
// fails the test, and is killed), unmounts (lazily if needed), and fails the
// test if a daemon started by StartDaemon ended with anything but exit 0 or
// if any process started by the test wrote a sanitizer report (each one's
// log_path points under root_/reports; the test process is the daemon's
// subreaper, so the detached daemon's exit status reaches it).
class MountTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // cmkctl --state-dir STATE ARGS...
  RunResult Cmkctl(const std::vector<std::string>& args);
  // Like Cmkctl, and fails the test unless it exits 0. Returns stdout.
  std::string MustCmkctl(const std::vector<std::string>& args);

  // cmkfs --state-dir STATE [extra] MNT (detaching). Returns its result;
  // on success the mount is up and daemon_pid() is set.
  RunResult StartDaemon(const std::vector<std::string>& extra = {});
  void MustStartDaemon();
  // SIGTERM and wait (up to `timeout`) until the process is gone. Returns
  // true if it exited and the mountpoint is no longer mounted.
  bool StopDaemon(std::chrono::seconds timeout = std::chrono::seconds(20));
  // Waits until the daemon process is gone.
  bool WaitDaemonGone(std::chrono::seconds timeout);

  // Vault "vault1", key "key1" (RSA 2048), DES "des1" granted to its identity.
  void CreateCustomerKeySetup();

  std::filesystem::path Disk(const std::string& name) const {
    return mnt_ / "disks" / name;
  }
  std::filesystem::path Snapshot(const std::string& name) const {
    return mnt_ / "snapshots" / name;
  }
  std::filesystem::path Image(const std::string& name) const {
    return mnt_ / "images" / name;
  }

  std::filesystem::path root_;
  std::filesystem::path state_;
  std::filesystem::path mnt_;
  pid_t daemon_pid_ = -1;

  // TearDown's check (each daemon is checked once): fails the test for each
  // daemon started by StartDaemon that did not exit 0 and each sanitizer
  // report under root_/reports.
  void CheckDaemonsAndReports();

 private:
  std::vector<pid_t> started_daemons_;
};

// Bytes of a recognisable 4 KiB block: `tag` and `index` repeated.
std::vector<uint8_t> PatternBlock(const std::string& tag, uint64_t index,
                                  size_t size = 4096);

// Reads an entire file (through the page cache).
std::vector<uint8_t> ReadFile(const std::filesystem::path& path);

}  // namespace cmkfs::testing
