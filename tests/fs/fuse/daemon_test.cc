// The cmkfs daemon's lifecycle as an operator sees it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "mount_support.h"

namespace cmkfs::testing {
namespace {
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1 << 20;

class DaemonTest : public MountTest {};

void WriteAt(const stdfs::path& file, uint64_t offset,
             const std::vector<uint8_t>& data) {
  int fd = open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << file << ": " << strerror(errno);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), offset),
            static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

std::vector<uint8_t> ReadAt(const stdfs::path& file, uint64_t offset,
                            size_t n) {
  std::vector<uint8_t> out(n);
  int fd = open(file.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << file << ": " << strerror(errno);
  if (fd < 0) return {};
  EXPECT_EQ(pread(fd, out.data(), n, offset), static_cast<ssize_t>(n));
  close(fd);
  return out;
}

TEST_F(DaemonTest, VersionAndHelp) {
  RunResult v = RunProgram({CmkfsBinary().string(), "--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out.rfind("cmkfs ", 0), 0u) << v.out;
  RunResult h = RunProgram({CmkfsBinary().string(), "--help"});
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("MOUNTPOINT"), std::string::npos);
  RunResult none = RunProgram({CmkfsBinary().string()});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.err.find("MOUNTPOINT"), std::string::npos) << none.err;
}

TEST_F(DaemonTest, EmbeddedDefaultsNeedNoConfigFile) {
  // A fresh state directory, no config file, nothing else: mounts.
  MustStartDaemon();
  EXPECT_TRUE(stdfs::is_directory(mnt_ / "disks"));
  EXPECT_TRUE(ProcessAlive(daemon_pid_));
}

TEST_F(DaemonTest, BadMountpointsFailWithOneLine) {
  RunResult missing =
      RunProgram({CmkfsBinary().string(), "--state-dir", state_.string(),
                  (root_ / "absent").string()});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos)
      << missing.err;
  std::ofstream(root_ / "file") << "x";
  RunResult file = RunProgram({CmkfsBinary().string(), "--state-dir",
                               state_.string(), (root_ / "file").string()});
  EXPECT_NE(file.exit_code, 0);
  EXPECT_NE(file.err.find("not a directory"), std::string::npos) << file.err;
  MustStartDaemon();
  stdfs::path other_state = root_ / "other";
  RunResult mounted = RunProgram({CmkfsBinary().string(), "--state-dir",
                                  other_state.string(), mnt_.string()});
  EXPECT_NE(mounted.exit_code, 0);
  EXPECT_NE(mounted.err.find("already a mount point"), std::string::npos)
      << mounted.err;
}

TEST_F(DaemonTest, SecondDaemonOnTheSameStateDirFails) {
  MustStartDaemon();
  stdfs::path mnt2 = root_ / "mnt2";
  stdfs::create_directories(mnt2);
  RunResult second = RunProgram(
      {CmkfsBinary().string(), "--state-dir", state_.string(), mnt2.string()});
  EXPECT_NE(second.exit_code, 0);
  std::string expected = "state directory " + state_.string() +
                         " is in use by another cmkfs (pid " +
                         std::to_string(daemon_pid_) + ")";
  EXPECT_NE(second.err.find(expected), std::string::npos) << second.err;
  EXPECT_FALSE(IsMounted(mnt2));
  EXPECT_TRUE(IsMounted(mnt_));
}

TEST_F(DaemonTest, ControlSocketIsPrivateAndRemovedAtExit) {
  MustStartDaemon();
  struct stat st;
  stdfs::path sock = state_ / "control.sock";
  ASSERT_EQ(stat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // cmkctl talks to the live daemon (the engine is locked by it).
  MustCmkctl({"disk", "create", "via-socket", "--size", "4M"});
  EXPECT_TRUE(stdfs::exists(Disk("via-socket")));
  ASSERT_TRUE(StopDaemon());
  EXPECT_FALSE(stdfs::exists(sock));
  EXPECT_FALSE(stdfs::exists(state_ / "cmkfs.pid"));
}

TEST_F(DaemonTest, SigtermUnmountsAndDataSurvivesRestart) {
  MustCmkctl({"disk", "create", "d", "--size", "16M"});
  MustStartDaemon();
  std::vector<uint8_t> data = PatternBlock("persist", 7, 3 * 4096 + 123);
  WriteAt(Disk("d"), 5 * kMiB + 17, data);
  // Also a write that is not fsynced: SIGTERM must still flush it.
  std::vector<uint8_t> unsynced = PatternBlock("unsynced", 8, 8192);
  {
    int fd = open(Disk("d").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, unsynced.data(), 8192, 9 * kMiB), 8192);
    close(fd);
  }
  const pid_t first = daemon_pid_;
  ASSERT_TRUE(StopDaemon());
  EXPECT_FALSE(ProcessAlive(first));
  EXPECT_FALSE(stdfs::exists(Disk("d")));  // nothing mounted any more
  MustStartDaemon();
  EXPECT_NE(daemon_pid_, first);
  EXPECT_EQ(ReadAt(Disk("d"), 5 * kMiB + 17, data.size()), data);
  EXPECT_EQ(ReadAt(Disk("d"), 9 * kMiB, 8192), unsynced);
}

TEST_F(DaemonTest, FusermountUnmountEndsTheDaemon) {
  MustStartDaemon();
  RunResult u = RunProgram({"/usr/bin/fusermount3", "-u", mnt_.string()});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_TRUE(WaitDaemonGone(20s));
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_FALSE(stdfs::exists(state_ / "control.sock"));
  // The state directory is free again.
  MustCmkctl({"disk", "list"});
}

TEST_F(DaemonTest, ForegroundModeStopsOnSigint) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDOUT_FILENO);
    dup2(devnull, STDERR_FILENO);
    execl(CmkfsBinary().c_str(), "cmkfs", "--foreground", "--state-dir",
          state_.c_str(), mnt_.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  daemon_pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!IsMounted(mnt_) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(IsMounted(mnt_));
  // Wait until requests are served, then interrupt.
  EXPECT_TRUE(stdfs::is_directory(mnt_ / "disks"));
  kill(pid, SIGINT);
  int status = 0;
  pid_t waited = -1;
  deadline = std::chrono::steady_clock::now() + 20s;
  while ((waited = waitpid(pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_EQ(waited, pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(IsMounted(mnt_));
}

TEST_F(DaemonTest, PlaintextNeverReachesTheBackingFiles) {
  CreateCustomerKeySetup();
  MustCmkctl({"disk", "create", "secret", "--size", "8M", "--des", "des1"});
  MustCmkctl({"disk", "create", "plain", "--size", "8M"});
  MustStartDaemon();
  const std::string canary = "CMKFS-CANARY-7f3a9c-PLAINTEXT-MUST-NOT-LEAK";
  std::vector<uint8_t> block(4096);
  for (size_t i = 0; i < block.size(); ++i)
    block[i] = static_cast<uint8_t>(canary[i % canary.size()]);
  std::vector<uint8_t> many;
  for (int i = 0; i < 64; ++i)
    many.insert(many.end(), block.begin(), block.end());
  WriteAt(Disk("secret"), 0, many);
  WriteAt(Disk("plain"), kMiB, many);
  ASSERT_TRUE(StopDaemon());
  uint64_t scanned = 0;
  for (const auto& entry : stdfs::recursive_directory_iterator(state_)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    scanned += content.size();
    EXPECT_EQ(content.find(canary.substr(0, 24)), std::string::npos)
        << "plaintext found in " << entry.path();
  }
  // The ciphertext is there: at least the written bytes were stored.
  EXPECT_GE(scanned, 2 * many.size());
}

}  // namespace
}  // namespace cmkfs::testing
