#include "cli_support.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace cmkfs::cli::testing {

namespace {

std::string CmkctlPath() {
  return std::string(CMKFS_BINARY_DIR) + "/cli/cmkctl";
}

}  // namespace

RunResult RunCmkctl(const std::vector<std::string>& args,
                    const std::vector<std::string>& env,
                    const std::function<bool()>& interrupt_when) {
  RunResult result;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return result;
  }
  std::string path = CmkctlPath();
  std::vector<char*> argv;
  argv.push_back(path.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_copy = env;
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    for (auto& e : env_copy) ::putenv(e.data());
    ::execv(path.c_str(), argv.data());
    std::_Exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool interrupt_pending = static_cast<bool>(interrupt_when);
  const auto deadline = std::chrono::steady_clock::now() + kCmkctlTimeout;
  while (open_fds > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "cmkctl still running after " << kCmkctlTimeout.count()
                    << " s; killed";
      ::kill(pid, SIGKILL);
      break;
    }
    if (interrupt_pending && interrupt_when()) {
      ::kill(pid, SIGINT);
      interrupt_pending = false;
    }
    if (::poll(fds, 2, interrupt_pending ? 5 : 1000) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

TempDir::TempDir() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "cmkctl-test-XXXXXX").string();
  char* made = ::mkdtemp(tmpl.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Json ParseJsonOrFail(const RunResult& r) {
  auto parsed = ParseJson(r.out);
  EXPECT_TRUE(parsed.ok()) << parsed.status().message() << "\nstdout:\n"
                           << r.out << "\nstderr:\n"
                           << r.err;
  return parsed.ok() ? *parsed : Json();
}

std::string CmkctlTest::CtlOk(std::vector<std::string> args) {
  std::string joined;
  for (const auto& a : args) joined += a + " ";
  RunResult r = Ctl(args);
  EXPECT_EQ(r.exit_code, 0) << "cmkctl " << joined << "\nstderr: " << r.err;
  EXPECT_EQ(r.err, "") << "cmkctl " << joined;
  return r.out;
}

}  // namespace cmkfs::cli::testing
