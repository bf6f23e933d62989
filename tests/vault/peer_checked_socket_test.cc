// cmkvault's unix socket with unix_peers (vault/transport/
// peer_checked_socket.cc): the kernel's peer uid decides who reaches gRPC.
// Other uids are played by forked children that drop to them (needs root,
// as CI runs).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

constexpr uid_t kAdmitted = 12345;
constexpr uid_t kStranger = 65534;

// What a process running as `uid` sees when it connects to `path` and waits
// a second for the server to speak or hang up: "closed" (the front shut it
// before a byte), "open" (kept: relayed to gRPC, which waits for the TLS
// ClientHello), or "connect: <errno text>".
std::string ProbeAs(uid_t uid, const std::string& path) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    std::string verdict;
    if (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) {
      verdict = "setresuid failed";
    } else {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        verdict = std::string("connect: ") + std::strerror(errno);
      } else {
        pollfd p{fd, POLLIN, 0};
        char c;
        verdict = ::poll(&p, 1, 1000) == 1 && ::read(fd, &c, 1) == 0 ? "closed"
                                                                     : "open";
      }
    }
    ssize_t w = ::write(pipe_fds[1], verdict.data(), verdict.size());
    std::_Exit(w < 0 ? 4 : 0);
  }
  ::close(pipe_fds[1]);
  std::string got;
  char buf[256];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0) {
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return got;
}

TEST(PeerCheckedSocketTest, OnlyAdmittedUidsReachTheService) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to act as other uids";
  TestVaultService service({kAdmitted});
  const std::string path = service.unix_endpoint().substr(5);
  // Open to every local user on purpose: the uid check is the only gate.
  ASSERT_EQ(::chmod(std::filesystem::path(path).parent_path().c_str(), 0755),
            0);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);

  // The service works through the front, mutual TLS end to end.
  auto admin = service.Connect({}, /*unix_socket=*/true);
  ASSERT_NE(admin, nullptr);
  EXPECT_TRUE(admin->ListVaults().ok());

  EXPECT_EQ(ProbeAs(kAdmitted, path), "open");
  EXPECT_EQ(ProbeAs(kStranger, path), "closed");
  // Nor can the stranger go around the front to gRPC's own socket.
  const std::string inner = ProbeAs(kStranger, path + ".inner");
  EXPECT_TRUE(inner.starts_with("connect: ")) << inner;
}

TEST(PeerCheckedSocketTest, WithoutUnixPeersTheSocketIsTheServiceUsersOnly) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to act as other uids";
  TestVaultService service;
  const std::string path = service.unix_endpoint().substr(5);
  ASSERT_EQ(::chmod(std::filesystem::path(path).parent_path().c_str(), 0755),
            0);
  const std::string stranger = ProbeAs(kStranger, path);
  EXPECT_TRUE(stranger.starts_with("connect: ")) << stranger;
  EXPECT_FALSE(std::filesystem::exists(path + ".inner"));
}

}  // namespace
}  // namespace cmkfs::vault::testing
