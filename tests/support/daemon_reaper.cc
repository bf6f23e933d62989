// cmkfs_test_reaper STATUS_DIR COMMAND [ARGS...]
//
// Runs a detaching start command (cmkfs ... MOUNTPOINT) and records the exit
// status of the daemon it leaves behind, which a shell harness cannot wait
// for: the daemon is a grandchild that outlives its parent.
//
// Exits with COMMAND's exit status once COMMAND has returned. A background
// copy, made a child subreaper before COMMAND starts, inherits every process
// COMMAND leaves behind (the detached daemon), reaps each one and writes
// STATUS_DIR/exit.PID ("NAME exit N" or "NAME signal N"), then
// STATUS_DIR/done once none is left. Test-only; tests/daemon_reports.sh
// reads the files at teardown.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace {

void WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

std::string ProcessName(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name.empty() ? "?" : name;
}

std::string Describe(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 125;
}

// The background copy: runs COMMAND, hands its exit code to the caller
// through `report_fd`, then reaps what COMMAND left behind.
[[noreturn]] void Keep(const std::string& dir, char** command, int report_fd) {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    std::fprintf(stderr, "cmkfs_test_reaper: prctl: %s\n",
                 std::strerror(errno));
    _exit(125);
  }
  pid_t child = ::fork();
  if (child < 0) _exit(125);
  if (child == 0) {
    ::close(report_fd);
    ::execvp(command[0], command);
    std::fprintf(stderr, "cmkfs_test_reaper: cannot run %s: %s\n", command[0],
                 std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = ExitCodeOf(status);
  (void)!::write(report_fd, &code, sizeof(code));
  ::close(report_fd);
  // Hold none of the caller's pipes open (ctest waits for them to close),
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(null_fd, STDERR_FILENO);
    if (null_fd > STDERR_FILENO) ::close(null_fd);
  }
  // Nor any other descriptor the caller had open (a file on the mount).
  ::close_range(STDERR_FILENO + 1, ~0U, 0);
  if (::chdir("/") != 0) _exit(125);
  for (;;) {
    siginfo_t info{};
    // Peek first (WNOWAIT) so that /proc still names the process.
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: nothing left
    }
    const pid_t pid = info.si_pid;
    const std::string name = ProcessName(pid);
    if (::waitpid(pid, &status, 0) < 0) continue;
    WriteFileAtomically(dir + "/exit." + std::to_string(pid),
                        name + " " + Describe(status));
  }
  WriteFileAtomically(dir + "/done", "done");
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: cmkfs_test_reaper STATUS_DIR COMMAND [ARGS...]\n");
    return 2;
  }
  const std::string dir = argv[1];
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("cmkfs_test_reaper: pipe");
    return 125;
  }
  pid_t keeper = ::fork();
  if (keeper < 0) {
    std::perror("cmkfs_test_reaper: fork");
    return 125;
  }
  if (keeper == 0) {
    ::close(fds[0]);
    Keep(dir, argv + 2, fds[1]);
  }
  ::close(fds[1]);
  int code = 125;
  ssize_t got;
  do {
    got = ::read(fds[0], &code, sizeof(code));
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof(code))) {
    std::fprintf(stderr, "cmkfs_test_reaper: lost the command's exit status\n");
    return 125;
  }
  return code;
}
