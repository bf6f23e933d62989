// The daemon's side of the metrics listener: checks and prepares the address,
// loads cmkfs-metrics-http.so (http_module.h) on first use and runs it.
#include "http_server.h"

#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cmkfs/file_trust.h"
#include "http_module.h"

namespace cmkfs::metrics {
namespace {

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

struct Module {
  decltype(&cmkfs_metrics_http_start) start = nullptr;
  decltype(&cmkfs_metrics_http_stop) stop = nullptr;
};

// The installed module, next to the binary's prefix (/usr/bin/cmkfs:
// /usr/lib/cmkfs/...), else the build tree's.
std::vector<std::string> ModuleCandidates() {
  std::vector<std::string> out;
  std::error_code ec;
  const std::filesystem::path exe =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path().parent_path() / "lib" / "cmkfs" /
                   "cmkfs-metrics-http.so")
                      .string());
  }
  out.push_back(CMKFS_METRICS_MODULE_BUILD);
  return out;
}

// Loads the module once per process (never unloaded). It must pass the
// trust check of the PKCS#11 module: root-owned (or ours), not writable by
// others, nor are the directories above it.
Result<Module> LoadModule() {
  static std::mutex mu;
  static Module loaded;
  std::lock_guard lock(mu);
  if (loaded.start != nullptr) return loaded;
  const std::vector<std::string> candidates = ModuleCandidates();
  std::string path;
  for (const std::string& candidate : candidates) {
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0) {
      path = candidate;
      break;
    }
  }
  if (path.empty()) {
    std::string looked;
    for (const std::string& c : candidates)
      looked += (looked.empty() ? "" : " and ") + c;
    return NotFoundError("metrics module not found (looked for " + looked +
                         "); reinstall the cmkfs package");
  }
  CMKFS_ASSIGN_OR_RETURN(
      std::filesystem::path trusted,
      CheckTrustedFile(path, "metrics module", FileSecrecy::kShared));
  void* handle = ::dlopen(trusted.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return IOError("cannot load the metrics module " + trusted.string() + ": " +
                   ::dlerror());
  }
  Module m;
  m.start = reinterpret_cast<decltype(m.start)>(
      ::dlsym(handle, "cmkfs_metrics_http_start"));
  m.stop = reinterpret_cast<decltype(m.stop)>(
      ::dlsym(handle, "cmkfs_metrics_http_stop"));
  if (m.start == nullptr || m.stop == nullptr) {
    return IOError("the metrics module " + trusted.string() +
                   " lacks cmkfs_metrics_http_start/stop");
  }
  loaded = m;
  return loaded;
}

class HttpMetricsServer final : public MetricsServer {
 public:
  HttpMetricsServer(const Config::Metrics& listen, Render render)
      : listen_(listen),
        address_(Describe(listen)),
        render_(std::move(render)) {}

  ~HttpMetricsServer() override {
    if (server_ != nullptr) module_.stop(server_);
    if (listen_.kind == Config::Metrics::Kind::kUnix && server_ != nullptr)
      ::unlink(listen_.socket_path.c_str());
  }

  const std::string& address() const override { return address_; }

  Status Start() {
    CMKFS_ASSIGN_OR_RETURN(module_, LoadModule());
    std::string host = listen_.host;
    const bool unix_socket = listen_.kind == Config::Metrics::Kind::kUnix;
    if (unix_socket) {
      host = listen_.socket_path.string();
      CMKFS_RETURN_IF_ERROR(
          ClearStaleSocket(host).WithContext("cannot listen on " + address_));
    }
    int err = 0;
    server_ = module_.start(host.c_str(), listen_.port, unix_socket ? 1 : 0,
                            &HttpMetricsServer::RenderInto, this, &err);
    if (server_ == nullptr) {
      return IOError("cannot listen on " + address_ + ": " +
                     (err != 0
                          ? std::string(std::strerror(err))
                          : std::string("cannot resolve or bind ") + host));
    }
    if (unix_socket && ::chmod(host.c_str(), 0600) != 0) {
      return ErrnoError("chmod " + host, errno);
    }
    return Status::Ok();
  }

 private:
  static void RenderInto(void* ctx, void* out, CmkfsMetricsAppend append) {
    const std::string text = static_cast<HttpMetricsServer*>(ctx)->render_();
    append(out, text.data(), text.size());
  }

  const Config::Metrics listen_;
  const std::string address_;
  const Render render_;
  Module module_;
  void* server_ = nullptr;
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
