// The thin-provisioning layer: extent -> slot mapping over the extent map and
// the slot pool, copy-on-write of shared extents (of the stored bytes as they
// are: ciphertext needs no key), unmap. Sector-aligned I/O only.
#include <algorithm>
#include <array>
#include <cstring>

#include "extent_map.h"
#include "extent_records.h"
#include "layers.h"

namespace cmkfs::fs {
namespace {

// Aligned reads hold up to this many stripes at once.
constexpr size_t kRunExtents = 32;

struct ExtentBuffer {
  alignas(4096) uint8_t bytes[kExtentSize];
};
uint8_t* ThreadExtentBuffer() {
  thread_local std::unique_ptr<ExtentBuffer> b =
      std::make_unique<ExtentBuffer>();
  return b->bytes;
}

class ThinVolume : public Volume {
 public:
  ThinVolume(ExtentMap* map, ThinSpec spec)
      : map_(map), pool_(&map->pool()), spec_(std::move(spec)) {}

  uint64_t Size() const override { return spec_.size->load(); }
  uint64_t alignment() const override { return kSectorBytes; }

  Status Read(uint64_t offset, std::span<uint8_t> buf,
              HoleMap* holes) override {
    CMKFS_RETURN_IF_ERROR(CheckVolumeRange(spec_.name, "read", offset,
                                           buf.size(), Size(), kSectorBytes));
    if (holes && buf.size() > HoleMap::kMaxSectors * kSectorBytes) {
      return InvalidArgumentError("read of " + spec_.name +
                                  " reporting holes is over 2 MiB");
    }
    for (uint64_t pos = 0; pos < buf.size();) {
      uint64_t at = offset + pos;
      // Up to kRunExtents extents, ending on an extent boundary.
      uint64_t end = std::min<uint64_t>(
          buf.size(), (at / kExtentSize + kRunExtents) * kExtentSize - offset);
      CMKFS_RETURN_IF_ERROR(
          ReadRun(at, buf.data() + pos, end - pos, holes, pos / kSectorBytes));
      pos = end;
    }
    return Status::Ok();
  }

  Status Write(uint64_t offset, std::span<const uint8_t> data) override {
    CMKFS_RETURN_IF_ERROR(CheckVolumeRange(spec_.name, "write", offset,
                                           data.size(), Size(), kSectorBytes));
    for (uint64_t pos = 0; pos < data.size();) {
      uint64_t at = offset + pos;
      uint64_t eo = at % kExtentSize;
      uint64_t len = std::min<uint64_t>(kExtentSize - eo, data.size() - pos);
      CMKFS_RETURN_IF_ERROR(
          WriteExtent(at / kExtentSize, eo, data.data() + pos, len, false));
      pos += len;
    }
    return Status::Ok();
  }

  Status Zero(uint64_t offset, uint64_t length, bool unmap) override {
    CMKFS_RETURN_IF_ERROR(CheckVolumeRange(spec_.name, "zero", offset, length,
                                           Size(), kSectorBytes));
    const uint64_t size = Size();
    for (uint64_t pos = 0; pos < length;) {
      uint64_t at = offset + pos;
      uint64_t eo = at % kExtentSize;
      uint64_t len = std::min<uint64_t>(kExtentSize - eo, length - pos);
      uint64_t idx = at / kExtentSize;
      // A whole extent, or the tail of the last one up to the end of the disk.
      bool whole = eo == 0 && (len == kExtentSize || at + len == size);
      if (whole && unmap) {
        CMKFS_RETURN_IF_ERROR(UnmapExtent(idx));
      } else {
        CMKFS_RETURN_IF_ERROR(WriteExtent(idx, eo, nullptr, len, !unmap));
      }
      pos += len;
    }
    return Status::Ok();
  }

  Result<BlockRun> BlockStatus(uint64_t offset, uint64_t length) override {
    const uint64_t size = Size();
    CMKFS_RETURN_IF_ERROR(
        CheckVolumeRange(spec_.name, "block status", offset, length, size, 1));
    if (length == 0) {
      return InvalidArgumentError("block status of " + spec_.name +
                                  ": the range is empty");
    }
    const uint64_t end = offset + length;
    const uint64_t last = ExtentCount(end);
    uint64_t idx = offset / kExtentSize;
    CMKFS_ASSIGN_OR_RETURN(bool data, Mapped(idx));
    uint64_t next = idx + 1;
    if (data) {
      while (next < last) {
        CMKFS_ASSIGN_OR_RETURN(bool m, Mapped(next));
        if (!m) break;
        ++next;
      }
    } else {
      // Extents before the next candidate are unmapped; a candidate may be
      // unmapped too (a stale entry), so look at it.
      while (next < last) {
        CMKFS_ASSIGN_OR_RETURN(next,
                               map_->NextMappedCandidate(spec_.rid, next));
        if (next >= last) break;
        CMKFS_ASSIGN_OR_RETURN(bool m, Mapped(next));
        if (m) break;
        ++next;
      }
    }
    uint64_t run_end = std::min(end, std::min(next, last) * kExtentSize);
    return BlockRun{data, run_end - offset};
  }

  Status Flush() override { return map_->CommitPending(spec_.rid); }

 private:
  Result<bool> Mapped(uint64_t idx) {
    ExtKey k{spec_.rid, idx};
    ReaderLock stripe(&map_->Stripe(k));
    CMKFS_ASSIGN_OR_RETURN(ExtEntry e, map_->Lookup(k));
    return e.slot != kNoSlot;
  }

  // What a hole holds for the layer above, for [offset, offset + n).
  Status Fill(uint64_t offset, uint8_t* out, uint64_t n) {
    if (!spec_.fill) {
      std::memset(out, 0, n);
      return Status::Ok();
    }
    return spec_.fill(offset / kSectorBytes, {out, n});
  }

  // Sector-aligned [offset, offset+n) spanning at most kRunExtents extents.
  // Holds the stripes of all its extents (shared, ascending, each once) so
  // no mapping changes underneath; extents whose slots are consecutive in the
  // pool are read with one pread. `first_hole` is the HoleMap index of the
  // run's first sector.
  Status ReadRun(uint64_t offset, uint8_t* out, uint64_t n, HoleMap* holes,
                 size_t first_hole) NO_THREAD_SAFETY_ANALYSIS {
    uint64_t first = offset / kExtentSize;
    size_t count = (offset + n - 1) / kExtentSize - first + 1;
    std::array<size_t, kRunExtents> stripe_ids;
    for (size_t i = 0; i < count; ++i) {
      stripe_ids[i] = map_->StripeIndex({spec_.rid, first + i});
    }
    std::sort(stripe_ids.begin(), stripe_ids.begin() + count);
    size_t nstripes =
        std::unique(stripe_ids.begin(), stripe_ids.begin() + count) -
        stripe_ids.begin();
    for (size_t i = 0; i < nstripes; ++i) {
      map_->StripeAt(stripe_ids[i]).LockShared();
    }
    struct Unlock {
      ExtentMap* map;
      const std::array<size_t, kRunExtents>& ids;
      size_t n;
      ~Unlock() NO_THREAD_SAFETY_ANALYSIS {
        for (size_t i = n; i-- > 0;) map->StripeAt(ids[i]).UnlockShared();
      }
    } unlock{map_, stripe_ids, nstripes};

    std::array<ExtEntry, kRunExtents> ents;
    for (size_t i = 0; i < count; ++i) {
      CMKFS_ASSIGN_OR_RETURN(ents[i], map_->Lookup({spec_.rid, first + i}));
      if (ents[i].slot != kNoSlot) {
        CMKFS_RETURN_IF_ERROR(pool_->CheckSlot(ents[i].slot));
      }
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < count;) {
      uint64_t eo = (offset + pos) % kExtentSize;
      uint64_t len = std::min<uint64_t>(kExtentSize - eo, n - pos);
      if (ents[i].slot == kNoSlot) {
        if (holes) {
          std::memset(out + pos, 0, len);
          holes->Set(first_hole + pos / kSectorBytes, len / kSectorBytes);
        } else {
          CMKFS_RETURN_IF_ERROR(Fill(offset + pos, out + pos, len));
        }
        pos += len;
        ++i;
        continue;
      }
      // Extend the run while the next extent lives in the next slot.
      size_t j = i + 1;
      uint64_t run = len;
      while (j < count && ents[j].slot == ents[j - 1].slot + 1) {
        run += std::min<uint64_t>(kExtentSize, n - pos - run);
        ++j;
      }
      CMKFS_RETURN_IF_ERROR(pool_->file().ReadAt(
          ents[i].slot * kExtentSize + eo, {out + pos, run}));
      pos += run;
      i = j;
    }
    return Status::Ok();
  }

  // Sector-aligned [eo, eo + n) of extent `idx`: `data`, or the fill (`data`
  // null). A hole stays a hole for a null `data` unless `allocate`.
  Status WriteExtent(uint64_t idx, uint64_t eo, const uint8_t* data, uint64_t n,
                     bool allocate) {
    ExtKey k{spec_.rid, idx};
    WriterLock stripe(&map_->Stripe(k));
    CMKFS_ASSIGN_OR_RETURN(ExtEntry e, map_->Lookup(k));
    if (!data && !allocate && e.slot == kNoSlot) return Status::Ok();
    const uint64_t base_off = idx * kExtentSize;

    if (e.slot != kNoSlot && e.exclusive) {
      if (eo == 0 && n == kExtentSize) {
        pool_->MarkSlotRewritten(e.slot);
      } else {
        CMKFS_RETURN_IF_ERROR(pool_->CheckSlot(e.slot));
      }
      const uint8_t* src = data;
      if (!src) {
        uint8_t* b = ThreadExtentBuffer();
        CMKFS_RETURN_IF_ERROR(Fill(base_off + eo, b, n));
        src = b;
      }
      return pool_->file().WriteAt(e.slot * kExtentSize + eo, {src, n});
    }

    // A new slot: first write of the extent, or copy-on-write of a shared one.
    SharedGate gate(&map_->alloc_gate());
    CMKFS_ASSIGN_OR_RETURN(uint64_t slot, map_->AllocateSlot(spec_.rid));
    uint8_t* b = ThreadExtentBuffer();
    if (eo != 0 || n != kExtentSize) {
      if (e.slot != kNoSlot) {
        CMKFS_RETURN_IF_ERROR(pool_->CheckSlot(e.slot));
        // Untouched sectors are copied as they are stored.
        CMKFS_RETURN_IF_ERROR(
            pool_->file().ReadAt(e.slot * kExtentSize, {b, kExtentSize}));
      } else {
        // Unwritten parts of a new extent hold what a hole reads as.
        if (eo > 0) CMKFS_RETURN_IF_ERROR(Fill(base_off, b, eo));
        if (eo + n < kExtentSize) {
          CMKFS_RETURN_IF_ERROR(
              Fill(base_off + eo + n, b + eo + n, kExtentSize - eo - n));
        }
      }
    }
    if (data) {
      std::memcpy(b + eo, data, n);
    } else {
      CMKFS_RETURN_IF_ERROR(Fill(base_off + eo, b + eo, n));
    }
    CMKFS_RETURN_IF_ERROR(
        pool_->file().WriteAt(slot * kExtentSize, {b, kExtentSize}));
    map_->RecordMapping(k, e.slot, slot);
    return Status::Ok();
  }

  Status UnmapExtent(uint64_t idx) {
    ExtKey k{spec_.rid, idx};
    WriterLock stripe(&map_->Stripe(k));
    CMKFS_ASSIGN_OR_RETURN(ExtEntry e, map_->Lookup(k));
    if (e.slot != kNoSlot) map_->RecordMapping(k, e.slot, kNoSlot);
    return Status::Ok();
  }

  ExtentMap* const map_;
  SlotPool* const pool_;
  const ThinSpec spec_;
};

}  // namespace

std::unique_ptr<Volume> NewThinVolume(ExtentMap* map, ThinSpec spec) {
  return std::make_unique<ThinVolume>(map, std::move(spec));
}

}  // namespace cmkfs::fs
