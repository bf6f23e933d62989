#include "slot_pool.h"

#include <sys/statvfs.h>

#include <algorithm>

#include "cmkfs/record.h"
#include "extent_records.h"

namespace cmkfs::fs {
namespace {

constexpr size_t kFreeCacheMax = 4096;
constexpr uint32_t kAllocsPerSpaceCheck = 16;  // 1 MiB of new extents

}  // namespace

SlotPool::SlotPool(std::shared_ptr<IoFile> file, MetaStore* meta,
                   SlotPoolOptions options)
    : file_(std::move(file)),
      meta_(meta),
      options_(std::move(options)),
      known_size_(options_.file_size),
      lost_begin_(std::min(options_.file_size / kExtentSize, options_.hwm)),
      lost_end_(options_.hwm),
      hwm_(options_.hwm) {}

std::optional<SlotPool::BackingSpace> SlotPool::ReadBackingSpace() const {
  struct statvfs vfs {};
  if (::statvfs(options_.backing_dir.c_str(), &vfs) != 0) return std::nullopt;
  BackingSpace space;
  space.avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  space.reserve = options_.backing_reserve_bytes;
  if (space.reserve == 0) {
    uint64_t capacity = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    space.reserve =
        std::clamp<uint64_t>(capacity / 100, 4ull << 20, 1ull << 30);
  }
  return space;
}

bool SlotPool::BackingFull() const {
  std::optional<BackingSpace> space = ReadBackingSpace();
  return space && space->avail <= space->reserve;
}

Status SlotPool::CheckBackingSpace() {
  if (!space_short_ && ++allocs_since_space_check_ < kAllocsPerSpaceCheck) {
    return Status::Ok();
  }
  allocs_since_space_check_ = 0;
  std::optional<BackingSpace> space = ReadBackingSpace();
  if (!space) return Status::Ok();
  const uint64_t avail = space->avail, reserve = space->reserve;
  // Short: less than the reserve plus what a burst of unchecked
  // allocations may take from several threads.
  space_short_ = avail < reserve + 4 * kAllocsPerSpaceCheck * kExtentSize;
  if (avail >= reserve + kExtentSize) return Status::Ok();
  return NoSpaceError("backing filesystem of " + options_.backing_dir.string() +
                      " is full: " + std::to_string(avail) + " bytes free, " +
                      std::to_string(reserve) +
                      " kept for metadata; delete disks or snapshots, or "
                      "give it more space");
}

Result<uint64_t> SlotPool::Take(const std::unordered_set<uint64_t>& taken,
                                bool refill, bool* from_free) {
  MutexLock lock(&mu_);
  CMKFS_RETURN_IF_ERROR(CheckBackingSpace());
  if (free_cache_.empty() && free_db_has_more_ && refill) {
    CMKFS_RETURN_IF_ERROR(RefillFreeCache(taken));
  }
  if (free_cache_.empty()) {
    *from_free = false;
    return hwm_++;
  }
  uint64_t slot = free_cache_.back();
  free_cache_.pop_back();
  *from_free = true;
  // Written in full before it is mapped again.
  if (SlotLost(slot)) MarkSlotRewritten(slot);
  return slot;
}

uint64_t SlotPool::hwm() const {
  MutexLock lock(&mu_);
  return hwm_;
}

Status SlotPool::RefillFreeCache(const std::unordered_set<uint64_t>& taken) {
  CMKFS_ASSIGN_OR_RETURN(auto txn, meta_->BeginRead());
  CMKFS_ASSIGN_OR_RETURN(auto cur, txn->Scan(options_.free_table));
  CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
  while (ok && free_cache_.size() < kFreeCacheMax) {
    CMKFS_ASSIGN_OR_RETURN(uint64_t slot, DecodeU64Key(cur->key()));
    if (!taken.contains(slot)) free_cache_.push_back(slot);
    CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
  }
  free_db_has_more_ = ok;
  std::reverse(free_cache_.begin(), free_cache_.end());  // lowest first
  return Status::Ok();
}

Status SlotPool::RecordCommit(MetaTxn& txn,
                              const std::unordered_set<uint64_t>& taken,
                              const std::vector<uint64_t>& freed,
                              std::optional<uint64_t> hwm) {
  for (uint64_t slot : taken) {
    Status st = txn.Delete(options_.free_table, EncodeSlot(slot));
    if (!st.ok() && st.kind() != ErrorKind::kNotFound) return st;
  }
  for (uint64_t slot : freed) {
    CMKFS_RETURN_IF_ERROR(txn.Put(options_.free_table, EncodeSlot(slot), ""));
  }
  if (!hwm) return Status::Ok();
  return txn.Put(options_.meta_table, "alloc", EncodeCount(*hwm));
}

void SlotPool::Release(const std::vector<uint64_t>& freed) {
  for (uint64_t slot : freed) {
    file_->PunchHole(slot * kExtentSize, kExtentSize).IgnoreError();
  }
  MutexLock lock(&mu_);
  for (uint64_t slot : freed) {
    if (free_cache_.size() < kFreeCacheMax) {
      free_cache_.push_back(slot);
    } else {
      free_db_has_more_ = true;
    }
  }
}

bool SlotPool::SlotLost(uint64_t slot) {
  if (slot < lost_begin_ || slot >= lost_end_) return false;
  MutexLock lock(&rewritten_mu_);
  return !rewritten_.contains(slot);
}

void SlotPool::MarkSlotRewritten(uint64_t slot) {
  if (slot < lost_begin_ || slot >= lost_end_) return;
  MutexLock lock(&rewritten_mu_);
  rewritten_.insert(slot);
}

Status SlotPool::CheckSlot(uint64_t slot) {
  const uint64_t end = (slot + 1) * kExtentSize;
  uint64_t known = known_size_.load(std::memory_order_relaxed);
  if (end <= known && !SlotLost(slot)) return Status::Ok();
  if (end > known) {
    CMKFS_ASSIGN_OR_RETURN(uint64_t size, file_->Size());
    while (size > known && !known_size_.compare_exchange_weak(
                               known, size, std::memory_order_relaxed)) {
    }
    known = std::max(known, size);
  }
  if (end <= known && !SlotLost(slot)) return Status::Ok();
  return CorruptionError(
      "extent pool file " + options_.pool_path.string() +
      " is truncated or was replaced: slot " + std::to_string(slot) +
      " (bytes " + std::to_string(slot * kExtentSize) + ".." +
      std::to_string(end) +
      ") lies beyond the data it held; this extent is lost (run cmkctl fsck, "
      "restore the file from a backup)");
}

}  // namespace cmkfs::fs
