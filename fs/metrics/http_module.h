// The C interface of cmkfs-metrics-http.so, the module that holds the only
// code including cpp-httplib. The daemon loads it with dlopen, and only when
// [metrics] listen is set: Debian's libcpp-httplib is linked with libssl,
// whose initialisation at load time allocates through OpenSSL before
// core/crypto.cc can install its wiping allocator (which OpenSSL accepts only
// before its first allocation), so the library must never be a load-time
// dependency of cmkfs.
#pragma once

#include <stddef.h>

extern "C" {

using CmkfsMetricsAppend = void (*)(void* out, const char* data, size_t len);
// Writes one scrape's text through append(out, ...); called on the module's
// threads, one scrape at a time.
using CmkfsMetricsRender = void (*)(void* ctx, void* out,
                                    CmkfsMetricsAppend append);

// Binds `host`:`port` (TCP), or the unix socket path `host` when
// `unix_socket` is non-zero, and serves GET /metrics with `render` on two
// threads. Returns the server, or null with *error set to an errno value
// (0 when the host did not resolve).
void* cmkfs_metrics_http_start(const char* host, int port, int unix_socket,
                               CmkfsMetricsRender render, void* ctx,
                               int* error);
// Stops serving and joins the threads. `server` is from start.
void cmkfs_metrics_http_stop(void* server);
}
