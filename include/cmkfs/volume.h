// A volume: a fixed-size array of bytes with holes, the interface of every
// layer of a disk's data path (fs/volume/). Layers stack: read-only over
// encrypted over thin over the stores (extent map, slot pool); each one does
// one job and reaches the one below only through this interface.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs::fs {

// The unit of holes, of encryption (one XTS tweak per sector) and of the
// alignment a thin volume demands.
inline constexpr uint64_t kVolumeSectorSize = 4096;

// Which sectors of one Read were holes: bit i is the i-th sector of the read.
// A read that reports holes covers at most kMaxSectors sectors (2 MiB).
class HoleMap {
 public:
  static constexpr size_t kMaxSectors = 512;
  void Clear() { bits_.reset(); }
  void Set(size_t first, size_t count) {
    for (size_t i = first; i < first + count; ++i) bits_.set(i);
  }
  bool hole(size_t sector) const { return bits_.test(sector); }
  bool any() const { return bits_.any(); }

 private:
  std::bitset<kMaxSectors> bits_;
};

// The answer of BlockStatus: the range starting at the asked offset is data
// (allocated; it may still read as zeros) or a hole (reads as zeros, takes no
// space) for `length` bytes (>= 1, up to the asked length).
struct BlockRun {
  bool data = false;
  uint64_t length = 0;
};

// Thread-safety: every method may be called from many threads at once. Writes
// to disjoint ranges never interfere; overlapping concurrent writes leave
// either one's bytes in each sector. A write is visible to every read that
// starts after it returns.
//
// Ranges: [offset, offset + length) must lie inside [0, Size()), else
// OutOfRange naming the range and the size. Alignment: offsets and lengths
// must be multiples of alignment() (InvalidArgument otherwise).
//
// Errors every method may return besides those: KeyUnavailable (an encrypted
// volume whose key was dropped: no byte of plaintext is returned or taken),
// ReadOnly (writes to a read-only volume), IOError and Corruption (the store
// below), NoSpace (a write or zero that needs a new block).
class Volume {
 public:
  virtual ~Volume() = default;

  virtual uint64_t Size() const = 0;
  // 1 (any byte) or kVolumeSectorSize.
  virtual uint64_t alignment() const = 0;

  // Fills `buf` with the bytes at `offset`; holes read as zeros. With
  // `holes` non-null the range must be sector-aligned and at most
  // HoleMap::kMaxSectors sectors (InvalidArgument otherwise), and `holes`
  // gets the sectors that are holes (their bytes in `buf` are zeros).
  virtual Status Read(uint64_t offset, std::span<uint8_t> buf,
                      HoleMap* holes) = 0;
  // Writes all of `data` at `offset`.
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Makes the range read as zeros. `unmap`: blocks wholly inside it become
  // holes (their space is released once the change is committed) and only
  // the parts left are written as zeros; otherwise the range stays (or
  // becomes) allocated.
  virtual Status Zero(uint64_t offset, uint64_t length, bool unmap) = 0;
  // Whether [offset, offset + length) starts with data or a hole, and how
  // long that run is (it may be reported shorter than it is, never longer).
  virtual Result<BlockRun> BlockStatus(uint64_t offset, uint64_t length) = 0;
  // Makes every write, zero and unmap that returned before the call durable.
  virtual Status Flush() = 0;
};

// The OutOfRange/InvalidArgument checks every layer applies first, with the
// messages of the engine's data path ("write of N bytes at offset O goes past
// the end of NAME (S bytes)"). `what` is "read", "write" or "zero".
Status CheckVolumeRange(std::string_view name, std::string_view what,
                        uint64_t offset, uint64_t length, uint64_t size,
                        uint64_t alignment);

// The first offset in [offset, end) where `volume` holds data (`data` true)
// or a hole (`data` false), walking BlockStatus; nullopt when there is none
// (SEEK_DATA / SEEK_HOLE). Errors: those of BlockStatus.
Result<std::optional<uint64_t>> FindBlockRun(Volume& volume, uint64_t offset,
                                             uint64_t end, bool data);

}  // namespace cmkfs::fs
