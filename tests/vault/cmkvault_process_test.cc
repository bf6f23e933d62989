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

Ran RunCmkvault(std::vector<std::string> args) {
  Process p(CMKVAULT_PATH, std::move(args));
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

  Process serve(CMKVAULT_PATH, {"--state-dir", dir, "serve", "--listen",
                                "127.0.0.1:0", "--listen", "unix:" + sock});
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
