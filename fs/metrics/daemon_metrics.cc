#include "daemon_metrics.h"

#include <array>
#include <map>
#include <vector>

#include "timed_keystore.h"

namespace cmkfs::metrics {
namespace {

using fs::ResourceKind;
using fuse::IoOp;

constexpr ResourceKind kKinds[] = {ResourceKind::kDisk, ResourceKind::kSnapshot,
                                   ResourceKind::kImage};
constexpr std::array<IoOp, 4> kOps = {IoOp::kRead, IoOp::kWrite, IoOp::kFlush,
                                      IoOp::kDiscard};

std::string_view OpName(IoOp op) {
  switch (op) {
    case IoOp::kRead:
      return "read";
    case IoOp::kWrite:
      return "write";
    case IoOp::kFlush:
      return "flush";
    case IoOp::kDiscard:
      return "discard";
  }
  return "read";
}

double Seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

double NowSeconds() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// The children of one resource, looked up once at its first open.
class DaemonMetrics::ResourceIo final : public fuse::IoSink {
 public:
  ResourceIo(DaemonMetrics& m, ResourceKind kind, std::string_view name) {
    const std::string k(fs::ResourceKindName(kind));
    const std::string n(name);
    for (size_t i = 0; i < kOps.size(); ++i) {
      const std::string op(OpName(kOps[i]));
      ops_[i] = &m.io_ops_->With({k, n, op});
      errors_[i] = &m.io_errors_->With({k, n, op});
      // Bytes of flushes are always 0: no series for them.
      bytes_[i] =
          kOps[i] == IoOp::kFlush ? nullptr : &m.io_bytes_->With({k, n, op});
      latency_[i] = kOps[i] == IoOp::kDiscard
                        ? nullptr
                        : &m.io_latency_->With({k, n, op});
    }
  }

  void Record(IoOp op, uint64_t bytes, std::chrono::nanoseconds latency,
              bool ok) override {
    const size_t i = static_cast<size_t>(op);
    if (i >= kOps.size()) return;
    ops_[i]->Inc();
    if (!ok) errors_[i]->Inc();
    if (bytes_[i] != nullptr && bytes > 0) bytes_[i]->Inc(bytes);
    if (latency_[i] != nullptr) latency_[i]->Observe(Seconds(latency));
  }

 private:
  std::array<Counter*, kOps.size()> ops_{};
  std::array<Counter*, kOps.size()> errors_{};
  std::array<Counter*, kOps.size()> bytes_{};
  std::array<Histogram*, kOps.size()> latency_{};
};

DaemonMetrics::DaemonMetrics() : start_time_(NowSeconds()) {
  const std::vector<std::string> io = {"kind", "name", "op"};
  io_bytes_ = &registry_.AddCounterFamily(
      "cmkfs_io_bytes_total",
      "Bytes read, written or discarded through the mount, per resource "
      "(op: read, write, discard).",
      io);
  io_ops_ = &registry_.AddCounterFamily(
      "cmkfs_io_operations_total",
      "Requests served through the mount, per resource (op: read, write, "
      "flush, discard); flush is every fsync and every close after writes.",
      io);
  io_errors_ = &registry_.AddCounterFamily(
      "cmkfs_io_errors_total",
      "Requests of cmkfs_io_operations_total that failed (EIO when sealed, "
      "ENOSPC, ...).",
      io);
  io_latency_ = &registry_.AddHistogramFamily(
      "cmkfs_io_latency_seconds",
      "Time the daemon spent on a read, write or flush request (op).", io,
      LatencyBuckets());
  unwrap_seconds_ = &registry_.AddHistogram(
      "cmkfs_keystore_unwrap_duration_seconds",
      "Duration of DEK unwraps with the customer key (opens, unseals).",
      LatencyBuckets());
  unwrap_errors_ = &registry_.AddCounterFamily(
      "cmkfs_keystore_unwrap_errors_total",
      "DEK unwraps that failed, by error kind (KeyUnavailable, "
      "PermissionDenied, Corruption, ...).",
      {"kind"});
  wrap_seconds_ = &registry_.AddHistogram(
      "cmkfs_keystore_wrap_duration_seconds",
      "Duration of DEK wraps (new disks, re-wraps on key rotation).",
      LatencyBuckets());
  wrap_errors_ = &registry_.AddCounterFamily(
      "cmkfs_keystore_wrap_errors_total",
      "DEK wraps that failed, by error kind.", {"kind"});
  poll_seconds_ = &registry_.AddHistogram(
      "cmkfs_watcher_poll_duration_seconds",
      "Duration of one key watcher poll (every key in use checked).",
      LatencyBuckets());
  seal_latency_seconds_ = &registry_.AddHistogram(
      "cmkfs_watcher_seal_latency_seconds",
      "From the start of the poll that found a key unusable to the resource "
      "being sealed.",
      LatencyBuckets());
  last_poll_time_ = &registry_.AddGauge(
      "cmkfs_watcher_last_poll_timestamp_seconds",
      "Unix time at which the last key watcher poll ended (0: none yet).");
  poll_failures_ = &registry_.AddCounter(
      "cmkfs_watcher_poll_failures_total",
      "Key watcher polls that could not list the key uses at all.");
  scrape_errors_ = &registry_.AddCounterFamily(
      "cmkfs_scrape_errors_total",
      "Scrape-time queries that failed (source: resources, des, pool); "
      "their families are missing from that scrape.",
      {"source"});
  registry_.AddCollector([this](TextWriter& w) { CollectEngine(w); });
  registry_.AddCollector([this](TextWriter& w) { CollectWatcher(w); });
  registry_.AddCollector([this](TextWriter& w) { CollectBuild(w); });
}

DaemonMetrics::~DaemonMetrics() = default;

fuse::IoSink* DaemonMetrics::SinkFor(ResourceKind kind, std::string_view name) {
  std::lock_guard lock(sinks_mu_);
  auto key = std::make_pair(static_cast<int>(kind), std::string(name));
  auto it = sinks_.find(key);
  if (it == sinks_.end()) {
    it = sinks_
             .emplace(std::move(key),
                      std::make_unique<ResourceIo>(*this, kind, name))
             .first;
  }
  return it->second.get();
}

std::unique_ptr<keystore::KeyStore> DaemonMetrics::WrapKeyStore(
    std::unique_ptr<keystore::KeyStore> inner) {
  return MakeTimedKeyStore(std::move(inner), {unwrap_seconds_, unwrap_errors_,
                                              wrap_seconds_, wrap_errors_});
}

void DaemonMetrics::ObserveWatcher(fs::WatcherOptions* options) {
  options->poll_observer = [this](std::chrono::microseconds took, bool ok) {
    poll_seconds_->Observe(Seconds(took));
    last_poll_time_->Set(NowSeconds());
    if (!ok) poll_failures_->Inc();
  };
  options->seal_observer = [this](std::chrono::microseconds latency) {
    seal_latency_seconds_->Observe(Seconds(latency));
  };
}

void DaemonMetrics::SetEngine(fs::Engine* engine) {
  std::lock_guard lock(sources_mu_);
  engine_ = engine;
}

void DaemonMetrics::SetWatcher(const fs::KeyWatcher* watcher) {
  std::lock_guard lock(sources_mu_);
  watcher_ = watcher;
}

std::string DaemonMetrics::Render() {
  std::lock_guard lock(render_mu_);
  return registry_.Render();
}

void DaemonMetrics::CollectEngine(TextWriter& w) {
  std::lock_guard lock(sources_mu_);
  if (engine_ == nullptr) return;

  std::vector<fs::ResourceInfo> resources;
  bool listed = true;
  for (ResourceKind kind : kKinds) {
    auto list = engine_->List(kind);
    if (!list.ok()) {
      listed = false;
      break;
    }
    for (auto& r : *list) resources.push_back(std::move(r));
  }
  if (!listed) {
    scrape_errors_->With({"resources"}).Inc();
  } else {
    auto id = [](const fs::ResourceInfo& r) {
      return Labels{{"kind", std::string(fs::ResourceKindName(r.kind))},
                    {"name", r.name}};
    };
    w.BeginFamily("cmkfs_resource_size_bytes",
                  "Size of each disk, snapshot and image.", "gauge");
    for (const auto& r : resources)
      w.Sample("cmkfs_resource_size_bytes", id(r), r.size);
    w.BeginFamily("cmkfs_resource_allocated_bytes",
                  "Backing extents allocated to each resource (thin disks "
                  "grow as they are written).",
                  "gauge");
    for (const auto& r : resources)
      w.Sample("cmkfs_resource_allocated_bytes", id(r), r.allocated_bytes);
    w.BeginFamily("cmkfs_open_handles",
                  "Open handles of each resource (files open through the "
                  "mount, exports).",
                  "gauge");
    for (const auto& r : resources)
      w.Sample("cmkfs_open_handles", id(r),
               static_cast<uint64_t>(r.open_handles));
    w.BeginFamily("cmkfs_resource_sealed",
                  "1 when the resource is sealed (its key is unusable; I/O "
                  "fails with EIO), with the seal reason; 0 when active.",
                  "gauge");
    for (const auto& r : resources) {
      Labels l = id(r);
      const bool sealed = r.state == fs::ResourceState::kSealed;
      l.emplace_back("reason", sealed ? r.seal_reason : "");
      w.Sample("cmkfs_resource_sealed", l, uint64_t{sealed ? 1u : 0u});
    }
    w.BeginFamily("cmkfs_resource_info",
                  "Always 1; the labels say how each resource is encrypted "
                  "(key_id: the key version that wraps its DEK).",
                  "gauge");
    for (const auto& r : resources) {
      Labels l = id(r);
      l.emplace_back("sku", std::string(fs::DiskSkuName(r.sku)));
      l.emplace_back("encryption",
                     std::string(fs::EncryptionTypeName(r.encryption)));
      l.emplace_back("des", r.des);
      l.emplace_back("key_id", r.key_id.ToString());
      w.Sample("cmkfs_resource_info", l, uint64_t{1});
    }
  }

  auto des = engine_->ListDes();
  auto uses = engine_->KeyUses();
  if (!des.ok() || !uses.ok()) {
    scrape_errors_->With({"des"}).Inc();
  } else {
    std::map<std::string, std::pair<uint64_t, uint64_t>> counts;  // all, done
    std::map<std::string, std::string> current;
    for (const auto& d : *des) current[d.name] = d.key_id.ToString();
    for (const auto& u : *uses) {
      if (u.des.empty()) continue;
      auto& [all, done] = counts[u.des];
      ++all;
      if (u.key_id.ToString() == current[u.des]) ++done;
    }
    auto named = [](const fs::DesInfo& d) { return Labels{{"des", d.name}}; };
    w.BeginFamily("cmkfs_des_resources",
                  "Resources whose DEK a disk encryption set wraps.", "gauge");
    for (const auto& d : *des)
      w.Sample("cmkfs_des_resources", named(d), counts[d.name].first);
    w.BeginFamily("cmkfs_des_resources_rewrapped",
                  "Resources of the set already wrapped by its current key "
                  "version; equal to cmkfs_des_resources once a rotation's "
                  "re-wrap is done.",
                  "gauge");
    for (const auto& d : *des)
      w.Sample("cmkfs_des_resources_rewrapped", named(d),
               counts[d.name].second);
    w.BeginFamily("cmkfs_des_rewrap_pending",
                  "1 while a key rotation of the set has not re-wrapped "
                  "every resource yet (the previous version is still "
                  "needed).",
                  "gauge");
    for (const auto& d : *des)
      w.Sample("cmkfs_des_rewrap_pending", named(d),
               uint64_t{d.previous_key_id ? 1u : 0u});
    w.BeginFamily("cmkfs_des_rotation_error",
                  "1 when the last rotation of the set failed (see cmkctl des "
                  "show).",
                  "gauge");
    for (const auto& d : *des)
      w.Sample("cmkfs_des_rotation_error", named(d),
               uint64_t{d.rotation_error.empty() ? 0u : 1u});
    w.BeginFamily("cmkfs_des_info",
                  "Always 1; the key version each set uses now.", "gauge");
    for (const auto& d : *des) {
      Labels l = named(d);
      l.emplace_back("key_id", d.key_id.ToString());
      l.emplace_back("auto_rotate", d.auto_rotate ? "true" : "false");
      w.Sample("cmkfs_des_info", l, uint64_t{1});
    }
  }

  auto pool = engine_->Stats();
  if (!pool.ok()) {
    scrape_errors_->With({"pool"}).Inc();
  } else {
    w.BeginFamily("cmkfs_pool_capacity_bytes",
                  "Capacity of the filesystem holding the extent pool.",
                  "gauge");
    w.Sample("cmkfs_pool_capacity_bytes", {}, pool->capacity_bytes);
    w.BeginFamily("cmkfs_pool_free_bytes",
                  "Free space of the filesystem holding the extent pool.",
                  "gauge");
    w.Sample("cmkfs_pool_free_bytes", {}, pool->free_bytes);
    w.BeginFamily("cmkfs_pool_allocated_bytes",
                  "Bytes of extents allocated in the pool (shared extents of "
                  "clones counted once).",
                  "gauge");
    w.Sample("cmkfs_pool_allocated_bytes", {}, pool->allocated_bytes);
  }
}

void DaemonMetrics::CollectWatcher(TextWriter& w) {
  fs::WatcherStats s;
  {
    std::lock_guard lock(sources_mu_);
    if (watcher_ == nullptr) return;
    s = watcher_->stats();
  }
  const std::pair<const char*, std::pair<const char*, uint64_t>> counters[] = {
      {"cmkfs_watcher_polls_total", {"Key watcher polls.", s.polls}},
      {"cmkfs_watcher_seals_total",
       {"Resources the key watcher sealed.", s.seals}},
      {"cmkfs_watcher_unseals_total",
       {"Resources the key watcher unsealed (key usable again).", s.unseals}},
      {"cmkfs_watcher_rotations_total",
       {"Disk encryption sets the watcher auto-rotated.", s.rotations}},
      {"cmkfs_watcher_errors_total",
       {"Failed steps of key watcher polls (each logged).", s.errors}},
      {"cmkfs_watcher_on_seal_started_total",
       {"on_seal commands started.", s.on_seal_started}},
      {"cmkfs_watcher_on_seal_failed_total",
       {"on_seal commands that could not start, exited non-zero or were "
        "killed.",
        s.on_seal_failed}},
  };
  for (const auto& [name, help_value] : counters) {
    w.BeginFamily(name, help_value.first, "counter");
    w.Sample(name, {}, help_value.second);
  }
  w.BeginFamily("cmkfs_watcher_on_seal_running",
                "on_seal commands still running.", "gauge");
  w.Sample("cmkfs_watcher_on_seal_running", {}, s.on_seal_running);
}

void DaemonMetrics::CollectBuild(TextWriter& w) {
  w.BeginFamily("cmkfs_build_info",
                "Always 1; the version and git commit of the running daemon.",
                "gauge");
  w.Sample("cmkfs_build_info",
           {{"version", std::string(BuildVersion())},
            {"git_commit", std::string(BuildGitCommit())}},
           uint64_t{1});
  w.BeginFamily("cmkfs_start_time_seconds",
                "Unix time at which the daemon started serving metrics.",
                "gauge");
  w.Sample("cmkfs_start_time_seconds", {}, start_time_);
}

}  // namespace cmkfs::metrics
