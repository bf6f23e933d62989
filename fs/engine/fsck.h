// Consistency check of the engine's metadata against itself and the pool
// file: extent maps, refcounts, the free list, the allocation high-water
// mark, the per-resource extent counts, and whether each resource's wrapped
// DEK still has its erase slot.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "cmkfs/engine.h"
#include "cmkfs/meta_store.h"
#include "cmkfs/status.h"

namespace cmkfs::fs {

struct FsckTables {
  MetaTable meta = 0;       // "alloc": the high-water mark
  MetaTable resources = 0;  // resource records
  MetaTable extmap = 0;     // (rid, idx) -> slot
  MetaTable refcount = 0;   // slot -> count
  MetaTable free = 0;       // slot -> ""
  MetaTable counts = 0;     // rid -> mapped extents
};

// What fsck knows of the extent pool.
struct FsckPool {
  uint64_t size = 0;  // bytes in the pool file now
  std::string path;   // for the messages
  // Whether the slot's data was already missing when the engine opened
  // (the pool file was shorter than the slots allocated then).
  std::function<bool(uint64_t slot)> slot_lost;
};

// What fsck knows of the resources' wrapped DEKs.
struct FsckKeys {
  // Why `wrapped_dek` no longer opens (its erase slot is erased, or holds
  // another record's secret), or nullopt. Empty: not checked.
  std::function<std::optional<std::string>(
      std::span<const uint8_t> wrapped_dek)>
      wrapped_dek_problem;
};

// Reads every table through `txn` (one consistent snapshot; the caller
// committed pending mappings first) and reports each inconsistency as one
// line, at most 1000. Changes nothing. Errors: only the store's (a
// malformed entry is a problem line, not an error), Corruption for an
// undecodable allocation record or extent count.
Result<FsckReport> CheckMetadata(const MetaTxn& txn, const FsckTables& t,
                                 const FsckPool& pool,
                                 const FsckKeys& keys = {});

}  // namespace cmkfs::fs
