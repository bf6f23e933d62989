// The extent geometry of on-disk format 1 and the encodings of the extent
// tables ("extmap", "refcount", "counts": docs/format.md). Shared by the
// extent map and fsck.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs::fs {

constexpr uint64_t kExtentSize = 64 * 1024;
constexpr uint64_t kSectorBytes = 4096;
constexpr uint64_t kSectorsPerExtent = kExtentSize / kSectorBytes;

// Extents covering `size` bytes, without the overflow of rounding up.
constexpr uint64_t ExtentCount(uint64_t size) {
  return size / kExtentSize + (size % kExtentSize != 0 ? 1 : 0);
}

// Key in "extmap": resource id and extent index, both big-endian.
std::string MapKey(uint64_t rid, uint64_t idx);
std::string EncodeSlot(uint64_t slot);
// Corruption unless 8 bytes.
Result<uint64_t> DecodeSlot(std::string_view v);
std::string EncodeCount(uint64_t n);
// Corruption naming `what` for a malformed count record.
Result<uint64_t> DecodeCount(std::string_view v, std::string_view what);

}  // namespace cmkfs::fs
