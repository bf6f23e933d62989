// Test double: a volume held in memory, the bottom of the layer stacks the
// typed Volume suite builds. Not part of the product.
#pragma once

#include <cstdint>
#include <memory>

#include "cmkfs/volume.h"

namespace cmkfs::fs {

// `size` bytes, all holes at first; any alignment. Allocation is per 4 KiB
// sector: a sector becomes data when any byte of it is written (or zeroed
// without unmap) and a hole again when Zero with unmap covers all of it.
// Flush does nothing. Thread-safe.
std::unique_ptr<Volume> NewMemoryVolume(uint64_t size);

}  // namespace cmkfs::fs
