// The metrics listener on real sockets: a scrape over TCP and over a unix
// socket, the content type, 404 for other paths, and the start-up errors.
#include "http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <string>

#include "cmkfs/crypto.h"

namespace cmkfs::metrics {
namespace {

Config::Metrics Listen(const std::string& text) {
  auto m = ParseMetricsListen(text);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

// A listening TCP socket on a free loopback port; the port stays taken
// until the object dies.
struct TakenPort {
  int fd = -1;
  uint16_t port = 0;
  TakenPort() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd, 1), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~TakenPort() { ::close(fd); }
};

// A free loopback port: taken and released (a test that loses the race
// retries with another).
uint16_t FreePort() { return TakenPort().port; }

// Sends one HTTP/1.0 GET on a connected socket; returns the whole response.
std::string Get(int fd, const std::string& path) {
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
  EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, n);
  ::close(fd);
  return out;
}

std::string GetTcp(uint16_t port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0)
      << std::strerror(errno);
  return Get(fd, path);
}

std::string GetUnix(const std::string& path, const std::string& url) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0)
      << std::strerror(errno);
  return Get(fd, url);
}

std::string TempSocketPath(const char* tag) {
  return "/tmp/cmkfs-mt-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

TEST(MetricsServer, ServesTheRenderedTextOverTcp) {
  std::atomic<int> scrapes{0};
  Result<std::unique_ptr<MetricsServer>> server = InvalidArgumentError("none");
  uint16_t port = 0;
  for (int attempt = 0; attempt < 5 && !server.ok(); ++attempt) {
    port = FreePort();
    server =
        MetricsServer::Start(Listen("127.0.0.1:" + std::to_string(port)), [&] {
          ++scrapes;
          return std::string("up 1\n");
        });
  }
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ((*server)->address(), "127.0.0.1:" + std::to_string(port));
  std::string r = GetTcp(port, "/metrics");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            std::string::npos)
      << r;
  EXPECT_TRUE(r.ends_with("\r\n\r\nup 1\n")) << r;
  EXPECT_EQ(scrapes.load(), 1);
  r = GetTcp(port, "/");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 404")) << r;
  EXPECT_EQ(scrapes.load(), 1);
}

TEST(MetricsServer, APortInUseIsAStartupError) {
  TakenPort taken;
  auto server = MetricsServer::Start(
      Listen("127.0.0.1:" + std::to_string(taken.port)), [] { return ""; });
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().message(),
            "cannot listen on 127.0.0.1:" + std::to_string(taken.port) +
                ": Address already in use");
}

TEST(MetricsServer, AnAddressNotOfThisHostIsAStartupError) {
  // TEST-NET-1 (RFC 5737) is never a local address.
  auto server =
      MetricsServer::Start(Listen("192.0.2.1:9469"), [] { return ""; });
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().message(),
            "cannot listen on 192.0.2.1:9469: Cannot assign requested address");
}

TEST(MetricsServer, ServesOnAUnixSocketWithMode0600AndRemovesIt) {
  const std::string path = TempSocketPath("serve");
  ::unlink(path.c_str());
  {
    auto server = MetricsServer::Start(Listen("unix:" + path),
                                       [] { return std::string("up 1\n"); });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    std::string r = GetUnix(path, "/metrics");
    EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
    EXPECT_TRUE(r.ends_with("up 1\n")) << r;

    auto second = MetricsServer::Start(Listen("unix:" + path),
                                       [] { return std::string(); });
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().message(), "cannot listen on unix:" + path +
                                             ": " + path +
                                             " is in use by another process");
  }
  struct stat st {};
  EXPECT_NE(::lstat(path.c_str(), &st), 0) << path << " left behind";
}

TEST(MetricsServer, AStaleSocketIsReplacedAndAFileIsNot) {
  const std::string path = TempSocketPath("stale");
  ::unlink(path.c_str());
  {
    // A socket nobody accepts on, as a killed daemon leaves it.
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ::close(fd);
  }
  {
    auto server = MetricsServer::Start(Listen("unix:" + path),
                                       [] { return std::string("up 1\n"); });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    EXPECT_TRUE(GetUnix(path, "/metrics").ends_with("up 1\n"));
  }
  std::ofstream(path) << "not a socket\n";
  auto server = MetricsServer::Start(Listen("unix:" + path),
                                     [] { return std::string(); });
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().message(),
            "cannot listen on unix:" + path + ": " + path +
                " exists and is not a socket; remove it or choose another "
                "[metrics] listen path");
  std::ifstream in(path);
  std::string kept;
  std::getline(in, kept);
  EXPECT_EQ(kept, "not a socket");  // never removed
  ::unlink(path.c_str());
}

// cmkfs-metrics-http.so brings libssl, whose initialisation allocates
// through OpenSSL: loaded at start-up it would have kept core/crypto.cc's
// wiping allocator out. Loaded on demand, the allocator stays.
TEST(MetricsServer, LoadingTheModuleKeepsOpenSslFreesWiped) {
  ASSERT_TRUE(crypto::OpenSslFreesAreWiped());
  const std::string path = TempSocketPath("wiped");
  ::unlink(path.c_str());
  auto server = MetricsServer::Start(Listen("unix:" + path),
                                     [] { return std::string(); });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_TRUE(crypto::OpenSslFreesAreWiped());
}

TEST(MetricsServer, OffIsRefused) {
  auto server = MetricsServer::Start(Listen("off"), [] { return ""; });
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().kind(), ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace cmkfs::metrics
