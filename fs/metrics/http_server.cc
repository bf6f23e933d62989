// cpp-httplib in Debian 12 is built with OpenSSL support, but only core/
// includes OpenSSL, so this file is compiled without
// CPPHTTPLIB_OPENSSL_SUPPORT. The only type whose layout that changes is
// httplib::Request (an SSL pointer and the members after it); this file never
// constructs, copies or destroys a Request and reads none of its members
// (routing is the library's), so no code built from the other layout runs here.
// The test metrics.http_abi checks that this object defines no httplib::Request
// symbol.
#include "http_server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>

namespace cmkfs::metrics {
namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string Describe(const Config::Metrics& listen) {
  if (listen.kind == Config::Metrics::Kind::kUnix)
    return "unix:" + listen.socket_path.string();
  if (listen.host.find(':') != std::string::npos)
    return "[" + listen.host + "]:" + std::to_string(listen.port);
  return listen.host + ":" + std::to_string(listen.port);
}

// A socket file at `path` from an earlier run is removed when nobody accepts
// on it; anything else there is an error.
Status ClearStaleSocket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoError(path, errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return FailedPreconditionError(path +
                                   " exists and is not a socket; remove it "
                                   "or choose another [metrics] listen path");
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int rc =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  ::close(fd);
  if (rc == 0) return BusyError(path + " is in use by another process");
  if (err != ECONNREFUSED) return ErrnoError(path, err);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return ErrnoError("remove stale " + path, errno);
  return Status::Ok();
}

class HttpMetricsServer final : public MetricsServer {
 public:
  HttpMetricsServer(const Config::Metrics& listen, Render render)
      : listen_(listen),
        address_(Describe(listen)),
        render_(std::move(render)) {}

  ~HttpMetricsServer() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
    if (listen_.kind == Config::Metrics::Kind::kUnix && bound_)
      ::unlink(listen_.socket_path.c_str());
  }

  const std::string& address() const override { return address_; }

  Status Start() {
    // Two threads: a scrape never waits behind a slow client for long, and
    // a flood of connections costs no more than two threads.
    server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    server_.set_read_timeout(5, 0);
    server_.set_write_timeout(5, 0);
    server_.set_keep_alive_timeout(5);
    server_.set_payload_max_length(4096);
    // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which
    // would let two daemons share a port silently.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.Get("/metrics",
                [this](const httplib::Request&, httplib::Response& res) {
                  res.set_content(render_(), kContentType);
                });
    server_.set_exception_handler([](const httplib::Request&,
                                     httplib::Response& res,
                                     std::exception_ptr) {
      res.status = 500;
      res.set_content("metrics unavailable\n", "text/plain");
    });

    std::string host = listen_.host;
    int port = listen_.port;
    if (listen_.kind == Config::Metrics::Kind::kUnix) {
      host = listen_.socket_path.string();
      CMKFS_RETURN_IF_ERROR(
          ClearStaleSocket(host).WithContext("cannot listen on " + address_));
      server_.set_address_family(AF_UNIX);
      // Ignored for AF_UNIX, but 0 would make httplib ask the socket for
      // the port it got, which fails.
      port = 80;
    }
    errno = 0;
    if (!server_.bind_to_port(host, port)) {
      const int err = errno;
      return IOError("cannot listen on " + address_ + ": " +
                     (err != 0
                          ? std::string(std::strerror(err))
                          : std::string("cannot resolve or bind ") + host));
    }
    bound_ = true;
    if (listen_.kind == Config::Metrics::Kind::kUnix &&
        ::chmod(host.c_str(), 0600) != 0) {
      return ErrnoError("chmod " + host, errno);
    }
    try {
      thread_ = std::thread([this] { server_.listen_after_bind(); });
    } catch (const std::system_error& e) {
      return IOError(std::string("metrics: cannot start its thread: ") +
                     e.what());
    }
    return Status::Ok();
  }

 private:
  const Config::Metrics listen_;
  const std::string address_;
  const Render render_;
  httplib::Server server_;
  std::thread thread_;
  bool bound_ = false;
};

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const Config::Metrics& listen, Render render) {
  if (listen.kind == Config::Metrics::Kind::kOff)
    return InvalidArgumentError("metrics are off ([metrics] listen = \"off\")");
  auto server = std::make_unique<HttpMetricsServer>(listen, std::move(render));
  CMKFS_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<MetricsServer>(std::move(server));
}

}  // namespace cmkfs::metrics
