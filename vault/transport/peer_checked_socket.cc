#include "vault/transport/peer_checked_socket.h"

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
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "cmkfs/mutex.h"
#include "cmkfs/thread_annotations.h"

namespace cmkfs::vault {
namespace {

Result<sockaddr_un> Address(const std::filesystem::path& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof(a.sun_path)) {
    return InvalidArgumentError("unix socket path " + p + " is longer than " +
                                std::to_string(sizeof(a.sun_path) - 1) +
                                " bytes");
  }
  std::memcpy(a.sun_path, p.c_str(), p.size() + 1);
  return a;
}

// Copies both ways until either side closes; then closes both.
void Relay(int a, int b, const std::atomic<bool>& stopping) {
  char buf[64 * 1024];
  pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  while (!stopping) {
    int n = ::poll(fds, 2, 200);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got <= 0) {
        done = true;
        break;
      }
      const int to = fds[1 - i].fd;
      for (ssize_t off = 0; off < got && !done;) {
        ssize_t put =
            ::send(to, buf + off, static_cast<size_t>(got - off), MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) done = true;
        off += std::max<ssize_t>(put, 0);
      }
    }
    if (done) break;
  }
  ::close(a);
  ::close(b);
}

class Impl final : public PeerCheckedSocket {
 public:
  Impl(std::filesystem::path path, std::filesystem::path inner,
       std::vector<uid_t> allowed, int listen_fd)
      : path_(std::move(path)),
        inner_(std::move(inner)),
        allowed_(std::move(allowed)),
        listen_fd_(listen_fd) {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~Impl() override {
    stopping_ = true;
    accept_thread_.join();
    ::close(listen_fd_);
    std::list<RelayThread> relays;
    {
      MutexLock lock(&mu_);
      relays.swap(relays_);
    }
    for (auto& r : relays) r.thread.join();
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }

 private:
  bool Admitted(uid_t uid) const {
    return uid == 0 || uid == ::geteuid() ||
           std::find(allowed_.begin(), allowed_.end(), uid) != allowed_.end();
  }

  struct RelayThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };

  // Joins the relays whose connection has ended.
  void Reap() EXCLUDES(mu_) {
    std::list<RelayThread> finished;
    {
      MutexLock lock(&mu_);
      for (auto it = relays_.begin(); it != relays_.end();) {
        auto next = std::next(it);
        if (*it->done) finished.splice(finished.end(), relays_, it);
        it = next;
      }
    }
    for (auto& r : finished) r.thread.join();
  }

  void AcceptLoop() {
    pollfd p{listen_fd_, POLLIN, 0};
    while (!stopping_) {
      Reap();
      if (::poll(&p, 1, 200) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        spdlog::warn("cmkvault: {}: cannot read peer credentials: {}",
                     path_.string(), std::strerror(errno));
        ::close(fd);
        continue;
      }
      if (!Admitted(cred.uid)) {
        spdlog::warn(
            "cmkvault: {}: refused a connection from uid {} pid {} (not "
            "root, the service's uid or one of unix_peers)",
            path_.string(), cred.uid, cred.pid);
        ::close(fd);
        continue;
      }
      int up = ConnectInner();
      if (up < 0) {
        spdlog::warn("cmkvault: {}: cannot reach the service's own socket {}",
                     path_.string(), inner_.string());
        ::close(fd);
        continue;
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      MutexLock lock(&mu_);
      relays_.push_back({std::thread([fd, up, done, this] {
                           Relay(fd, up, stopping_);
                           *done = true;
                         }),
                         done});
    }
  }

  int ConnectInner() const {
    Result<sockaddr_un> a = Address(inner_);
    if (!a.ok()) return -1;
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&*a), sizeof(*a)) !=
        0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  const std::filesystem::path path_;
  const std::filesystem::path inner_;
  const std::vector<uid_t> allowed_;
  const int listen_fd_;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  Mutex mu_;
  // One per admitted connection; a relay ends when a side closes and is
  // joined by the accept loop's next Reap (or at destruction).
  std::list<RelayThread> relays_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<PeerCheckedSocket>> PeerCheckedSocket::Start(
    const std::filesystem::path& path, const std::filesystem::path& inner,
    std::vector<uid_t> allowed_uids) {
  CMKFS_ASSIGN_OR_RETURN(sockaddr_un a, Address(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return IOError("cmkvault cannot listen on unix:" + path.string() +
                     ": something other than a socket is there");
    }
    ::unlink(path.c_str());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket for unix:" + path.string(), errno);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0 ||
      ::chmod(path.c_str(), 0666) != 0 || ::listen(fd, 64) != 0) {
    const int err = errno;
    ::close(fd);
    return IOError("cmkvault cannot listen on unix:" + path.string() + ": " +
                   std::strerror(err));
  }
  return std::unique_ptr<PeerCheckedSocket>(
      new Impl(path, inner, std::move(allowed_uids), fd));
}

}  // namespace cmkfs::vault
