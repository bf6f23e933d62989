#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
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

int RawConnect(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

size_t CountThreads() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task"))
    n += e.is_directory() ? 1 : 0;
  return n;
}

// Reads the one reply the server sends on `fd` (waiting up to 5 s).
std::string ReplyErr(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto frame = ReadFrame(fd);
  if (!frame.ok()) return "no reply: " + frame.status().message();
  auto reply = ParseControlReply(*frame);
  return reply.ok() ? reply->err : "bad reply";
}

// 300 idle connections used to make 300 threads: now they cost none, the
// ones over the limit are refused with a one-line error, and once they go
// the daemon answers at once.
TEST(ControlServerTest, IdleConnectionsCostNoThreadsAndExtraOnesAreRefused) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  auto server = ControlServer::Start(path, Echo);
  ASSERT_TRUE(server.ok());
  const size_t limit = ControlLimits{}.max_connections;
  const size_t before = CountThreads();
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) {
    int fd = RawConnect(path);
    ASSERT_GE(fd, 0) << "connection " << i;
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LE(CountThreads(), before + 2) << "idle connections made threads";
  size_t refused = 0;
  for (size_t i = limit; i < fds.size(); ++i) {
    std::string err = ReplyErr(fds[i]);
    if (err.find("control connections are open (the limit)") !=
        std::string::npos) {
      ++refused;
    } else {
      ADD_FAILURE() << "connection " << i << ": " << err;
      break;
    }
  }
  EXPECT_EQ(refused, fds.size() - limit);
  for (int fd : fds) ::close(fd);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  Result<CommandOutput> reply = SendControlCommand(path, {"list"});
  while ((!reply.ok() || reply->out != "list|") &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    reply = SendControlCommand(path, {"list"});
  }
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(reply->out, "list|");
}

TEST(ControlServerTest, AConnectionThatSendsNoWholeRequestIsTimedOut) {
  TempDir dir;
  auto path = dir.path() / "control.sock";
  std::atomic<int> calls{0};
  ControlLimits limits;
  limits.max_connections = 2;
  limits.request_timeout = std::chrono::milliseconds(300);
  auto server = ControlServer::StartCancellable(
      path,
      [&](const std::vector<std::string>& args, const std::atomic<bool>&) {
        ++calls;
        return Echo(args);
      },
      limits);
  ASSERT_TRUE(server.ok());
  int idle = RawConnect(path);
  int slow = RawConnect(path);
  ASSERT_GE(idle, 0);
  ASSERT_GE(slow, 0);
  std::string frame = Frame(*EncodeControlRequest({"disk", "list"}));
  ASSERT_TRUE(WriteAll(slow, frame.substr(0, 6)).ok());  // then stalls
  // Both slots are taken: a third client is refused at once.
  auto refused = SendControlCommand(path, {"x"});
  ASSERT_TRUE(refused.ok()) << refused.status().message();
  EXPECT_EQ(refused->exit_code, 1);
  EXPECT_NE(refused->err.find("the limit"), std::string::npos) << refused->err;
  auto start = std::chrono::steady_clock::now();
  EXPECT_NE(ReplyErr(idle).find("no whole request within 300 ms"),
            std::string::npos);
  EXPECT_NE(ReplyErr(slow).find("no whole request within 300 ms"),
            std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  ::close(idle);
  ::close(slow);
  auto ok = SendControlCommand(path, {"x"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->out, "x|");
  EXPECT_EQ(calls.load(), 1) << "a partial request was run";
}

// A raw client that sends `args` and keeps the connection open.
int SendAndHold(const std::filesystem::path& path,
                const std::vector<std::string>& args) {
  int fd = RawConnect(path);
  if (fd >= 0 && !WriteAll(fd, Frame(*EncodeControlRequest(args))).ok()) {
    ::close(fd);
    return -1;
  }
  return fd;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Records the commands the daemon handler runs; "disk create --import"
// blocks until cancelled (a FIFO or a stalled source), "key show" until
// released (a slow control command holding the turn).
struct FakeCommands {
  std::mutex mu;
  std::vector<std::string> ran;
  std::atomic<bool> import_running{false};
  std::atomic<bool> import_saw_cancel{false};
  std::atomic<bool> show_running{false};
  std::atomic<bool> release_show{false};

  CommandRunner Runner() {
    return [this](const std::vector<std::string>& args, CommandContext& ctx) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ran.push_back(args[0] + " " + args[1]);
      }
      CommandOutput out;
      out.out = "ran " + args[0] + " " + args[1];
      if (IsDataCopyCommand(args)) {
        import_running = true;
        WaitFor([&] { return ctx.cancel != nullptr && ctx.cancel->load(); },
                std::chrono::seconds(20));
        import_saw_cancel = ctx.cancel != nullptr && ctx.cancel->load();
        out.exit_code = 130;
      } else if (args[1] == "show") {
        show_running = true;
        WaitFor([&] { return release_show.load(); }, std::chrono::seconds(20));
      }
      return out;
    };
  }
  bool Ran(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(ran.begin(), ran.end(), what) != ran.end();
  }
};

// A control server with the daemon's handler over FakeCommands.
class DaemonCommandHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = ControlServer::StartCancellable(
        path, DaemonCommandHandler(CommandContext{}, fake.Runner()));
    ASSERT_TRUE(started.ok()) << started.status().message();
    server = std::move(*started);
  }
  TempDir dir;
  const std::filesystem::path path = dir.path() / "control.sock";
  FakeCommands fake;
  std::unique_ptr<ControlServer> server;
};

TEST_F(DaemonCommandHandlerTest, AStuckImportBlocksNeitherListNorRevocation) {
  int importer =
      SendAndHold(path, {"disk", "create", "d", "--import", "/tmp/never.fifo"});
  ASSERT_GE(importer, 0);
  ASSERT_TRUE(WaitFor([&] { return fake.import_running.load(); },
                      std::chrono::seconds(5)));
  auto start = std::chrono::steady_clock::now();
  auto list = SendControlCommand(path, {"disk", "list"});
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ(list->out, "ran disk list");
  auto revoke = SendControlCommand(
      path, {"key", "set-attributes", "v", "k", "--enabled", "false"});
  ASSERT_TRUE(revoke.ok()) << revoke.status().message();
  EXPECT_EQ(revoke->out, "ran key set-attributes");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2))
      << "control commands waited behind the import";
  // The importing client goes (Ctrl-C): the import sees its cancel flag.
  ::close(importer);
  EXPECT_TRUE(WaitFor([&] { return fake.import_saw_cancel.load(); },
                      std::chrono::seconds(5)));
}

TEST_F(DaemonCommandHandlerTest, AQueuedCommandOfAKilledClientIsNotRun) {
  int slow = SendAndHold(path, {"key", "show", "v", "k"});
  ASSERT_GE(slow, 0);
  ASSERT_TRUE(WaitFor([&] { return fake.show_running.load(); },
                      std::chrono::seconds(5)));
  // Queued behind "key show"; then its client dies (cmkctl timed out).
  int queued = SendAndHold(
      path, {"key", "set-attributes", "v", "k", "--enabled", "false"});
  ASSERT_GE(queued, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::close(queued);  // what the kernel does when the client is killed
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  fake.release_show = true;
  EXPECT_EQ(ReplyErr(slow), "");
  ::close(slow);
  // A live client's command still runs, after the dropped one would have.
  auto after = SendControlCommand(path, {"disk", "list"});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->out, "ran disk list");
  EXPECT_FALSE(fake.Ran("key set-attributes"))
      << "the killed client's revocation ran late";
}

TEST(IsDataCopyCommandTest, ImportsAndExports) {
  EXPECT_TRUE(IsDataCopyCommand({"disk", "create", "d", "--import", "f"}));
  EXPECT_TRUE(
      IsDataCopyCommand({"-o", "json", "disk", "create", "d", "--import=f"}));
  EXPECT_TRUE(IsDataCopyCommand({"disk", "export", "d", "f"}));
  EXPECT_TRUE(IsDataCopyCommand({"snapshot", "export", "s", "f"}));
  EXPECT_TRUE(IsDataCopyCommand({"image", "export", "i", "f"}));
  EXPECT_FALSE(IsDataCopyCommand({"disk", "create", "d", "--size", "1G"}));
  EXPECT_FALSE(IsDataCopyCommand({"disk", "create", "--", "--import"}));
  EXPECT_FALSE(IsDataCopyCommand({"disk", "list"}));
  EXPECT_FALSE(IsDataCopyCommand({"key", "set-attributes", "v", "k"}));
  EXPECT_FALSE(IsDataCopyCommand({}));
}

TEST(ControlServerTest, ControlSocketPathIsInTheStateDir) {
  Config config;
  config.state_dir = "/var/lib/x";
  EXPECT_EQ(ControlSocketPath(config), "/var/lib/x/control.sock");
}

}  // namespace
}  // namespace cmkfs::cli
