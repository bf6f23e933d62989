// Data path of the engine: extent lookup, read, write (in place or
// copy-on-write), discard, allocation and the batched metadata commit.
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "cmkfs/record.h"
#include "engine_impl.h"

namespace cmkfs::fs {
namespace {

constexpr size_t kPrefetch = 32;
constexpr size_t kFreeCacheMax = 4096;
constexpr size_t kBatchCommitThreshold = 32768;

// Per-thread scratch: one extent of plaintext and one of ciphertext,
// indexed by offset within the extent. Allocated once per thread. The
// plaintext half is secret memory (mlocked, kept out of core dumps, wiped
// when the thread ends), and every use wipes what it put there (ScopedWipe),
// so no disk's plaintext outlives the request, let alone a seal or close.
struct CipherScratch {
  alignas(4096) uint8_t bytes[kExtentSize];
};
struct Scratch {
  crypto::SecretBytes plain_bytes{kExtentSize};
  std::unique_ptr<CipherScratch> cipher_bytes =
      std::make_unique<CipherScratch>();
  uint8_t* plain = plain_bytes.data();
  uint8_t* cipher = cipher_bytes->bytes;
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}
const uint8_t* Zeros() {
  static const std::vector<uint8_t> zeros(kExtentSize, 0);
  return zeros.data();
}

Status SealedError(const OpenResource& r) {
  return KeyUnavailableError(std::string(ResourceKindName(r.kind)) + " " +
                             r.name + " is sealed: " + r.seal_reason);
}

class DiskHandleImpl : public DiskHandle {
 public:
  DiskHandleImpl(EngineImpl* engine, std::shared_ptr<OpenResource> res,
                 bool writable)
      : engine_(engine), res_(std::move(res)), writable_(writable) {}
  ~DiskHandleImpl() override { engine_->CloseHandle(res_); }

  uint64_t size() const override { return res_->size.load(); }
  bool writable() const override { return writable_; }
  Result<size_t> Read(uint64_t offset, std::span<uint8_t> buf) override {
    return engine_->ReadAt(*res_, offset, buf);
  }
  Result<size_t> Write(uint64_t offset,
                       std::span<const uint8_t> data) override {
    CMKFS_RETURN_IF_ERROR(CheckWritable());
    return engine_->WriteAt(*res_, offset, data);
  }
  Status Discard(uint64_t offset, uint64_t length) override {
    CMKFS_RETURN_IF_ERROR(CheckWritable());
    return engine_->ZeroAt(*res_, offset, length);
  }
  Status ZeroRange(uint64_t offset, uint64_t length) override {
    CMKFS_RETURN_IF_ERROR(CheckWritable());
    return engine_->ZeroAt(*res_, offset, length);
  }
  Status Sync() override { return engine_->SyncData(); }
  Result<uint64_t> SeekData(uint64_t offset) override {
    return engine_->SeekData(*res_, offset);
  }
  Result<uint64_t> SeekHole(uint64_t offset) override {
    return engine_->SeekHole(*res_, offset);
  }

 private:
  Status CheckWritable() const {
    if (writable_) return Status::Ok();
    return ReadOnlyError(std::string(ResourceKindName(res_->kind)) + " " +
                         res_->name + " is open read-only");
  }
  EngineImpl* engine_;
  std::shared_ptr<OpenResource> res_;
  bool writable_;
};

}  // namespace

std::shared_ptr<DiskHandle> MakeDiskHandle(EngineImpl* engine,
                                           std::shared_ptr<OpenResource> res,
                                           bool writable) {
  return std::make_shared<DiskHandleImpl>(engine, std::move(res), writable);
}

size_t EngineImpl::StripeIndex(const ExtKey& k) const {
  return ExtKeyHash()(k) % stripes_.size();
}

std::shared_mutex& EngineImpl::Stripe(const ExtKey& k) {
  return stripes_[StripeIndex(k)];
}

// Caller holds the key's stripe (shared or exclusive), so the mapping of
// `k` cannot change underneath.
Result<ExtEntry> EngineImpl::Lookup(const ExtKey& k) {
  ExtEntry e;
  if (cache_.Get(k, &e)) return e;
  uint64_t gen_before = commit_gen_.load(std::memory_order_acquire);
  CMKFS_ASSIGN_OR_RETURN(auto txn, meta_->BeginRead());
  CMKFS_ASSIGN_OR_RETURN(auto cur, txn->Scan(db_map_));
  std::pair<uint64_t, ExtEntry> found[kPrefetch];
  size_t nfound = 0;
  CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(MapKey(k.rid, k.idx)));
  while (ok && nfound < kPrefetch) {
    std::string_view key = cur->key();
    if (key.size() != 16)
      return CorruptionError("extent map key is not 16 bytes");
    CMKFS_ASSIGN_OR_RETURN(uint64_t rid, DecodeU64Key(key.substr(0, 8)));
    CMKFS_ASSIGN_OR_RETURN(uint64_t idx, DecodeU64Key(key.substr(8)));
    if (rid != k.rid || idx >= k.idx + kPrefetch) break;
    CMKFS_ASSIGN_OR_RETURN(uint64_t slot, DecodeSlot(cur->value()));
    ExtEntry fe{slot, false};
    auto rc = txn->Get(db_ref_, EncodeSlot(slot));
    if (rc.ok()) {
      CMKFS_ASSIGN_OR_RETURN(uint64_t n, DecodeCount(*rc, "refcount"));
      fe.exclusive = n == 1;
    }
    found[nfound++] = {idx, fe};
    CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
  }
  size_t fi = 0;
  for (uint64_t i = k.idx; i < k.idx + kPrefetch; ++i) {
    ExtEntry ie;
    if (fi < nfound && found[fi].first == i) ie = found[fi++].second;
    if (i == k.idx) {
      e = ie;
      cache_.InsertClean(k, ie);
    } else if (commit_gen_.load(std::memory_order_acquire) == gen_before) {
      cache_.InsertClean({k.rid, i}, ie);
    }
  }
  return e;
}

namespace {
constexpr uint32_t kAllocsPerSpaceCheck = 16;  // 1 MiB of new extents
}  // namespace

std::optional<EngineImpl::BackingSpace> EngineImpl::ReadBackingSpace() const {
  struct statvfs vfs {};
  if (::statvfs(options_.dir.c_str(), &vfs) != 0) return std::nullopt;
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

bool EngineImpl::BackingFull() {
  std::optional<BackingSpace> space = ReadBackingSpace();
  return space && space->avail <= space->reserve;
}

Status EngineImpl::CheckBackingSpace() {
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
  return NoSpaceError("backing filesystem of " + options_.dir.string() +
                      " is full: " + std::to_string(avail) + " bytes free, " +
                      std::to_string(reserve) +
                      " kept for metadata; delete disks or snapshots, or "
                      "give it more space");
}

Result<uint64_t> EngineImpl::AllocateSlot() {
  std::lock_guard lock(pending_mu_);
  CMKFS_RETURN_IF_ERROR(CheckBackingSpace());
  if (free_cache_.empty() && free_db_has_more_) {
    // Only while no commit runs: a commit may be about to punch the slots
    // it just put on the free list.
    std::unique_lock commit_lock(commit_mu_, std::try_to_lock);
    if (commit_lock.owns_lock()) CMKFS_RETURN_IF_ERROR(RefillFreeCache());
  }
  uint64_t slot;
  if (!free_cache_.empty()) {
    slot = free_cache_.back();
    free_cache_.pop_back();
    open_batch_.taken.insert(slot);
    // Written in full before it is mapped again.
    if (SlotLost(slot)) MarkSlotRewritten(slot);
  } else {
    slot = hwm_++;
  }
  open_batch_.ref[slot] += 0;  // freed at commit unless mapped
  return slot;
}

// pending_mu_ and commit_mu_ held.
Status EngineImpl::RefillFreeCache() {
  CMKFS_ASSIGN_OR_RETURN(auto txn, meta_->BeginRead());
  CMKFS_ASSIGN_OR_RETURN(auto cur, txn->Scan(db_free_));
  CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
  while (ok && free_cache_.size() < kFreeCacheMax) {
    CMKFS_ASSIGN_OR_RETURN(uint64_t slot, DecodeU64Key(cur->key()));
    if (!open_batch_.taken.contains(slot)) free_cache_.push_back(slot);
    CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
  }
  free_db_has_more_ = ok;
  std::reverse(free_cache_.begin(), free_cache_.end());  // lowest first
  return Status::Ok();
}

void EngineImpl::RecordMapping(const ExtKey& k, uint64_t old_slot,
                               uint64_t new_slot) {
  bool request = false;
  {
    std::lock_guard lock(pending_mu_);
    open_batch_.map[k] = new_slot;
    if (new_slot != kNoSlot) open_batch_.ref[new_slot] += 1;
    if (old_slot != kNoSlot) open_batch_.ref[old_slot] -= 1;
    if (old_slot == kNoSlot && new_slot != kNoSlot) open_batch_.count[k.rid]++;
    if (old_slot != kNoSlot && new_slot == kNoSlot) open_batch_.count[k.rid]--;
    cache_.SetDirty(k, {new_slot, true}, gen_);
    request = open_batch_.map.size() >= kBatchCommitThreshold;
  }
  if (request) {
    std::lock_guard lock(loop_mu_);
    commit_requested_ = true;
    loop_cv_.notify_one();
  }
}

Status EngineImpl::ApplyBatch(MetaTxn& txn, const Batch& b, uint64_t hwm,
                              std::vector<uint64_t>* released) {
  released->clear();
  for (const auto& [k, slot] : b.map) {
    std::string key = MapKey(k.rid, k.idx);
    if (slot == kNoSlot) {
      Status st = txn.Delete(db_map_, key);
      if (!st.ok() && st.kind() != ErrorKind::kNotFound) return st;
    } else {
      CMKFS_RETURN_IF_ERROR(txn.Put(db_map_, key, EncodeSlot(slot)));
    }
  }
  for (uint64_t slot : b.taken) {
    Status st = txn.Delete(db_free_, EncodeSlot(slot));
    if (!st.ok() && st.kind() != ErrorKind::kNotFound) return st;
  }
  for (const auto& [slot, delta] : b.ref) {
    std::string key = EncodeSlot(slot);
    int64_t old = 0;
    auto cur = txn.Get(db_ref_, key);
    if (cur.ok()) {
      CMKFS_ASSIGN_OR_RETURN(uint64_t n, DecodeCount(*cur, "refcount"));
      old = static_cast<int64_t>(n);
    } else if (cur.status().kind() != ErrorKind::kNotFound) {
      return cur.status();
    }
    int64_t now = old + delta;
    if (now > 0) {
      CMKFS_RETURN_IF_ERROR(
          txn.Put(db_ref_, key, EncodeCount(static_cast<uint64_t>(now))));
      continue;
    }
    if (now < 0) {
      spdlog::error("engine: refcount of slot {} would drop below zero", slot);
    }
    if (old > 0) CMKFS_RETURN_IF_ERROR(txn.Delete(db_ref_, key));
    CMKFS_RETURN_IF_ERROR(txn.Put(db_free_, key, ""));
    released->push_back(slot);
  }
  for (const auto& [rid, delta] : b.count) {
    if (delta == 0) continue;
    std::string key = EncodeU64Key(rid);
    int64_t old = 0;
    auto cur = txn.Get(db_count_, key);
    if (cur.ok()) {
      CMKFS_ASSIGN_OR_RETURN(uint64_t n, DecodeCount(*cur, "extent count"));
      old = static_cast<int64_t>(n);
    }
    int64_t now = std::max<int64_t>(0, old + delta);
    if (now == 0) {
      if (old > 0) CMKFS_RETURN_IF_ERROR(txn.Delete(db_count_, key));
    } else {
      CMKFS_RETURN_IF_ERROR(
          txn.Put(db_count_, key, EncodeCount(static_cast<uint64_t>(now))));
    }
  }
  return txn.Put(db_meta_, "alloc", EncodeCount(hwm));
}

Status EngineImpl::CommitPending() {
  std::lock_guard commit_lock(commit_mu_);
  Batch b;
  uint64_t g, hwm;
  {
    std::unique_lock gate(alloc_gate_);
    std::lock_guard lock(pending_mu_);
    b.map.swap(open_batch_.map);
    b.ref.swap(open_batch_.ref);
    b.taken.swap(open_batch_.taken);
    b.count.swap(open_batch_.count);
    g = gen_++;
    hwm = hwm_;
    committing_ = &b;
  }
  // Data first: no durable mapping may reference unsynced ciphertext.
  Status st = pool_->DataSync();
  std::vector<uint64_t> released;
  if (st.ok() && !b.empty()) {
    st = meta_->Update(
        [&](MetaTxn& txn) { return ApplyBatch(txn, b, hwm, &released); });
    if (st.ok()) st = meta_->Sync();
  }
  if (st.ok()) commit_gen_.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard lock(pending_mu_);
    committing_ = nullptr;
    if (st.ok()) {
      for (const auto& [k, slot] : b.map) cache_.MarkClean(k, g);
    } else {
      // Keep everything pending; newer entries of the open batch win.
      for (const auto& [k, slot] : b.map) open_batch_.map.try_emplace(k, slot);
      for (const auto& [slot, d] : b.ref) open_batch_.ref[slot] += d;
      open_batch_.taken.insert(b.taken.begin(), b.taken.end());
      for (const auto& [rid, d] : b.count) open_batch_.count[rid] += d;
    }
  }
  if (!st.ok()) {
    // LMDB reports a short write (a full filesystem) as EIO.
    if (st.kind() == ErrorKind::kIOError && BackingFull()) {
      return NoSpaceError(
          "commit of extent metadata: the backing filesystem "
          "of " +
          options_.dir.string() + " is full (" + st.message() + ")");
    }
    return st.WithContext("commit of extent metadata");
  }
  ReleaseSlots(released);
  return Status::Ok();
}

// commit_mu_ held; `released` are on the durable free list.
void EngineImpl::ReleaseSlots(const std::vector<uint64_t>& released) {
  for (uint64_t slot : released) {
    pool_->PunchHole(slot * kExtentSize, kExtentSize).IgnoreError();
  }
  std::lock_guard lock(pending_mu_);
  for (uint64_t slot : released) {
    if (free_cache_.size() < kFreeCacheMax) {
      free_cache_.push_back(slot);
    } else {
      free_db_has_more_ = true;
    }
  }
}

void EngineImpl::CommitLoop() {
  std::unique_lock lock(loop_mu_);
  while (!stop_) {
    loop_cv_.wait_for(lock, options_.commit_interval,
                      [&] { return stop_ || commit_requested_; });
    if (stop_) break;
    commit_requested_ = false;
    lock.unlock();
    bool pending;
    {
      std::lock_guard plock(pending_mu_);
      pending = !open_batch_.empty();
    }
    if (pending) {
      Status st = CommitPending();
      if (!st.ok()) spdlog::error("engine: {}", st.ToString());
    }
    lock.lock();
  }
}

int64_t EngineImpl::PendingCount(uint64_t rid) {
  std::lock_guard lock(pending_mu_);
  int64_t n = 0;
  if (auto it = open_batch_.count.find(rid); it != open_batch_.count.end()) {
    n += it->second;
  }
  if (committing_) {
    if (auto it = committing_->count.find(rid);
        it != committing_->count.end()) {
      n += it->second;
    }
  }
  return n;
}

Status EngineImpl::SyncData() { return CommitPending(); }

bool EngineImpl::SlotLost(uint64_t slot) {
  if (slot < lost_begin_ || slot >= lost_end_) return false;
  std::lock_guard lock(rewritten_mu_);
  return !rewritten_.contains(slot);
}

void EngineImpl::MarkSlotRewritten(uint64_t slot) {
  if (slot < lost_begin_ || slot >= lost_end_) return;
  std::lock_guard lock(rewritten_mu_);
  rewritten_.insert(slot);
}

Status EngineImpl::CheckSlotInPool(uint64_t slot) {
  const uint64_t end = (slot + 1) * kExtentSize;
  uint64_t known = pool_known_size_.load(std::memory_order_relaxed);
  if (end <= known && !SlotLost(slot)) return Status::Ok();
  if (end > known) {
    CMKFS_ASSIGN_OR_RETURN(uint64_t size, pool_->Size());
    while (size > known && !pool_known_size_.compare_exchange_weak(
                               known, size, std::memory_order_relaxed)) {
    }
    known = std::max(known, size);
  }
  if (end <= known && !SlotLost(slot)) return Status::Ok();
  return CorruptionError(
      "extent pool file " + pool_path_.string() +
      " is truncated or was replaced: slot " + std::to_string(slot) +
      " (bytes " + std::to_string(slot * kExtentSize) + ".." +
      std::to_string(end) +
      ") lies beyond the data it held; this extent is lost (run cmkctl fsck, "
      "restore the file from a backup)");
}

Status EngineImpl::ReadExtent(OpenResource& r, const crypto::XtsCipher& c,
                              uint64_t idx, uint64_t eo, uint8_t* out,
                              uint64_t n) {
  ExtKey k{r.rid, idx};
  std::shared_lock stripe(Stripe(k));
  CMKFS_ASSIGN_OR_RETURN(ExtEntry e, Lookup(k));
  if (e.slot == kNoSlot) {
    std::memset(out, 0, n);
    return Status::Ok();
  }
  CMKFS_RETURN_IF_ERROR(CheckSlotInPool(e.slot));
  uint64_t base = e.slot * kExtentSize;
  uint64_t sector0 = idx * kSectorsPerExtent;
  if (eo % kSectorBytes == 0 && n % kSectorBytes == 0) {
    CMKFS_RETURN_IF_ERROR(pool_->ReadAt(base + eo, {out, n}));
    return c.DecryptSectors(sector0 + eo / kSectorBytes, out, out, n);
  }
  uint64_t lo = eo / kSectorBytes * kSectorBytes;
  uint64_t hi = (eo + n + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  Scratch& s = ThreadScratch();
  crypto::ScopedWipe wipe(s.plain + lo, hi - lo);
  CMKFS_RETURN_IF_ERROR(pool_->ReadAt(base + lo, {s.cipher + lo, hi - lo}));
  CMKFS_RETURN_IF_ERROR(c.DecryptSectors(sector0 + lo / kSectorBytes,
                                         s.cipher + lo, s.plain + lo, hi - lo));
  std::memcpy(out, s.plain + eo, n);
  return Status::Ok();
}

// `data` null writes zeros.
Status EngineImpl::WriteExtent(OpenResource& r, const crypto::XtsCipher& c,
                               uint64_t idx, uint64_t eo, const uint8_t* data,
                               uint64_t n) {
  ExtKey k{r.rid, idx};
  std::unique_lock stripe(Stripe(k));
  CMKFS_ASSIGN_OR_RETURN(ExtEntry e, Lookup(k));
  if (!data && e.slot == kNoSlot) return Status::Ok();
  const uint8_t* src = data ? data : Zeros();
  uint64_t sector0 = idx * kSectorsPerExtent;
  uint64_t lo = eo / kSectorBytes * kSectorBytes;
  uint64_t hi = (eo + n + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  bool head = eo != lo;
  bool tail = (eo + n) != hi && !(head && hi - kSectorBytes == lo);
  Scratch& s = ThreadScratch();
  // Set once a branch puts plaintext in s.plain.
  crypto::ScopedWipe wipe;
  auto decrypt_sector = [&](uint64_t at) {
    return c.DecryptSectors(sector0 + at / kSectorBytes, s.cipher + at,
                            s.plain + at, kSectorBytes);
  };

  if (e.slot != kNoSlot && e.exclusive) {
    uint64_t base = e.slot * kExtentSize;
    if (head || tail) wipe.Cover(s.plain + lo, hi - lo);
    if (lo == 0 && hi == kExtentSize) {
      MarkSlotRewritten(e.slot);
    } else {
      CMKFS_RETURN_IF_ERROR(CheckSlotInPool(e.slot));
    }
    if (head) {
      CMKFS_RETURN_IF_ERROR(
          pool_->ReadAt(base + lo, {s.cipher + lo, kSectorBytes}));
      CMKFS_RETURN_IF_ERROR(decrypt_sector(lo));
    }
    if (tail) {
      uint64_t at = hi - kSectorBytes;
      CMKFS_RETURN_IF_ERROR(
          pool_->ReadAt(base + at, {s.cipher + at, kSectorBytes}));
      CMKFS_RETURN_IF_ERROR(decrypt_sector(at));
    }
    const uint8_t* plain = src;
    if (head || tail) {
      std::memcpy(s.plain + eo, src, n);
      plain = s.plain + lo;
    }
    CMKFS_RETURN_IF_ERROR(c.EncryptSectors(sector0 + lo / kSectorBytes, plain,
                                           s.cipher + lo, hi - lo));
    return pool_->WriteAt(base + lo, {s.cipher + lo, hi - lo});
  }

  // A new slot: first write of the extent, or copy-on-write of a shared one.
  std::shared_lock gate(alloc_gate_);
  CMKFS_ASSIGN_OR_RETURN(uint64_t slot, AllocateSlot());
  bool full = eo == 0 && n == kExtentSize;
  if (full) {
    CMKFS_RETURN_IF_ERROR(
        c.EncryptSectors(sector0, src, s.cipher, kExtentSize));
  } else if (e.slot != kNoSlot) {
    wipe.Cover(s.plain + lo, hi - lo);
    CMKFS_RETURN_IF_ERROR(CheckSlotInPool(e.slot));
    // Same DEK and tweaks: untouched sectors are copied as ciphertext.
    CMKFS_RETURN_IF_ERROR(
        pool_->ReadAt(e.slot * kExtentSize, {s.cipher, kExtentSize}));
    if (head) CMKFS_RETURN_IF_ERROR(decrypt_sector(lo));
    if (tail) CMKFS_RETURN_IF_ERROR(decrypt_sector(hi - kSectorBytes));
    std::memcpy(s.plain + eo, src, n);
    CMKFS_RETURN_IF_ERROR(c.EncryptSectors(
        sector0 + lo / kSectorBytes, s.plain + lo, s.cipher + lo, hi - lo));
  } else {
    // Unwritten parts of a new extent hold encrypted zeros.
    wipe.Cover(s.plain, kExtentSize);
    std::memset(s.plain, 0, kExtentSize);
    std::memcpy(s.plain + eo, src, n);
    CMKFS_RETURN_IF_ERROR(
        c.EncryptSectors(sector0, s.plain, s.cipher, kExtentSize));
  }
  CMKFS_RETURN_IF_ERROR(
      pool_->WriteAt(slot * kExtentSize, {s.cipher, kExtentSize}));
  RecordMapping(k, e.slot, slot);
  return Status::Ok();
}

Status EngineImpl::UnmapExtent(OpenResource& r, uint64_t idx) {
  ExtKey k{r.rid, idx};
  std::unique_lock stripe(Stripe(k));
  CMKFS_ASSIGN_OR_RETURN(ExtEntry e, Lookup(k));
  if (e.slot != kNoSlot) RecordMapping(k, e.slot, kNoSlot);
  return Status::Ok();
}

// Sector-aligned [offset, offset+n) spanning at most kRunExtents extents.
// Holds the stripes of all its extents (shared, ascending, each once) so no
// mapping changes underneath; extents whose slots are consecutive in the pool
// are read with one pread and decrypted in place in `out`.
Status EngineImpl::ReadAligned(OpenResource& r, const crypto::XtsCipher& c,
                               uint64_t offset, uint8_t* out, uint64_t n) {
  uint64_t first = offset / kExtentSize;
  size_t count = (offset + n - 1) / kExtentSize - first + 1;
  std::array<size_t, kRunExtents> stripe_ids;
  for (size_t i = 0; i < count; ++i) {
    stripe_ids[i] = StripeIndex({r.rid, first + i});
  }
  std::sort(stripe_ids.begin(), stripe_ids.begin() + count);
  size_t nstripes =
      std::unique(stripe_ids.begin(), stripe_ids.begin() + count) -
      stripe_ids.begin();
  for (size_t i = 0; i < nstripes; ++i) stripes_[stripe_ids[i]].lock_shared();
  struct Unlock {
    EngineImpl* self;
    const std::array<size_t, kRunExtents>& ids;
    size_t n;
    ~Unlock() {
      for (size_t i = n; i-- > 0;) self->stripes_[ids[i]].unlock_shared();
    }
  } unlock{this, stripe_ids, nstripes};

  std::array<ExtEntry, kRunExtents> ents;
  for (size_t i = 0; i < count; ++i) {
    CMKFS_ASSIGN_OR_RETURN(ents[i], Lookup({r.rid, first + i}));
    if (ents[i].slot != kNoSlot) {
      CMKFS_RETURN_IF_ERROR(CheckSlotInPool(ents[i].slot));
    }
  }
  uint64_t pos = 0;
  for (size_t i = 0; i < count;) {
    uint64_t eo = (offset + pos) % kExtentSize;
    uint64_t len = std::min<uint64_t>(kExtentSize - eo, n - pos);
    if (ents[i].slot == kNoSlot) {
      std::memset(out + pos, 0, len);
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
    CMKFS_RETURN_IF_ERROR(
        pool_->ReadAt(ents[i].slot * kExtentSize + eo, {out + pos, run}));
    CMKFS_RETURN_IF_ERROR(
        c.DecryptSectors((first + i) * kSectorsPerExtent + eo / kSectorBytes,
                         out + pos, out + pos, run));
    pos += run;
    i = j;
  }
  return Status::Ok();
}

Result<size_t> EngineImpl::ReadAt(OpenResource& r, uint64_t offset,
                                  std::span<uint8_t> buf) {
  std::shared_lock barrier(r.barrier);
  if (!r.cipher) return SealedError(r);
  uint64_t size = r.size.load();
  if (offset >= size) return size_t{0};
  uint64_t n = std::min<uint64_t>(buf.size(), size - offset);
  if (offset % kSectorBytes == 0 && n % kSectorBytes == 0) {
    for (uint64_t pos = 0; pos < n;) {
      uint64_t at = offset + pos;
      // Up to kRunExtents extents, ending on an extent boundary.
      uint64_t end = std::min<uint64_t>(
          n, (at / kExtentSize + kRunExtents) * kExtentSize - offset);
      CMKFS_RETURN_IF_ERROR(
          ReadAligned(r, *r.cipher, at, buf.data() + pos, end - pos));
      pos = end;
    }
    return static_cast<size_t>(n);
  }
  for (uint64_t pos = 0; pos < n;) {
    uint64_t at = offset + pos;
    uint64_t eo = at % kExtentSize;
    uint64_t len = std::min<uint64_t>(kExtentSize - eo, n - pos);
    CMKFS_RETURN_IF_ERROR(
        ReadExtent(r, *r.cipher, at / kExtentSize, eo, buf.data() + pos, len));
    pos += len;
  }
  return static_cast<size_t>(n);
}

Result<size_t> EngineImpl::WriteAt(OpenResource& r, uint64_t offset,
                                   std::span<const uint8_t> data) {
  std::shared_lock barrier(r.barrier);
  if (!r.cipher) return SealedError(r);
  uint64_t size = r.size.load();
  if (offset > size || data.size() > size - offset) {
    return OutOfRangeError("write of " + std::to_string(data.size()) +
                           " bytes at offset " + std::to_string(offset) +
                           " goes past the end of " + r.name + " (" +
                           std::to_string(size) + " bytes)");
  }
  for (uint64_t pos = 0; pos < data.size();) {
    uint64_t at = offset + pos;
    uint64_t eo = at % kExtentSize;
    uint64_t len = std::min<uint64_t>(kExtentSize - eo, data.size() - pos);
    CMKFS_RETURN_IF_ERROR(WriteExtent(r, *r.cipher, at / kExtentSize, eo,
                                      data.data() + pos, len));
    pos += len;
  }
  return data.size();
}

Status EngineImpl::ZeroAt(OpenResource& r, uint64_t offset, uint64_t length) {
  std::shared_lock barrier(r.barrier);
  if (!r.cipher) return SealedError(r);
  uint64_t size = r.size.load();
  if (offset > size || length > size - offset) {
    return OutOfRangeError("range of " + std::to_string(length) +
                           " bytes at offset " + std::to_string(offset) +
                           " goes past the end of " + r.name);
  }
  for (uint64_t pos = 0; pos < length;) {
    uint64_t at = offset + pos;
    uint64_t eo = at % kExtentSize;
    uint64_t len = std::min<uint64_t>(kExtentSize - eo, length - pos);
    uint64_t idx = at / kExtentSize;
    // A whole extent, or the tail of the last one up to the end of the disk.
    bool whole = eo == 0 && (len == kExtentSize || at + len == size);
    if (whole) {
      CMKFS_RETURN_IF_ERROR(UnmapExtent(r, idx));
    } else {
      CMKFS_RETURN_IF_ERROR(WriteExtent(r, *r.cipher, idx, eo, nullptr, len));
    }
    pos += len;
  }
  return Status::Ok();
}

Result<uint64_t> EngineImpl::NextMappedCandidate(uint64_t rid, uint64_t idx) {
  uint64_t best = kNoSlot;
  {
    CMKFS_ASSIGN_OR_RETURN(auto txn, meta_->BeginRead());
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn->Scan(db_map_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(MapKey(rid, idx)));
    if (ok && cur->key().size() == 16) {
      CMKFS_ASSIGN_OR_RETURN(uint64_t r2,
                             DecodeU64Key(cur->key().substr(0, 8)));
      CMKFS_ASSIGN_OR_RETURN(uint64_t i2, DecodeU64Key(cur->key().substr(8)));
      if (r2 == rid) best = i2;
    }
  }
  std::lock_guard lock(pending_mu_);
  auto scan = [&](const Batch& b) {
    for (const auto& [k, slot] : b.map) {
      if (k.rid == rid && k.idx >= idx && slot != kNoSlot && k.idx < best) {
        best = k.idx;
      }
    }
  };
  scan(open_batch_);
  if (committing_) scan(*committing_);
  return best;
}

Result<uint64_t> EngineImpl::SeekData(OpenResource& r, uint64_t offset) {
  std::shared_lock barrier(r.barrier);
  uint64_t size = r.size.load();
  auto none = [&] {
    return NotFoundError("no data at or after offset " +
                         std::to_string(offset) + " of " + r.name);
  };
  if (offset >= size) return none();
  uint64_t nextents = ExtentCount(size);
  uint64_t idx = offset / kExtentSize;
  while (idx < nextents) {
    ExtKey k{r.rid, idx};
    {
      std::shared_lock stripe(Stripe(k));
      CMKFS_ASSIGN_OR_RETURN(ExtEntry e, Lookup(k));
      if (e.slot != kNoSlot) return std::max(offset, idx * kExtentSize);
    }
    CMKFS_ASSIGN_OR_RETURN(idx, NextMappedCandidate(r.rid, idx + 1));
  }
  return none();
}

Result<uint64_t> EngineImpl::SeekHole(OpenResource& r, uint64_t offset) {
  std::shared_lock barrier(r.barrier);
  uint64_t size = r.size.load();
  if (offset >= size) {
    return NotFoundError("offset " + std::to_string(offset) +
                         " is at or past the end of " + r.name);
  }
  uint64_t nextents = ExtentCount(size);
  for (uint64_t idx = offset / kExtentSize; idx < nextents; ++idx) {
    ExtKey k{r.rid, idx};
    std::shared_lock stripe(Stripe(k));
    CMKFS_ASSIGN_OR_RETURN(ExtEntry e, Lookup(k));
    if (e.slot == kNoSlot) return std::max(offset, idx * kExtentSize);
  }
  return size;
}

void EngineImpl::CloseHandle(const std::shared_ptr<OpenResource>& r) {
  std::lock_guard lock(open_mu_);
  if (--r->handles == 0) {
    auto it = open_.find(r->rid);
    if (it != open_.end() && it->second == r) open_.erase(it);
  }
}

}  // namespace cmkfs::fs
