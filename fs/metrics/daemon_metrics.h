// The daemon's metrics (docs/metrics.md): per-resource I/O through the
// mount (fuse::IoObserver), keystore wrap/unwrap timing (a KeyStore
// decorator), key watcher polls and seals (WatcherOptions observers), and,
// read at scrape time, the engine's resources, seal states, disk encryption
// sets and backing pool, the watcher's counters and the build.
//
// Thread-safety: every method is thread-safe. The I/O path only touches
// atomics; SinkFor (at open) and Render (at scrape) lock.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/watcher.h"
#include "fuse_adapter.h"
#include "registry.h"

namespace cmkfs::metrics {

// "VERSION" and the git commit the build tree was configured at ("unknown"
// outside a git checkout).
std::string_view BuildVersion();
std::string_view BuildGitCommit();

class DaemonMetrics final : public fuse::IoObserver {
 public:
  DaemonMetrics();
  ~DaemonMetrics() override;
  DaemonMetrics(const DaemonMetrics&) = delete;
  DaemonMetrics& operator=(const DaemonMetrics&) = delete;

  // The I/O counters of one resource, created on its first open and kept
  // (with their values) until the daemon exits.
  fuse::IoSink* SinkFor(fs::ResourceKind kind, std::string_view name) override;

  // `inner` wrapped so that its WrapKey/UnwrapKey are timed. This object
  // must outlive the result.
  std::unique_ptr<keystore::KeyStore> WrapKeyStore(
      std::unique_ptr<keystore::KeyStore> inner);

  // Sets the poll and seal observers of `options` to this object's
  // histograms. This object must outlive the watcher.
  void ObserveWatcher(fs::WatcherOptions* options);

  // Sources read at scrape time; nullptr detaches one (before it goes
  // away). Without an engine the resource, DES and pool families are empty.
  void SetEngine(fs::Engine* engine);
  void SetWatcher(const fs::KeyWatcher* watcher);

  // The exposition text (one scrape at a time; concurrent calls wait).
  std::string Render();

 private:
  class ResourceIo;
  void CollectEngine(TextWriter& w);
  void CollectWatcher(TextWriter& w);
  void CollectBuild(TextWriter& w);

  Registry registry_;
  // I/O, labels kind, name, op.
  Family<Counter>* io_bytes_;
  Family<Counter>* io_ops_;
  Family<Counter>* io_errors_;
  Family<Histogram>* io_latency_;
  // Keystore.
  Histogram* unwrap_seconds_;
  Family<Counter>* unwrap_errors_;
  Histogram* wrap_seconds_;
  Family<Counter>* wrap_errors_;
  // Watcher.
  Histogram* poll_seconds_;
  Histogram* seal_latency_seconds_;
  Gauge* last_poll_time_;
  Counter* poll_failures_;
  // Scrape-time query failures, label source.
  Family<Counter>* scrape_errors_;
  const double start_time_;

  std::mutex sinks_mu_;
  std::map<std::pair<int, std::string>, std::unique_ptr<ResourceIo>> sinks_;

  std::mutex render_mu_;   // one scrape at a time
  std::mutex sources_mu_;  // guards the two pointers below
  fs::Engine* engine_ = nullptr;
  const fs::KeyWatcher* watcher_ = nullptr;
};

}  // namespace cmkfs::metrics
