// The control socket: ControlServer (daemon side) and SendControlCommand
// (cmkctl side). Wire format in control_protocol.h.
//
// Threads: one accept thread polls the listening socket, a wake pipe and the
// connections whose command is running (to notice a client hanging up); each
// accepted connection gets a worker thread that reads the request, runs the
// handler and writes the reply. Only the accept thread closes connection fds
// (after joining their worker), so an fd number is never reused while polled.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

#include "cmkfs/cli.h"
#include "control_protocol.h"

namespace cmkfs::cli {
namespace {

Result<sockaddr_un> MakeAddress(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string& p = path.native();
  if (p.empty() || p.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError("control socket path '" + p +
                                "' is empty or longer than " +
                                std::to_string(sizeof(addr.sun_path) - 1) +
                                " bytes; use a shorter --state-dir");
  }
  std::memcpy(addr.sun_path, p.data(), p.size());
  return addr;
}

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

// Connects to a unix stream socket; returns the fd or the errno.
int ConnectUnix(const sockaddr_un& addr, int* err) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  while (::connect(fd, reinterpret_cast<const sockaddr*>(&addr),
                   sizeof(addr)) != 0) {
    if (errno == EINTR) continue;
    *err = errno;
    ::close(fd);
    return -1;
  }
  return fd;
}

// The client's half of the peer check: the process serving the socket runs
// as root or as this user, so nobody else can answer (or read) a command.
Status CheckDaemonPeer(int fd, const std::filesystem::path& socket_path) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoError("read the peer credentials of " + socket_path.string(),
                      errno);
  }
  const uid_t own_uid = ::geteuid();
  if (cred.uid == 0 || cred.uid == own_uid) return Status::Ok();
  return PermissionDeniedError(
      "refusing to send the command: control socket " + socket_path.string() +
      " is served by uid " + std::to_string(cred.uid) + " (pid " +
      std::to_string(cred.pid) + "), not by root or uid " +
      std::to_string(own_uid) + "; it is not a cmkfs daemon you can trust");
}

CommandOutput ErrorReply(int code, std::string message) {
  CommandOutput out;
  out.exit_code = code;
  out.err = "cmkctl: " + std::move(message) + "\n";
  return out;
}

class ControlServerImpl : public ControlServer {
 public:
  ControlServerImpl(std::filesystem::path path, CancellableHandler handler)
      : path_(std::move(path)), handler_(std::move(handler)) {}

  ~ControlServerImpl() override {
    stopping_ = true;
    Wake();
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : connections_) c.cancel = true;
    }
    for (auto& c : connections_) {
      ::shutdown(c.fd, SHUT_RD);  // unblocks a worker still reading
      if (c.worker.joinable()) c.worker.join();
      ::close(c.fd);
    }
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (wake_read_ >= 0) ::close(wake_read_);
    if (wake_write_ >= 0) ::close(wake_write_);
    // Remove the socket only if it is still the one we created.
    struct stat st;
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == socket_inode_) {
      ::unlink(path_.c_str());
    }
  }

  Status Init() {
    CMKFS_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path_));
    int err = 0;
    int probe = ConnectUnix(addr, &err);
    if (probe >= 0) {
      ::close(probe);
      return BusyError("a daemon already listens on " + path_.string());
    }
    if (err != ENOENT && err != ECONNREFUSED) {
      return ErrnoError("probe control socket " + path_.string(), err);
    }
    if (err == ECONNREFUSED) {
      if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
        return ErrnoError("remove stale control socket " + path_.string(),
                          errno);
      }
      spdlog::info("removed stale control socket {}", path_.string());
    }
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return ErrnoError("control socket", errno);
    mode_t old_mask = ::umask(0177);
    int rc = ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr),
                    sizeof(addr));
    int bind_errno = errno;
    ::umask(old_mask);
    if (rc != 0) {
      return ErrnoError("bind control socket " + path_.string(), bind_errno);
    }
    if (::chmod(path_.c_str(), 0600) != 0) {
      return ErrnoError("chmod control socket " + path_.string(), errno);
    }
    struct stat st;
    if (::lstat(path_.c_str(), &st) == 0) socket_inode_ = st.st_ino;
    if (::listen(listen_fd_, 64) != 0) {
      return ErrnoError("listen on control socket " + path_.string(), errno);
    }
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      return ErrnoError("control socket wake pipe", errno);
    }
    wake_read_ = pipe_fds[0];
    wake_write_ = pipe_fds[1];
    // Logged before the accept thread starts: the first spdlog call of a
    // process creates spdlog's registry, and the thread's own warnings must
    // come after it (TSan cannot see the static-init guard inside libspdlog).
    spdlog::info("control socket listening on {}", path_.string());
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    return Status::Ok();
  }

 private:
  struct Connection {
    int fd = -1;
    std::thread worker;
    std::atomic<bool> cancel{false};
    std::atomic<bool> done{false};
    bool hangup_seen = false;  // accept thread only
  };

  void Wake() {
    if (wake_write_ < 0) return;
    char c = 1;
    ssize_t ignored = ::write(wake_write_, &c, 1);
    (void)ignored;
  }

  void AcceptLoop() {
    std::vector<pollfd> fds;
    std::vector<Connection*> polled;
    while (!stopping_) {
      ReapFinished();
      fds.clear();
      polled.clear();
      fds.push_back({listen_fd_, POLLIN, 0});
      fds.push_back({wake_read_, POLLIN, 0});
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& c : connections_) {
          if (c.hangup_seen || c.done) continue;
          fds.push_back({c.fd, POLLRDHUP, 0});
          polled.push_back(&c);
        }
      }
      int n = ::poll(fds.data(), fds.size(), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        spdlog::error("control socket poll: {}", std::strerror(errno));
        return;
      }
      if (fds[1].revents) {
        char buf[64];
        while (::read(wake_read_, buf, sizeof(buf)) > 0) {
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
          polled[i - 2]->hangup_seen = true;
          polled[i - 2]->cancel = true;
        }
      }
      if (fds[0].revents & POLLIN) AcceptOne();
    }
  }

  void ReapFinished() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        if (it->worker.joinable()) it->worker.join();
        ::close(it->fd);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void AcceptOne() {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN) {
        spdlog::warn("control socket accept: {}", std::strerror(errno));
      }
      return;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      spdlog::warn("control socket: cannot read peer credentials: {}",
                   std::strerror(errno));
      ::close(fd);
      return;
    }
    const uid_t own_uid = ::geteuid();
    if (cred.uid != 0 && cred.uid != own_uid) {
      spdlog::warn(
          "control socket: refused a command from uid {} pid {} (only root "
          "and uid {} may control this daemon)",
          cred.uid, cred.pid, own_uid);
      CommandOutput refusal = ErrorReply(
          1, "permission denied: only root or uid " + std::to_string(own_uid) +
                 " may control this daemon (you are uid " +
                 std::to_string(cred.uid) + ")");
      timeval tv{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      WriteAll(fd, Frame(EncodeControlReply(refusal))).IgnoreError();
      ::close(fd);
      return;
    }
    timeval tv{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::lock_guard<std::mutex> lock(mu_);
    Connection& c = connections_.emplace_back();
    c.fd = fd;
    c.worker = std::thread([this, &c] {
      Serve(c);
      c.done = true;
      Wake();
    });
  }

  void Serve(Connection& c) {
    CommandOutput reply;
    auto frame = ReadFrame(c.fd);
    if (!frame.ok()) {
      spdlog::warn("control socket: bad request: {}", frame.status().message());
      reply = ErrorReply(2, "bad control request: " + frame.status().message());
    } else {
      auto args = ParseControlRequest(*frame);
      if (!args.ok()) {
        spdlog::warn("control socket: bad request: {}",
                     args.status().message());
        reply =
            ErrorReply(2, "bad control request: " + args.status().message());
      } else {
        try {
          reply = handler_(*args, c.cancel);
        } catch (const std::exception& e) {
          reply = ErrorReply(1, std::string("internal error: ") + e.what());
        } catch (...) {
          reply = ErrorReply(1, "internal error");
        }
      }
    }
    Status s = WriteAll(c.fd, Frame(EncodeControlReply(reply)));
    if (!s.ok())
      spdlog::info("control socket: reply not delivered: {}", s.message());
  }

  std::filesystem::path path_;
  CancellableHandler handler_;
  int listen_fd_ = -1;
  int wake_read_ = -1;
  int wake_write_ = -1;
  ino_t socket_inode_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::mutex mu_;  // guards connections_ (the list, not each entry's fields)
  std::list<Connection> connections_;
};

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(
    const std::filesystem::path& socket_path, Handler handler) {
  if (!handler) return InvalidArgumentError("control server needs a handler");
  return StartCancellable(
      socket_path,
      [h = std::move(handler)](const std::vector<std::string>& args,
                               const std::atomic<bool>&) { return h(args); });
}

Result<std::unique_ptr<ControlServer>> ControlServer::StartCancellable(
    const std::filesystem::path& socket_path, CancellableHandler handler) {
  if (!handler) return InvalidArgumentError("control server needs a handler");
  auto server =
      std::make_unique<ControlServerImpl>(socket_path, std::move(handler));
  CMKFS_RETURN_IF_ERROR(server->Init());
  return std::unique_ptr<ControlServer>(std::move(server));
}

Result<CommandOutput> SendControlCommand(
    const std::filesystem::path& socket_path,
    const std::vector<std::string>& args) {
  CMKFS_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(socket_path));
  int err = 0;
  UniqueFd fd(ConnectUnix(addr, &err));
  if (fd.get() < 0) {
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
      return NotFoundError("no daemon listens on " + socket_path.string());
    }
    if (err == EACCES || err == EPERM) {
      return PermissionDeniedError(
          "cannot connect to the daemon's control "
          "socket " +
          socket_path.string() +
          ": permission denied (run as root or as "
          "the daemon's user)");
    }
    return ErrnoError("connect to " + socket_path.string(), err);
  }
  CMKFS_RETURN_IF_ERROR(CheckDaemonPeer(fd.get(), socket_path));
  CMKFS_ASSIGN_OR_RETURN(std::string request, EncodeControlRequest(args));
  Status sent = WriteAll(fd.get(), Frame(request));
  // A refused peer gets its reply before the request is read: read it even
  // when the write failed.
  auto payload = ReadFrame(fd.get());
  if (!payload.ok()) return sent.ok() ? payload.status() : sent;
  return ParseControlReply(*payload);
}

std::filesystem::path ControlSocketPath(const Config& config) {
  return config.state_dir / "control.sock";
}

}  // namespace cmkfs::cli
