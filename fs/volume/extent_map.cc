#include "extent_map.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "cmkfs/record.h"
#include "extent_records.h"

namespace cmkfs::fs {
namespace {

constexpr size_t kPrefetch = 32;
constexpr size_t kBatchCommitThreshold = 32768;

// The counter stored under `key` in `table` (a refcount or an extent count),
// or 0 if there is none.
Result<int64_t> ReadCounter(MetaTxn& txn, MetaTable table, std::string_view key,
                            std::string_view what) {
  auto cur = txn.Get(table, key);
  if (!cur.ok()) {
    if (cur.status().kind() == ErrorKind::kNotFound) return int64_t{0};
    return cur.status();
  }
  CMKFS_ASSIGN_OR_RETURN(uint64_t n, DecodeCount(*cur, what));
  return static_cast<int64_t>(n);
}

}  // namespace

ExtentMap::ExtentMap(MetaStore* meta, ExtentTables tables, SlotPool* pool,
                     ExtentCache* cache, std::span<SharedMutex> stripes,
                     std::function<void()> request_commit)
    : meta_(meta),
      t_(tables),
      pool_(pool),
      cache_(cache),
      stripes_(stripes),
      request_commit_(std::move(request_commit)) {}

size_t ExtentMap::StripeIndex(const ExtKey& k) const {
  return ExtKeyHash()(k) % stripes_.size();
}

Result<ExtEntry> ExtentMap::Lookup(const ExtKey& k) {
  ExtEntry e;
  if (cache_->Get(k, &e)) return e;
  uint64_t gen_before = commit_gen_.load(std::memory_order_acquire);
  CMKFS_ASSIGN_OR_RETURN(auto txn, meta_->BeginRead());
  CMKFS_ASSIGN_OR_RETURN(auto cur, txn->Scan(t_.map));
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
    auto rc = txn->Get(t_.ref, EncodeSlot(slot));
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
      cache_->InsertClean(k, ie);
    } else if (commit_gen_.load(std::memory_order_acquire) == gen_before) {
      cache_->InsertClean({k.rid, i}, ie);
    }
  }
  return e;
}

void ResourceBatch::MergeFrom(ResourceBatch&& older) {
  // Newer mappings win; deltas add up.
  for (const auto& [idx, slot] : older.map) map.try_emplace(idx, slot);
  for (const auto& [slot, d] : older.ref) ref[slot] += d;
  taken.insert(older.taken.begin(), older.taken.end());
  grown.insert(grown.end(), older.grown.begin(), older.grown.end());
  count += older.count;
}

Result<uint64_t> ExtentMap::AllocateSlot(uint64_t rid) {
  MutexLock lock(&pending_mu_);
  // The free cache is refilled only while no commit runs: a commit may be
  // about to punch the slots it just put on the free list.
  const bool refill = commit_mu_.TryLock();
  bool from_free = false;
  Result<uint64_t> slot = pool_->Take(taken_, refill, &from_free);
  if (refill) commit_mu_.Unlock();
  if (!slot.ok()) return slot.status();
  ResourceBatch& b = open_batch_[rid];
  if (from_free) {
    b.taken.insert(*slot);
    taken_.insert(*slot);
  } else {
    b.grown.push_back(*slot);
  }
  b.ref[*slot] += 0;  // freed at commit unless mapped
  return *slot;
}

void ExtentMap::RecordMapping(const ExtKey& k, uint64_t old_slot,
                              uint64_t new_slot) {
  bool request = false;
  {
    MutexLock lock(&pending_mu_);
    ResourceBatch& b = open_batch_[k.rid];
    b.map[k.idx] = new_slot;
    if (new_slot != kNoSlot) b.ref[new_slot] += 1;
    if (old_slot != kNoSlot) b.ref[old_slot] -= 1;
    if (old_slot == kNoSlot && new_slot != kNoSlot) b.count++;
    if (old_slot != kNoSlot && new_slot == kNoSlot) b.count--;
    cache_->SetDirty(k, {new_slot, true}, gen_);
    size_t entries = 0;
    for (const auto& [rid, rb] : open_batch_) entries += rb.map.size();
    request = entries >= kBatchCommitThreshold;
  }
  if (request && request_commit_) request_commit_();
}

Status ExtentMap::ApplyBatch(MetaTxn& txn, const Batch& b, uint64_t hwm,
                             const std::vector<uint64_t>& adopted,
                             std::vector<uint64_t>* released) {
  released->clear();
  std::unordered_map<uint64_t, int64_t> ref;
  std::unordered_set<uint64_t> taken;
  for (const auto& [rid, rb] : b) {
    for (const auto& [idx, slot] : rb.map) {
      std::string key = MapKey(rid, idx);
      if (slot == kNoSlot) {
        Status st = txn.Delete(t_.map, key);
        if (!st.ok() && st.kind() != ErrorKind::kNotFound) return st;
      } else {
        CMKFS_RETURN_IF_ERROR(txn.Put(t_.map, key, EncodeSlot(slot)));
      }
    }
    for (const auto& [slot, delta] : rb.ref) ref[slot] += delta;
    taken.insert(rb.taken.begin(), rb.taken.end());
    if (rb.count == 0) continue;
    std::string key = EncodeU64Key(rid);
    CMKFS_ASSIGN_OR_RETURN(int64_t old,
                           ReadCounter(txn, t_.count, key, "extent count"));
    int64_t now = std::max<int64_t>(0, old + rb.count);
    if (now == 0) {
      if (old > 0) CMKFS_RETURN_IF_ERROR(txn.Delete(t_.count, key));
    } else {
      CMKFS_RETURN_IF_ERROR(
          txn.Put(t_.count, key, EncodeCount(static_cast<uint64_t>(now))));
    }
  }
  for (const auto& [slot, delta] : ref) {
    std::string key = EncodeSlot(slot);
    CMKFS_ASSIGN_OR_RETURN(int64_t old,
                           ReadCounter(txn, t_.ref, key, "refcount"));
    int64_t now = old + delta;
    if (now > 0) {
      CMKFS_RETURN_IF_ERROR(
          txn.Put(t_.ref, key, EncodeCount(static_cast<uint64_t>(now))));
      continue;
    }
    if (now < 0) {
      spdlog::error("engine: refcount of slot {} would drop below zero", slot);
    }
    if (old > 0) CMKFS_RETURN_IF_ERROR(txn.Delete(t_.ref, key));
    released->push_back(slot);
  }
  // Adopted slots are free in the durable state; they are not "released"
  // (their resource still uses them) and so are neither punched nor reused.
  std::vector<uint64_t> freed = *released;
  freed.insert(freed.end(), adopted.begin(), adopted.end());
  return pool_->RecordCommit(txn, taken, freed, hwm);
}

Status ExtentMap::CommitPending() { return Commit(std::nullopt); }

Status ExtentMap::CommitPending(uint64_t rid) { return Commit(rid); }

Status ExtentMap::Commit(std::optional<uint64_t> only) {
  MutexLock commit_lock(&commit_mu_);
  Batch b;
  std::vector<uint64_t> adopted;
  std::vector<uint64_t> adopted_by;  // the resource of each adopted slot
  uint64_t g, hwm;
  {
    ExclusiveGate gate(&alloc_gate_);
    MutexLock lock(&pending_mu_);
    if (!only) {
      b.swap(open_batch_);
    } else if (auto it = open_batch_.find(*only); it != open_batch_.end()) {
      b.emplace(*only, std::move(it->second));
      open_batch_.erase(it);
    }
    // The stored high-water mark covers every slot taken so far; those of
    // resources left pending go on the free table until they commit.
    for (auto& [rid, rb] : open_batch_) {
      for (uint64_t slot : rb.grown) {
        adopted.push_back(slot);
        adopted_by.push_back(rid);
        rb.taken.insert(slot);
        taken_.insert(slot);
      }
      rb.grown.clear();
    }
    g = gen_++;
    hwm = pool_->hwm();
    committing_ = &b;
  }
  // Data first: no durable mapping may reference unsynced ciphertext.
  Status st = pool_->DataSync();
  std::vector<uint64_t> released;
  const bool changes = !b.empty() || !adopted.empty();
  if (st.ok() && changes) {
    st = meta_->Update([&](MetaTxn& txn) {
      return ApplyBatch(txn, b, hwm, adopted, &released);
    });
    if (st.ok()) st = meta_->Sync();
  }
  if (st.ok()) commit_gen_.fetch_add(1, std::memory_order_acq_rel);
  {
    MutexLock lock(&pending_mu_);
    committing_ = nullptr;
    for (auto& [rid, rb] : b) {
      if (st.ok()) {
        for (const auto& [idx, slot] : rb.map) cache_->MarkClean({rid, idx}, g);
        for (uint64_t slot : rb.taken) taken_.erase(slot);
      } else {
        // Keep everything pending; newer entries of the open batch win.
        open_batch_[rid].MergeFrom(std::move(rb));
      }
    }
    if (!st.ok()) {
      // The free table did not get the adopted slots: they are their
      // owners' grown slots again, for the next commit to adopt or store.
      for (size_t i = 0; i < adopted.size(); ++i) {
        ResourceBatch& owner = open_batch_[adopted_by[i]];
        owner.taken.erase(adopted[i]);
        taken_.erase(adopted[i]);
        owner.grown.push_back(adopted[i]);
      }
    }
  }
  if (!st.ok()) {
    // LMDB reports a short write (a full filesystem) as EIO.
    if (st.kind() == ErrorKind::kIOError && pool_->BackingFull()) {
      return NoSpaceError(
          "commit of extent metadata: the backing filesystem "
          "of " +
          pool_->backing_dir().string() + " is full (" + st.message() + ")");
    }
    return st.WithContext("commit of extent metadata");
  }
  pool_->Release(released);
  return Status::Ok();
}

bool ExtentMap::HasPending() {
  MutexLock lock(&pending_mu_);
  for (const auto& [rid, rb] : open_batch_) {
    if (!rb.empty()) return true;
  }
  return false;
}

int64_t ExtentMap::PendingCount(uint64_t rid) {
  MutexLock lock(&pending_mu_);
  int64_t n = 0;
  if (auto it = open_batch_.find(rid); it != open_batch_.end()) {
    n += it->second.count;
  }
  if (committing_) {
    if (auto it = committing_->find(rid); it != committing_->end()) {
      n += it->second.count;
    }
  }
  return n;
}

int64_t ExtentMap::PendingTotal() {
  MutexLock lock(&pending_mu_);
  int64_t n = 0;
  for (const auto& [rid, rb] : open_batch_) n += rb.count;
  if (committing_) {
    for (const auto& [rid, rb] : *committing_) n += rb.count;
  }
  return n;
}

Result<uint64_t> ExtentMap::NextMappedCandidate(uint64_t rid, uint64_t idx) {
  uint64_t best = kNoSlot;
  {
    CMKFS_ASSIGN_OR_RETURN(auto txn, meta_->BeginRead());
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn->Scan(t_.map));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(MapKey(rid, idx)));
    if (ok && cur->key().size() == 16) {
      CMKFS_ASSIGN_OR_RETURN(uint64_t r2,
                             DecodeU64Key(cur->key().substr(0, 8)));
      CMKFS_ASSIGN_OR_RETURN(uint64_t i2, DecodeU64Key(cur->key().substr(8)));
      if (r2 == rid) best = i2;
    }
  }
  MutexLock lock(&pending_mu_);
  auto scan = [&](const Batch& b) {
    auto it = b.find(rid);
    if (it == b.end()) return;
    for (const auto& [i, slot] : it->second.map) {
      if (i >= idx && slot != kNoSlot && i < best) best = i;
    }
  };
  scan(open_batch_);
  if (committing_) scan(*committing_);
  return best;
}

Status ExtentMap::Clone(uint64_t src, uint64_t dst,
                        const std::function<Status(MetaTxn&)>& also) {
  CMKFS_RETURN_IF_ERROR(CommitPending());
  CMKFS_RETURN_IF_ERROR(meta_->Update([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(t_.map));
    std::string prefix = EncodeU64Key(src);
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(prefix));
    uint64_t n = 0;
    while (ok && cur->key().starts_with(prefix)) {
      std::string key(cur->key());
      std::string slot_key(cur->value());
      CMKFS_RETURN_IF_ERROR(
          txn.Put(t_.map, EncodeU64Key(dst) + key.substr(8), slot_key));
      uint64_t count = 0;
      auto rc = txn.Get(t_.ref, slot_key);
      if (rc.ok()) {
        CMKFS_ASSIGN_OR_RETURN(count, DecodeCount(*rc, "refcount"));
      }
      CMKFS_RETURN_IF_ERROR(txn.Put(t_.ref, slot_key, EncodeCount(count + 1)));
      ++n;
      // Our own Puts may move the cursor's page: re-seek past this key.
      std::string next = key;
      next.push_back('\0');
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Seek(next));
    }
    if (n > 0) {
      CMKFS_RETURN_IF_ERROR(
          txn.Put(t_.count, EncodeU64Key(dst), EncodeCount(n)));
    }
    return also(txn);
  }));
  CMKFS_RETURN_IF_ERROR(meta_->Sync());
  cache_->ClearExclusive(src);
  return Status::Ok();
}

Status ExtentMap::Drop(uint64_t rid,
                       const std::function<Status(MetaTxn&)>& also,
                       size_t* freed) {
  CMKFS_RETURN_IF_ERROR(CommitPending());
  MutexLock commit_lock(&commit_mu_);
  std::vector<uint64_t> released;
  std::string prefix = EncodeU64Key(rid);
  CMKFS_RETURN_IF_ERROR(meta_->Update([&](MetaTxn& txn) -> Status {
    released.clear();
    for (;;) {
      std::vector<std::pair<std::string, std::string>> chunk;
      {
        CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(t_.map));
        CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(prefix));
        while (ok && cur->key().starts_with(prefix) && chunk.size() < 4096) {
          chunk.emplace_back(std::string(cur->key()),
                             std::string(cur->value()));
          CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
        }
      }
      if (chunk.empty()) break;
      for (const auto& [key, slot_key] : chunk) {
        CMKFS_RETURN_IF_ERROR(txn.Delete(t_.map, key));
        uint64_t count = 0;
        auto rc = txn.Get(t_.ref, slot_key);
        if (rc.ok()) {
          CMKFS_ASSIGN_OR_RETURN(count, DecodeCount(*rc, "refcount"));
        }
        if (count > 1) {
          CMKFS_RETURN_IF_ERROR(
              txn.Put(t_.ref, slot_key, EncodeCount(count - 1)));
        } else {
          if (count == 1) CMKFS_RETURN_IF_ERROR(txn.Delete(t_.ref, slot_key));
          CMKFS_ASSIGN_OR_RETURN(uint64_t slot, DecodeSlot(slot_key));
          released.push_back(slot);
        }
      }
    }
    Status st = txn.Delete(t_.count, prefix);
    if (!st.ok() && st.kind() != ErrorKind::kNotFound) return st;
    CMKFS_RETURN_IF_ERROR(pool_->RecordCommit(txn, {}, released, std::nullopt));
    return also(txn);
  }));
  CMKFS_RETURN_IF_ERROR(meta_->Sync());
  pool_->Release(released);
  cache_->DropResource(rid);
  *freed = released.size();
  return Status::Ok();
}

}  // namespace cmkfs::fs
