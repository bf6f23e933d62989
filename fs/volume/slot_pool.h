// The slot pool: fixed-size slots of ciphertext in one backing file
// (extents/pool.0), their allocation (free list first, else the high-water
// mark), the space reserve of the backing filesystem, hole punching of freed
// slots and the check that a mapped slot still holds data (docs/format.md).
// It owns the "free" table and the "alloc" record; the extent map decides
// when a slot is taken or freed and commits both in one transaction.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include "cmkfs/io_layer.h"
#include "cmkfs/meta_store.h"
#include "cmkfs/mutex.h"

namespace cmkfs::fs {

struct SlotPoolOptions {
  std::filesystem::path pool_path;     // named in errors
  std::filesystem::path backing_dir;   // statvfs for the reserve
  uint64_t backing_reserve_bytes = 0;  // 0: 1% of capacity, 4 MiB..1 GiB
  MetaTable free_table = 0;            // "free"
  MetaTable meta_table = 0;            // "meta" (its "alloc" record)
  uint64_t hwm = 0;                    // committed high-water mark
  uint64_t file_size = 0;              // pool file size at open
};

// Thread-safe; mu_ is a leaf (taken last, held for no other lock).
class SlotPool {
 public:
  SlotPool(std::shared_ptr<IoFile> file, MetaStore* meta,
           SlotPoolOptions options);

  IoFile& file() { return *file_; }
  const std::filesystem::path& path() const { return options_.pool_path; }
  const std::filesystem::path& backing_dir() const {
    return options_.backing_dir;
  }

  // A slot for a new extent: NoSpace when the backing filesystem is down to
  // its reserve. `refill`: the free cache may be refilled from the free
  // table (only while no commit runs; slots in `taken` are skipped).
  // `*from_free` tells whether it came off the free list (the commit then
  // deletes it from the table).
  Result<uint64_t> Take(const std::unordered_set<uint64_t>& taken, bool refill,
                        bool* from_free) EXCLUDES(mu_);
  uint64_t hwm() const EXCLUDES(mu_);
  // In a commit's write transaction: `taken` leave the free table, `freed`
  // join it, and the high-water mark `hwm` is stored if given.
  Status RecordCommit(MetaTxn& txn, const std::unordered_set<uint64_t>& taken,
                      const std::vector<uint64_t>& freed,
                      std::optional<uint64_t> hwm);
  // After the commit that freed `freed` is durable: punch them, then offer
  // them for reuse.
  void Release(const std::vector<uint64_t>& freed) EXCLUDES(mu_);

  // Corruption unless `slot` lies inside the pool file and its data was not
  // lost to a truncated or missing file. Re-stats the file only when the
  // slot lies beyond the size seen last.
  Status CheckSlot(uint64_t slot);
  bool SlotLost(uint64_t slot) EXCLUDES(rewritten_mu_);
  // A lost slot that was written in full holds data again.
  void MarkSlotRewritten(uint64_t slot) EXCLUDES(rewritten_mu_);
  // Whether the backing filesystem is at or below its reserve (statvfs now).
  bool BackingFull() const;
  // Pool writes before the call are durable (step 1 of a commit).
  Status DataSync() { return file_->DataSync(); }

 private:
  struct BackingSpace {
    uint64_t avail = 0;    // bytes an unprivileged writer may still use
    uint64_t reserve = 0;  // bytes kept for metadata
  };
  // statvfs of the backing directory now; nullopt when statvfs fails.
  std::optional<BackingSpace> ReadBackingSpace() const;
  // NoSpace when the backing filesystem is down to its reserve. Looks at
  // statvfs every few allocations, or at each one when space is short.
  Status CheckBackingSpace() REQUIRES(mu_);
  Status RefillFreeCache(const std::unordered_set<uint64_t>& taken)
      REQUIRES(mu_);

  const std::shared_ptr<IoFile> file_;
  MetaStore* const meta_;
  const SlotPoolOptions options_;
  // Largest pool file size seen; slots below it are inside the file.
  std::atomic<uint64_t> known_size_;
  // Slots [lost_begin_, lost_end_) were allocated but lay beyond the end of
  // the pool file at open (truncated or missing file): their data is gone.
  const uint64_t lost_begin_, lost_end_;
  Mutex rewritten_mu_;
  std::unordered_set<uint64_t> rewritten_ GUARDED_BY(rewritten_mu_);

  mutable Mutex mu_;
  uint64_t hwm_ GUARDED_BY(mu_);  // next never-used slot
  std::vector<uint64_t> free_cache_ GUARDED_BY(mu_);
  bool free_db_has_more_ GUARDED_BY(mu_) = true;
  uint32_t allocs_since_space_check_ GUARDED_BY(mu_) = 0;
  bool space_short_ GUARDED_BY(mu_) = true;
};

}  // namespace cmkfs::fs
