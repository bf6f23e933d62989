// Test double: cuts power at one sync point of an engine that runs on the
// fault-injecting pool I/O layer and metadata store. Not part of the
// product.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "support/fault_io_layer.h"
#include "support/fault_meta_store.h"

namespace cmkfs::fs {

// A sync point is the start of a pool DataSync or of a metadata Sync.
// Counts them; when armed, cuts power at the chosen one, before it runs:
// the pool loses every unsynced write and punch, the metadata store every
// unsynced commit (or keeps them, as if written back just before the cut),
// and every later operation of either fails until Restore(). Thread-safe.
class PowerCut {
 public:
  PowerCut(std::shared_ptr<FaultInjectingIoLayer> io,
           std::shared_ptr<FaultInjectingMetaStore> meta);
  ~PowerCut();
  PowerCut(const PowerCut&) = delete;
  PowerCut& operator=(const PowerCut&) = delete;

  // Restarts the count; cuts at the `n`th sync point from now (1 = the
  // next), or never when `n` is 0 (a dry run that only counts).
  void Arm(uint64_t n, bool keep_unsynced_metadata = false);
  // Cuts power now (between two sync points).
  void CutNow(bool keep_unsynced_metadata = false);
  // Sync points seen since Arm (including the one cut at), in order:
  // "pool" or "metadata".
  std::vector<std::string> points() const;
  bool cut() const;
  // Power is back: applies the cut to both stores and lets I/O through.
  Status Restore();

 private:
  void OnSync(const char* what);
  void CutLocked();
  std::shared_ptr<FaultInjectingIoLayer> io_;
  std::shared_ptr<FaultInjectingMetaStore> meta_;
  mutable std::mutex mu_;
  uint64_t target_ = 0;
  bool keep_ = false;
  bool cut_ = false;
  std::vector<std::string> points_;
};

}  // namespace cmkfs::fs
