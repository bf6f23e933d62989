// Test double: a fault-injecting wrapper over any IoLayer (crash,
// write-failure and power-cut tests). Not part of the product.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "cmkfs/io_layer.h"

namespace cmkfs::fs {

// Wraps another layer. Remembers what every write since the last DataSync of
// its file overwrote, so Crash() can restore the file to its last synced
// state (what a power loss does to the page cache). After Crash() every
// operation fails with IOError until Recover(). Write failures can be
// scheduled: the Nth write from now fails, or each write fails with a
// probability. Thread-safe.
class FaultInjectingIoLayer : public IoLayer {
 public:
  explicit FaultInjectingIoLayer(std::shared_ptr<IoLayer> base);
  ~FaultInjectingIoLayer() override;
  Result<std::shared_ptr<IoFile>> Open(
      const std::filesystem::path& path) override;

  // Drops every unsynced write and punch of every file, then fails all I/O.
  void Crash();
  // I/O works again (on the state Crash left).
  void Recover();
  // The `n`th WriteAt/DataSync from now (1 = the next) fails with IOError;
  // 0 disables.
  void FailNthWrite(uint64_t n);
  // Each WriteAt/DataSync fails with probability `p` (0 disables).
  void FailWritesRandomly(double p, uint64_t seed);
  // Injected failures report NoSpace (a full filesystem: ENOSPC) instead of
  // IOError.
  void FailWithNoSpace(bool no_space);
  // Called at the start of every DataSync of any file, outside the layer's
  // lock, before the sync runs (so a hook that calls Crash() cuts power at
  // that sync point). Null: none.
  void SetSyncHook(std::function<void()> hook);
  // Every ReadAt sleeps this long first (0 disables): a slow device, to hold
  // reads in flight.
  void DelayReads(std::chrono::milliseconds delay);
  uint64_t failed_writes() const;
  uint64_t unsynced_writes() const;

  class File;  // internal

 private:
  friend class File;
  Status MaybeFail(const char* what);
  mutable std::mutex mu_;
  std::shared_ptr<IoLayer> base_;
  std::map<std::string, std::shared_ptr<File>> files_;
  bool crashed_ = false;
  uint64_t fail_countdown_ = 0;
  double fail_probability_ = 0;
  bool fail_no_space_ = false;
  std::chrono::milliseconds read_delay_{0};
  std::function<void()> sync_hook_;
  std::mt19937_64 rng_;
  uint64_t failed_ = 0;
};

}  // namespace cmkfs::fs
