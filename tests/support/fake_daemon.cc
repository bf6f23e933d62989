// fake_daemon MODE PIDFILE: detaches like cmkfs (fork, setsid, fork; the
// start command exits 0 once the daemon is up), writes PIDFILE, and on
// SIGTERM ends as MODE says:
//   clean  exits 0
//   leak   leaks a block, exits 0 (LeakSanitizer reports it at exit)
//   ub     overflows a signed int (UBSan aborts it)
//   fail   exits 3 (no sanitizer involved)
// Test-only: the deliberate faults that tests/support/daemon_reports_test.sh
// expects the harness teardown to report.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fake_daemon clean|leak|ub|fail PIDFILE\n");
    return 2;
  }
  const std::string mode = argv[1];
  if (mode != "clean" && mode != "leak" && mode != "ub" && mode != "fail") {
    std::fprintf(
        stderr,
        "fake_daemon: unknown mode '%s'; accepted: clean, leak, ub, fail\n",
        argv[1]);
    return 2;
  }
  int ready[2];
  if (::pipe(ready) != 0) return 1;
  pid_t child = ::fork();
  if (child < 0) return 1;
  if (child > 0) {
    ::close(ready[1]);
    char c = 0;
    return ::read(ready[0], &c, 1) == 1 ? 0 : 1;
  }
  ::close(ready[0]);
  ::setsid();
  if (::fork() != 0) _exit(0);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  {
    std::ofstream out(argv[2], std::ios::trunc);
    out << ::getpid() << "\n";
  }
  int null_fd = ::open("/dev/null", O_RDWR);
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(null_fd, STDOUT_FILENO);
  ::dup2(null_fd, STDERR_FILENO);
  (void)!::write(ready[1], "1", 1);
  ::close(ready[1]);
  int sig = 0;
  sigwait(&sigs, &sig);
  if (mode == "leak") {
    char* volatile block = new char[4096];
    std::memset(block, 'x', 4096);
    block = nullptr;
    return 0;
  }
  if (mode == "ub") {
    volatile int big = INT_MAX;
    volatile int one = 1;
    int sum = big + one;
    return sum == 0 ? 4 : 5;
  }
  if (mode == "fail") return 3;
  return 0;
}
