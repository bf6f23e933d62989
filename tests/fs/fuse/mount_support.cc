#include "mount_support.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace cmkfs::testing {
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

RunResult RunProgram(const std::vector<std::string>& argv,
                     std::chrono::seconds timeout) {
  RunResult result;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = "pipe failed";
    return result;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  // A detached grandchild may keep the pipes open briefly; the child itself
  // must still be reaped.
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    result.exit_code = -1;
    result.err += "\n[killed after timeout]";
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else {
    result.exit_code = 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  return result;
}

std::set<std::string> ListDir(const stdfs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : stdfs::directory_iterator(dir))
    names.insert(e.path().filename().string());
  return names;
}

stdfs::path CmkfsBinary() {
  return stdfs::path(CMKFS_BINARY_DIR) / "fs" / "daemon" / "cmkfs";
}
stdfs::path CmkctlBinary() {
  return stdfs::path(CMKFS_BINARY_DIR) / "cli" / "cmkctl";
}

bool IsMounted(const stdfs::path& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mnt;
    if (fields >> id >> parent >> devno >> root >> mnt && mnt == dir.string())
      return true;
  }
  return false;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(in, content)) return false;
  size_t paren = content.rfind(')');
  if (paren == std::string::npos || paren + 2 >= content.size()) return false;
  char state = content[paren + 2];
  return state != 'Z' && state != 'X';
}

namespace {

// Points each sanitizer's log_path of the processes started from now on
// under `dir`, keeping the options the test process was started with.
void DirectSanitizerReportsTo(const stdfs::path& dir) {
  static const char* const kVars[][2] = {{"ASAN_OPTIONS", "asan"},
                                         {"UBSAN_OPTIONS", "ubsan"},
                                         {"TSAN_OPTIONS", "tsan"}};
  static std::vector<std::string> original = [] {
    std::vector<std::string> out;
    for (const auto& v : kVars) {
      const char* value = getenv(v[0]);
      out.push_back(value ? value : "");
    }
    return out;
  }();
  for (size_t i = 0; i < std::size(kVars); ++i) {
    std::string value = original[i];
    if (!value.empty()) value += ":";
    value += "log_path=" + (dir / kVars[i][1]).string();
    setenv(kVars[i][0], value.c_str(), 1);
  }
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

void MountTest::SetUp() {
  unsetenv("CMKFS_CONFIG");
  unsetenv("CMKFS_STATE_DIR");
  char tmpl[] = "/tmp/cmkfs-fuse-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  root_ = tmpl;
  state_ = root_ / "state";
  mnt_ = root_ / "mnt";
  stdfs::create_directories(state_);
  stdfs::create_directories(mnt_);
  stdfs::create_directories(root_ / "reports");
  DirectSanitizerReportsTo(root_ / "reports");
  // The detached daemon (a grandchild) is re-parented to this process, so
  // TearDown can read its exit status.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0) << strerror(errno);
  ASSERT_TRUE(stdfs::exists(CmkfsBinary())) << CmkfsBinary();
  ASSERT_TRUE(stdfs::exists(CmkctlBinary())) << CmkctlBinary();
}

void MountTest::TearDown() {
  if (IsMounted(mnt_) || ProcessAlive(daemon_pid_)) {
    if (!StopDaemon(20s)) {
      ADD_FAILURE() << "cmkfs (pid " << daemon_pid_
                    << ") did not stop within 20 s of SIGTERM";
      RunProgram({"/usr/bin/fusermount3", "-u", "-z", mnt_.string()}, 10s);
      if (ProcessAlive(daemon_pid_)) kill(daemon_pid_, SIGKILL);
      WaitDaemonGone(5s);
    }
  }
  if (IsMounted(mnt_))
    RunProgram({"/usr/bin/umount", "-l", mnt_.string()}, 10s);
  CheckDaemonsAndReports();
  if (!root_.empty() && !IsMounted(mnt_)) {
    std::error_code ec;
    stdfs::remove_all(root_, ec);
  }
}

void MountTest::CheckDaemonsAndReports() {
  for (pid_t pid : started_daemons_) {
    int status = 0;
    pid_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    if (got != pid) {
      ADD_FAILURE() << "cmkfs (pid " << pid << ") could not be reaped ("
                    << (got == 0 ? "still running" : strerror(errno)) << ")";
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ADD_FAILURE() << "cmkfs (pid " << pid << ") ended with "
                    << DescribeStatus(status);
    }
  }
  started_daemons_.clear();
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(root_ / "reports", ec)) {
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    ADD_FAILURE() << "sanitizer report " << entry.path().filename() << ":\n"
                  << text.str();
  }
}

RunResult MountTest::Cmkctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CmkctlBinary().string(), "--state-dir",
                                   state_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(argv);
}

std::string MountTest::MustCmkctl(const std::vector<std::string>& args) {
  RunResult r = Cmkctl(args);
  std::string cmd;
  for (const auto& a : args) cmd += a + " ";
  EXPECT_EQ(r.exit_code, 0) << "cmkctl " << cmd << ": " << r.err;
  return r.out;
}

RunResult MountTest::StartDaemon(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {CmkfsBinary().string(), "--state-dir",
                                   state_.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(mnt_.string());
  RunResult r = RunProgram(argv, 60s);
  if (r.exit_code == 0) {
    std::ifstream in(state_ / "cmkfs.pid");
    pid_t pid = -1;
    in >> pid;
    daemon_pid_ = pid;
    if (pid > 0) started_daemons_.push_back(pid);
  }
  return r;
}

void MountTest::MustStartDaemon() {
  RunResult r = StartDaemon();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(IsMounted(mnt_));
  ASSERT_TRUE(ProcessAlive(daemon_pid_));
}

bool MountTest::WaitDaemonGone(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ProcessAlive(daemon_pid_)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

bool MountTest::StopDaemon(std::chrono::seconds timeout) {
  if (ProcessAlive(daemon_pid_)) kill(daemon_pid_, SIGTERM);
  bool gone = WaitDaemonGone(timeout);
  return gone && !IsMounted(mnt_);
}

void MountTest::CreateCustomerKeySetup() {
  MustCmkctl({"vault", "create", "vault1", "--purge-protection"});
  MustCmkctl({"key", "create", "vault1", "key1", "--size", "2048"});
  std::string identity = MustCmkctl(
      {"des", "create", "des1", "--key-id", "cmk://vault1/keys/key1"});
  while (!identity.empty() &&
         (identity.back() == '\n' || identity.back() == ' '))
    identity.pop_back();
  ASSERT_FALSE(identity.empty());
  MustCmkctl({"vault", "set-policy", "vault1", "--object-id", identity,
              "--key-permissions", "get", "wrapKey", "unwrapKey"});
}

std::vector<uint8_t> PatternBlock(const std::string& tag, uint64_t index,
                                  size_t size) {
  std::string unit = tag + "#" + std::to_string(index) + ";";
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i)
    out[i] = static_cast<uint8_t>(unit[i % unit.size()]);
  return out;
}

std::vector<uint8_t> ReadFile(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace cmkfs::testing
