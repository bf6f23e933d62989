// The metrics listener: serves GET /metrics (Prometheus text format 0.0.4)
// on a TCP address or a unix socket with cpp-httplib, on two threads of its
// own. The HTTP part lives in cmkfs-metrics-http.so (http_module.h), loaded
// on the first Start: cmkfs itself never links cpp-httplib.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cmkfs/config.h"
#include "cmkfs/status.h"

namespace cmkfs::metrics {

class MetricsServer {
 public:
  // Produces the exposition text; called on the server's threads.
  using Render = std::function<std::string()>;

  // Binds `listen` (kTcp or kUnix) and starts serving. A unix socket is
  // created with mode 0600; a stale one (nobody listening) is replaced.
  // InvalidArgument for kOff; IOError naming the address and the reason when
  // it cannot bind ("Address already in use", a host that does not
  // resolve, a path that is not a socket); NotFound or IOError when the
  // module is missing or cannot be loaded.
  static Result<std::unique_ptr<MetricsServer>> Start(
      const Config::Metrics& listen, Render render);

  // Stops serving, joins the threads, removes the unix socket.
  virtual ~MetricsServer() = default;

  // Where it listens, as configured: "127.0.0.1:9469", "unix:/run/x.sock".
  virtual const std::string& address() const = 0;
};

}  // namespace cmkfs::metrics
