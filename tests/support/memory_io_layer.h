// Test double: backing files held in memory, for fast model runs of the
// engine. Not part of the product.
#pragma once

#include <memory>

#include "cmkfs/io_layer.h"

namespace cmkfs::fs {

// Files held in memory for the life of the layer object (so an engine can be
// closed and reopened on the same layer). Sparse: untouched 64 KiB chunks
// take no memory. DataSync does nothing. Thread-safe.
std::shared_ptr<IoLayer> NewMemoryIoLayer();

}  // namespace cmkfs::fs
