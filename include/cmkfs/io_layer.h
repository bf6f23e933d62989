// Backing-file I/O for the disk engine's extent pool. The product has one
// implementation, POSIX files (fs/engine/posix_io_layer.cc); the tests add
// memory files and a fault-injecting wrapper (tests/support). The engine
// never calls pread/pwrite on its pool directly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

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

struct PosixIoOptions {
  // O_DIRECT: transfers on 4 KiB boundaries bypass the host's page cache
  // (misaligned memory goes through a bounce buffer; a range off those
  // boundaries goes through a buffered descriptor of the same file). Open
  // fails with InvalidArgument on a filesystem without O_DIRECT (tmpfs).
  bool direct = false;
};

// Real files (pread/pwrite/fdatasync/fallocate(PUNCH_HOLE)).
std::shared_ptr<IoLayer> NewPosixIoLayer(PosixIoOptions options = {});

}  // namespace cmkfs::fs
