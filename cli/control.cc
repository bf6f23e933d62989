// The control socket: ControlServer (daemon side) and SendControlCommand
// (cmkctl side). Wire format in control_protocol.h.
//
// Threads: one accept thread polls the listening socket, a wake pipe and
// every connection. It reads each request itself (non-blocking, bounded in
// time), so an idle connection costs no thread; once a request is whole, a
// worker thread runs the handler and writes the reply, while the accept
// thread watches for the client hanging up (which sets the cancel flag). At
// most ControlLimits::max_connections connections are open; more are refused
// with a one-line reply. Only the accept thread closes connection fds (after
// joining their worker), so an fd number is never reused while polled.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <thread>

#include "cmkfs/cli.h"
#include "cmkfs/mutex.h"
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

// Sends a short reply without ever blocking the accept thread (a fresh
// socket's send buffer holds it; a peer that reads nothing loses it).
void ReplyAndClose(int fd, const CommandOutput& reply) {
  std::string frame = Frame(EncodeControlReply(reply));
  ssize_t ignored =
      ::send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)ignored;
  ::close(fd);
}

class ControlServerImpl : public ControlServer {
 public:
  ControlServerImpl(std::filesystem::path path, CancellableHandler handler,
                    ControlLimits limits)
      : path_(std::move(path)), handler_(std::move(handler)), limits_(limits) {}

  ~ControlServerImpl() override {
    stopping_ = true;
    Wake();
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      MutexLock lock(&mu_);
      for (auto& c : connections_) c.cancel = true;
    }
    for (auto& c : connections_) {
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
    if (limits_.max_connections == 0) {
      return InvalidArgumentError("control server needs max_connections >= 1");
    }
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
    listen_fd_ =
        ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
  using Clock = std::chrono::steady_clock;

  // A connection first sends its request (read by the accept thread, no
  // thread of its own), then runs its command on a worker thread.
  struct Connection {
    int fd = -1;
    Clock::time_point deadline;  // for the whole request
    FrameReader reader;          // accept thread only
    bool running = false;        // accept thread only: a worker exists
    std::thread worker;
    std::vector<std::string> args;
    ucred peer{};  // SO_PEERCRED at accept: who sent the command
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

  void AcceptLoop() EXCLUDES(mu_) {
    std::vector<pollfd> fds;
    std::vector<Connection*> polled;
    while (!stopping_) {
      ReapFinished();
      fds.clear();
      polled.clear();
      fds.push_back({listen_fd_, POLLIN, 0});
      fds.push_back({wake_read_, POLLIN, 0});
      int timeout_ms = -1;
      const Clock::time_point now = Clock::now();
      MutexLock lock(&mu_);
      for (auto& c : connections_) {
        if (c.hangup_seen || c.done) continue;
        if (!c.running) {
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          c.deadline - now)
                          .count() +
                      1;
          left = std::max<int64_t>(left, 0);
          if (timeout_ms < 0 || left < timeout_ms)
            timeout_ms = static_cast<int>(left);
        }
        fds.push_back(
            {c.fd, static_cast<short>(c.running ? POLLRDHUP : POLLIN), 0});
        polled.push_back(&c);
      }
      lock.Unlock();
      int n = ::poll(fds.data(), fds.size(), timeout_ms);
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
        Connection& c = *polled[i - 2];
        if (c.running) {
          if (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            c.hangup_seen = true;
            c.cancel = true;
          }
        } else if (fds[i].revents) {
          ReadRequest(c);
        }
      }
      ExpireSlowRequests();
      if (fds[0].revents & POLLIN) AcceptAll();
    }
  }

  // Drops the connections marked done (`fd` < 0: closed without a worker).
  void ReapFinished() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        if (it->worker.joinable()) it->worker.join();
        if (it->fd >= 0) ::close(it->fd);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Ends a connection that has no worker: with a reply, or silently.
  void CloseWithReply(Connection& c, const CommandOutput& reply) {
    ReplyAndClose(c.fd, reply);
    c.fd = -1;
    c.done = true;
  }
  void CloseSilently(Connection& c) {
    ::close(c.fd);
    c.fd = -1;
    c.done = true;
  }

  void ReadRequest(Connection& c) EXCLUDES(mu_) {
    auto complete = c.reader.ReadAvailable(c.fd);
    if (!complete.ok()) {
      if (complete.status().kind() == ErrorKind::kInvalidArgument) {
        spdlog::warn("control socket: bad request: {}",
                     complete.status().message());
        CloseWithReply(c, ErrorReply(2, "bad control request: " +
                                            complete.status().message()));
      } else {
        // The client went away before its request was whole: nothing runs.
        CloseSilently(c);
      }
      return;
    }
    if (!*complete) return;
    auto args = ParseControlRequest(c.reader.payload());
    if (!args.ok()) {
      spdlog::warn("control socket: bad request: {}", args.status().message());
      CloseWithReply(
          c, ErrorReply(2, "bad control request: " + args.status().message()));
      return;
    }
    // A client that sent its request and left at once runs nothing.
    pollfd gone{c.fd, POLLRDHUP, 0};
    if (::poll(&gone, 1, 0) > 0 &&
        (gone.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
      spdlog::info(
          "control socket: client left before its command ran; "
          "dropped");
      CloseSilently(c);
      return;
    }
    c.args = std::move(*args);
    c.reader = FrameReader();
    // The worker writes the reply with a blocking send, bounded in time.
    int flags = ::fcntl(c.fd, F_GETFL);
    if (flags >= 0) ::fcntl(c.fd, F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{30, 0};
    ::setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    c.running = true;
    MutexLock lock(&mu_);
    c.worker = std::thread([this, &c] {
      Serve(c);
      c.done = true;
      Wake();
    });
  }

  void ExpireSlowRequests() EXCLUDES(mu_) {
    const Clock::time_point now = Clock::now();
    MutexLock lock(&mu_);
    for (auto& c : connections_) {
      if (c.running || c.done || now < c.deadline) continue;
      spdlog::warn(
          "control socket: closed a connection that sent no whole "
          "request within {} ms",
          limits_.request_timeout.count());
      CloseWithReply(
          c, ErrorReply(2, "bad control request: no whole request within " +
                               std::to_string(limits_.request_timeout.count()) +
                               " ms"));
    }
  }

  void AcceptAll() EXCLUDES(mu_) {
    for (;;) {
      int fd =
          ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
          spdlog::warn("control socket accept: {}", std::strerror(errno));
        }
        if (errno == EINTR) continue;
        return;
      }
      AcceptOne(fd);
    }
  }

  void AcceptOne(int fd) EXCLUDES(mu_) {
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
      ReplyAndClose(fd,
                    ErrorReply(1, "permission denied: only root or uid " +
                                      std::to_string(own_uid) +
                                      " may control this daemon (you are uid " +
                                      std::to_string(cred.uid) + ")"));
      return;
    }
    size_t open = 0;
    {
      MutexLock lock(&mu_);
      for (const auto& c : connections_) open += c.done ? 0 : 1;
    }
    if (open >= limits_.max_connections) {
      const auto now = Clock::now();
      if (now - last_refusal_log_ > std::chrono::seconds(1)) {
        spdlog::warn(
            "control socket: refused a connection from pid {}: {} "
            "connections open, the limit",
            cred.pid, open);
        last_refusal_log_ = now;
      }
      ReplyAndClose(
          fd, ErrorReply(1, "the daemon is busy: " + std::to_string(open) +
                                " control connections are open (the "
                                "limit); try again"));
      return;
    }
    MutexLock lock(&mu_);
    Connection& c = connections_.emplace_back();
    c.fd = fd;
    c.peer = cred;
    c.deadline = Clock::now() + limits_.request_timeout;
  }

  void Serve(Connection& c) {
    if (c.cancel) {
      spdlog::info(
          "control socket: client left before its command ran; "
          "dropped");
      return;
    }
    CommandOutput reply;
    try {
      // The audit entries this command writes name the peer.
      LocalCallerScope caller(c.peer.uid, c.peer.pid);
      reply = handler_(c.args, c.cancel);
    } catch (const std::exception& e) {
      reply = ErrorReply(1, std::string("internal error: ") + e.what());
    } catch (...) {
      reply = ErrorReply(1, "internal error");
    }
    Status s = WriteAll(c.fd, Frame(EncodeControlReply(reply)));
    if (!s.ok())
      spdlog::info("control socket: reply not delivered: {}", s.message());
  }

  std::filesystem::path path_;
  CancellableHandler handler_;
  ControlLimits limits_;
  int listen_fd_ = -1;
  int wake_read_ = -1;
  int wake_write_ = -1;
  ino_t socket_inode_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  Clock::time_point last_refusal_log_{};
  // Guards the list's structure against the destructor and the workers'
  // creation; only the accept thread adds and removes entries (and reads the
  // list under it too, so that the analysis can check every access). The
  // entries' own fields follow the per-field comments of Connection. A leaf
  // lock: the handler never runs under it.
  Mutex mu_;
  std::list<Connection> connections_ GUARDED_BY(mu_);
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
    const std::filesystem::path& socket_path, CancellableHandler handler,
    ControlLimits limits) {
  if (!handler) return InvalidArgumentError("control server needs a handler");
  auto server = std::make_unique<ControlServerImpl>(socket_path,
                                                    std::move(handler), limits);
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
