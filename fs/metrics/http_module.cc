// cmkfs-metrics-http.so: GET /metrics with cpp-httplib (see http_module.h).
//
// Debian's libcpp-httplib is built with OpenSSL support, but this module is
// compiled without CPPHTTPLIB_OPENSSL_SUPPORT so that no OpenSSL header is
// included outside core/. The only type whose layout that changes is
// httplib::Request (an SSL pointer and the members after it); this file
// never constructs, copies or destroys a Request and reads none of its
// members (routing is the library's), so no code built from the other layout
// runs here. The test metrics.http_abi checks that the module defines no
// httplib::Request symbol.
#include "http_module.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <string>
#include <thread>

namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

struct Server {
  httplib::Server http;
  std::thread thread;
};

void Append(void* out, const char* data, size_t len) {
  static_cast<std::string*>(out)->append(data, len);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) void*
cmkfs_metrics_http_start(const char* host, int port, int unix_socket,
                         CmkfsMetricsRender render, void* ctx, int* error) {
  auto* s = new Server;
  // Two threads: a flood of connections costs no more than two threads.
  s->http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  s->http.set_read_timeout(5, 0);
  s->http.set_write_timeout(5, 0);
  s->http.set_keep_alive_timeout(5);
  s->http.set_payload_max_length(4096);
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would
  // let two daemons share a port silently.
  s->http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s->http.Get("/metrics",
              [render, ctx](const httplib::Request&, httplib::Response& res) {
                std::string body;
                render(ctx, &body, Append);
                res.set_content(body, kContentType);
              });
  s->http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        res.status = 500;
        res.set_content("metrics unavailable\n", "text/plain");
      });
  if (unix_socket != 0) {
    s->http.set_address_family(AF_UNIX);
    // Ignored for AF_UNIX, but 0 would make httplib ask the socket for the
    // port it got, which fails.
    port = 80;
  }
  errno = 0;
  if (!s->http.bind_to_port(host, port)) {
    *error = errno;
    delete s;
    return nullptr;
  }
  try {
    s->thread = std::thread([s] { s->http.listen_after_bind(); });
  } catch (const std::exception&) {
    *error = EAGAIN;
    delete s;
    return nullptr;
  }
  // httplib's stop() does nothing until the loop runs: a stop right after
  // the start would leave the thread accepting forever. Wait (5 s at most)
  // for the loop.
  for (int i = 0; i < 5000 && !s->http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return s;
}

extern "C" __attribute__((visibility("default"))) void cmkfs_metrics_http_stop(
    void* server) {
  auto* s = static_cast<Server*>(server);
  s->http.stop();
  if (s->thread.joinable()) s->thread.join();
  delete s;
}
