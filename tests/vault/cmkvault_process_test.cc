// The cmkvault binary as an operator runs it: init, identity issue/revoke/
// list, serve on an ephemeral loopback port and a unix socket, SIGTERM.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

struct Ran {
  int rc = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

class Process {
 public:
  explicit Process(std::vector<std::string> args) {
    int out[2], err[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      std::vector<char*> argv;
      std::string bin = CMKVAULT_PATH;
      argv.push_back(bin.data());
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(5));
    }
    ::close(out_);
    ::close(err_);
  }
  // Reads stdout until it holds `want` (or the timeout).
  std::string ReadUntil(std::string_view want,
                        std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (stdout_.find(want) == std::string::npos &&
           std::chrono::steady_clock::now() < end) {
      stdout_ += ReadAll(out_, std::chrono::milliseconds(100));
    }
    return stdout_;
  }
  // Exit status, or -1 if it did not exit in time (then it is killed).
  int Wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < end) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  Ran Finish(std::chrono::milliseconds timeout) {
    Ran r;
    r.out = stdout_ + ReadAll(out_, timeout);
    r.err = ReadAll(err_, std::chrono::milliseconds(500));
    r.rc = Wait(timeout);
    return r;
  }
  void Signal(int sig) { ::kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string stdout_;
};

Ran RunCmkvault(std::vector<std::string> args) {
  Process p(std::move(args));
  return p.Finish(std::chrono::seconds(30));
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(CmkvaultProcessTest, InitIssueServeRevokeStop) {
  TempDir tmp;
  const std::string dir = (tmp.path() / "state").string();
  const std::string admin = (tmp.path() / "admin.pem").string();
  const std::string host = (tmp.path() / "host.pem").string();
  const std::string sock = (tmp.path() / "cmkvault.sock").string();

  Ran init = RunCmkvault({"--state-dir", dir, "init", "--admin-out", admin});
  ASSERT_EQ(init.rc, 0) << init.err;
  const std::string admin_id = Trim(init.out);
  EXPECT_EQ(admin_id.size(), 36u) << init.out;
  struct stat st;
  ASSERT_EQ(::stat(admin.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The CA's and the server's private keys are stored sealed only.
  for (const char* f :
       {"ca.key.sealed", "server.key.sealed", "ca.pem", "server.pem"}) {
    std::ifstream in(std::filesystem::path(dir) / f);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    EXPECT_FALSE(text.empty()) << f;
    EXPECT_EQ(text.find("PRIVATE KEY"), std::string::npos) << f;
  }

  Ran again = RunCmkvault({"--state-dir", dir, "init", "--admin-out",
                           (tmp.path() / "admin2.pem").string()});
  EXPECT_EQ(again.rc, 1);
  EXPECT_NE(again.err.find("is already initialised"), std::string::npos)
      << again.err;

  Ran issued = RunCmkvault(
      {"--state-dir", dir, "identity", "issue", "storage-host", "--out", host});
  ASSERT_EQ(issued.rc, 0) << issued.err;
  const std::string host_id = Trim(issued.out);

  Process serve({"--state-dir", dir, "serve", "--listen", "127.0.0.1:0",
                 "--listen", "unix:" + sock});
  std::string out = serve.ReadUntil("unix:", std::chrono::seconds(30));
  const std::string marker = "listening on 127.0.0.1:";
  size_t at = out.find(marker);
  ASSERT_NE(at, std::string::npos) << out;
  const std::string port =
      out.substr(at + marker.size(), out.find('\n', at) - at - marker.size());
  ASSERT_NE(port, "0");

  ClientOptions o;
  o.endpoint = "127.0.0.1:" + port;
  o.credential = admin;
  auto owner = ConnectKeyStore(o);
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  keystore::VaultSpec spec;
  spec.name = "customer";
  auto vault = (*owner)->CreateVault(spec);
  ASSERT_TRUE(vault.ok()) << vault.status().ToString();

  ClientOptions h;
  h.endpoint = "unix:" + sock;
  h.credential = host;
  auto storage = ConnectKeyStore(h);
  ASSERT_TRUE(storage.ok()) << storage.status().ToString();
  EXPECT_TRUE((*storage)->ListVaults().ok());
  EXPECT_EQ((*storage)->CreateVault(spec).status().kind(),
            ErrorKind::kPermissionDenied);

  Ran revoke = RunCmkvault({"--state-dir", dir, "identity", "revoke", host_id});
  ASSERT_EQ(revoke.rc, 0) << revoke.err;
  Status refused = (*storage)->ListVaults().status();
  EXPECT_EQ(refused.kind(), ErrorKind::kPermissionDenied) << refused.ToString();

  Ran list = RunCmkvault({"--state-dir", dir, "identity", "list"});
  ASSERT_EQ(list.rc, 0) << list.err;
  EXPECT_NE(list.out.find(host_id + "  client  revoked  storage-host"),
            std::string::npos)
      << list.out;
  EXPECT_NE(list.out.find(admin_id + "  admin   active"), std::string::npos)
      << list.out;

  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait(std::chrono::seconds(10)), 0);
}

TEST(CmkvaultProcessTest, UnsafeStateDirectoryIsRefused) {
  TempDir tmp;
  const std::string dir = (tmp.path() / "state").string();
  Ran init = RunCmkvault({"--state-dir", dir, "init", "--admin-out",
                          (tmp.path() / "admin.pem").string()});
  ASSERT_EQ(init.rc, 0) << init.err;
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  Ran serve =
      RunCmkvault({"--state-dir", dir, "serve", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(serve.rc, 1);
  EXPECT_NE(serve.err.find("unsafe cmkvault state directory " + dir),
            std::string::npos)
      << serve.err;
  EXPECT_EQ(std::count(serve.err.begin(), serve.err.end(), '\n'), 1);
}

TEST(CmkvaultProcessTest, NotInitialisedNamesInit) {
  TempDir tmp;
  const std::string dir = (tmp.path() / "empty").string();
  Ran r = RunCmkvault({"--state-dir", dir, "identity", "list"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("create one with: cmkvault init --state-dir " + dir),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace cmkfs::vault::testing
