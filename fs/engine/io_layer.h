// Backing-file I/O for the disk engine's extent pool. Three implementations:
// POSIX files (production), memory (tests, fast model runs) and a
// fault-injecting wrapper over any other layer (crash and write-failure
// tests). The engine never calls pread/pwrite on its pool directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/status.h"

namespace cmkfs::fs {

// One open backing file. All methods are thread-safe and may run
// concurrently on disjoint (or overlapping: last writer wins) ranges.
class IoFile {
 public:
  virtual ~IoFile() = default;
  // Reads exactly buf.size() bytes; bytes past the end of the file read as
  // zeros. IOError on failure.
  virtual Status ReadAt(uint64_t offset, std::span<uint8_t> buf) = 0;
  // Writes all of `data`, growing the file as needed. NoSpace when full.
  virtual Status WriteAt(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Makes every completed WriteAt/PunchHole durable.
  virtual Status DataSync() = 0;
  // Deallocates the range (it reads back as zeros); the size is kept.
  virtual Status PunchHole(uint64_t offset, uint64_t length) = 0;
  virtual Result<uint64_t> Size() = 0;
};

class IoLayer {
 public:
  virtual ~IoLayer() = default;
  // Opens `path`, creating an empty file if it does not exist. The parent
  // directory must exist (POSIX layer). Thread-safe.
  virtual Result<std::shared_ptr<IoFile>> Open(
      const std::filesystem::path& path) = 0;
};

// Real files (pread/pwrite/fdatasync/fallocate(PUNCH_HOLE)).
std::shared_ptr<IoLayer> NewPosixIoLayer();
// Files held in memory for the life of the layer object (so an engine can be
// closed and reopened on the same layer). Sparse: untouched 64 KiB chunks
// take no memory.
std::shared_ptr<IoLayer> NewMemoryIoLayer();

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
  std::mt19937_64 rng_;
  uint64_t failed_ = 0;
};

}  // namespace cmkfs::fs
