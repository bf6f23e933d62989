#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "cli_support.h"
#include "cmkfs/cli.h"
#include "control_protocol.h"

namespace cmkfs::cli {
namespace {

using testing::TempDir;

CommandOutput Echo(const std::vector<std::string>& args) {
  CommandOutput out;
  for (const auto& a : args) out.out += a + "|";
  out.err = "err\n";
  out.exit_code = static_cast<int>(args.size());
  return out;
}

TEST(ControlServerTest, RoundTripAndSocketIs0600) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  auto server = ControlServer::Start(path, Echo);
  ASSERT_TRUE(server.ok()) << server.status().message();
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  auto reply = SendControlCommand(path, {"disk", "show", "d 1", "-o", "json"});
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(reply->out, "disk|show|d 1|-o|json|");
  EXPECT_EQ(reply->err, "err\n");
  EXPECT_EQ(reply->exit_code, 5);

  // Several clients at once.
  std::vector<std::thread> clients;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      auto r = SendControlCommand(path, {std::to_string(i)});
      if (r.ok() && r->out == std::to_string(i) + "|") ++good;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(good.load(), 8);

  server->reset();
  EXPECT_FALSE(std::filesystem::exists(path)) << "socket left behind";
}

TEST(ControlServerTest, NotFoundWithoutDaemonOrWithStaleSocket) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  auto reply = SendControlCommand(path, {"fsck"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().kind(), ErrorKind::kNotFound);

  // A stale socket: bound, then its listener closed.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  ASSERT_TRUE(std::filesystem::exists(path));
  reply = SendControlCommand(path, {"fsck"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().kind(), ErrorKind::kNotFound);

  // The server replaces the stale socket.
  auto server = ControlServer::Start(path, Echo);
  ASSERT_TRUE(server.ok()) << server.status().message();
  reply = SendControlCommand(path, {"fsck"});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->out, "fsck|");
}

TEST(ControlServerTest, SecondServerOnALiveSocketIsBusy) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  auto first = ControlServer::Start(path, Echo);
  ASSERT_TRUE(first.ok());
  auto second = ControlServer::Start(path, Echo);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().kind(), ErrorKind::kBusy);
  EXPECT_TRUE(SendControlCommand(path, {"x"}).ok());
}

TEST(ControlServerTest, MalformedRequestGetsUsageReplyAndServerSurvives) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  std::atomic<int> calls{0};
  auto server = ControlServer::Start(path, [&](const auto& args) {
    ++calls;
    return Echo(args);
  });
  ASSERT_TRUE(server.ok());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // A frame whose payload claims 300 arguments.
  std::string payload = "\x2c\x01\x00\x00";
  payload.resize(4);
  ASSERT_TRUE(WriteAll(fd, Frame(payload)).ok());
  auto frame = ReadFrame(fd);
  ASSERT_TRUE(frame.ok());
  auto reply = ParseControlReply(*frame);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->exit_code, 2);
  EXPECT_NE(reply->err.find("bad control request"), std::string::npos);
  ::close(fd);
  EXPECT_EQ(calls.load(), 0);
  auto ok = SendControlCommand(path, {"still", "alive"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->out, "still|alive|");
}

TEST(ControlServerTest, ClientHangupCancelsTheRunningCommand) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  std::atomic<bool> saw_cancel{false};
  std::atomic<bool> started{false};
  auto server = ControlServer::StartCancellable(
      path,
      [&](const std::vector<std::string>&, const std::atomic<bool>& cancel) {
        started = true;
        auto deadline =
            std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!cancel && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        saw_cancel = cancel.load();
        return CommandOutput{};
      });
  ASSERT_TRUE(server.ok());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_TRUE(
      WriteAll(fd, Frame(*EncodeControlRequest({"disk", "export"}))).ok());
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::close(fd);      // what a SIGINT-killed cmkctl does
  server->reset();  // joins the worker
  EXPECT_TRUE(saw_cancel.load());
}

TEST(ControlServerTest, RefusesPeersWithAnotherUid) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to act as another uid";
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  auto path = dir.path() / "control.sock";
  std::atomic<int> calls{0};
  auto server = ControlServer::Start(path, [&](const auto& args) {
    ++calls;
    return Echo(args);
  });
  ASSERT_TRUE(server.ok());
  // Opened up on purpose so that the peer-credential check is what refuses.
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    if (::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      std::_Exit(3);
    }
    auto reply = SendControlCommand(path, {"key", "list", "v"});
    std::string msg = reply.ok()
                          ? std::to_string(reply->exit_code) + " " + reply->err
                          : "error " + reply.status().message();
    ssize_t w = ::write(pipe_fds[1], msg.data(), msg.size());
    std::_Exit(w < 0 ? 4 : 0);
  }
  ::close(pipe_fds[1]);
  std::string got;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0)
    got.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(got.substr(0, 2), "1 ") << got;
  EXPECT_NE(got.find("permission denied"), std::string::npos) << got;
  EXPECT_EQ(calls.load(), 0);
}

TEST(ControlServerTest, ControlSocketPathIsInTheStateDir) {
  Config config;
  config.state_dir = "/var/lib/x";
  EXPECT_EQ(ControlSocketPath(config), "/var/lib/x/control.sock");
}

}  // namespace
}  // namespace cmkfs::cli
