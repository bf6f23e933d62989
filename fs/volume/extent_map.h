// The extent map: which slot holds each extent of each resource, how many
// mappings name each slot, how many extents each resource maps. The only
// code that edits the "extmap", "refcount" and "counts" tables. Changes made
// by I/O are collected in memory (the batch) and committed together
// (docs/architecture.md#crash-model); clones and deletes are one transaction
// each after a commit.
//
// Lock order (outer first): commit_mu_ -> alloc_gate_ -> pending_mu_ ->
// SlotPool's lock -> ExtentCache shard. I/O takes an extent stripe (shared
// or exclusive) -> alloc_gate_ (shared, for a new slot) -> pending_mu_ (when
// a mapping changes) -> cache shard; it never takes commit_mu_ except with
// TryLock (refilling the free cache). An aligned read may hold several
// stripes, all shared, taken in ascending index order, each once; nobody
// waits for a stripe while holding another exclusively, so this cannot
// deadlock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cmkfs/meta_store.h"
#include "cmkfs/mutex.h"
#include "extent_cache.h"
#include "slot_pool.h"
#include "writer_preferring_mutex.h"

namespace cmkfs::fs {

// One resource's metadata changes made in memory since its last commit.
struct ResourceBatch {
  std::unordered_map<uint64_t, uint64_t> map;  // extent -> slot or kNoSlot
  std::unordered_map<uint64_t, int64_t> ref;   // slot -> refcount delta
  std::unordered_set<uint64_t> taken;          // slots taken off "free"
  // Slots taken past the committed high-water mark.
  std::vector<uint64_t> grown;
  int64_t count = 0;  // mapped extents delta
  bool empty() const {
    return map.empty() && ref.empty() && taken.empty() && grown.empty() &&
           count == 0;
  }
  void MergeFrom(ResourceBatch&& older);
};
// Resource id -> its changes.
using Batch = std::unordered_map<uint64_t, ResourceBatch>;

struct ExtentTables {
  MetaTable map = 0, ref = 0, count = 0;
};

// Thread-safe. The cache and the stripes are the caller's (the engine owns
// them: one budget and one lock table for all its volumes); they outlive the
// map.
class ExtentMap {
 public:
  ExtentMap(MetaStore* meta, ExtentTables tables, SlotPool* pool,
            ExtentCache* cache, std::span<SharedMutex> stripes,
            std::function<void()> request_commit);

  SlotPool& pool() { return *pool_; }

  // The lock of extent `k`'s mapping. Lookup needs it held (shared or
  // exclusive); changing the mapping needs it exclusive.
  size_t StripeIndex(const ExtKey& k) const;
  SharedMutex& Stripe(const ExtKey& k) { return stripes_[StripeIndex(k)]; }
  SharedMutex& StripeAt(size_t i) { return stripes_[i]; }

  // The mapping of `k` (kNoSlot: a hole); a miss reads the table and caches
  // the next extents of the resource too. Caller holds k's stripe.
  Result<ExtEntry> Lookup(const ExtKey& k);
  // A slot for a new extent of `rid`, held in rid's batch until its mapping
  // is recorded. Caller holds alloc_gate() shared from here to
  // RecordMapping.
  Result<uint64_t> AllocateSlot(uint64_t rid) EXCLUDES(pending_mu_);
  WriterPreferringMutex& alloc_gate() { return alloc_gate_; }
  // `k` now maps `new_slot` (kNoSlot: unmapped) instead of `old_slot`.
  // Caller holds k's stripe exclusively. Asks for a commit when the batch is
  // large.
  void RecordMapping(const ExtKey& k, uint64_t old_slot, uint64_t new_slot)
      EXCLUDES(pending_mu_);

  // Commits the batch of every resource: (1) the pool's DataSync, (2) one
  // transaction with the batch, (3) MetaStore::Sync, (4) punch the freed
  // slots and offer them for reuse. On failure the batch stays pending
  // (NoSpace when the backing filesystem is full, else the error with
  // context).
  Status CommitPending() EXCLUDES(commit_mu_, pending_mu_);
  // The same for resource `rid` alone (an fsync of one disk): other
  // resources' changes stay pending. Slots other resources took past the
  // high-water mark join the free table in the same transaction (they hold
  // no durable mapping yet) and their batches take them off it again.
  Status CommitPending(uint64_t rid) EXCLUDES(commit_mu_, pending_mu_);
  bool HasPending() EXCLUDES(pending_mu_);
  // Mapped extents of `rid` (or of all resources) not committed yet.
  int64_t PendingCount(uint64_t rid) EXCLUDES(pending_mu_);
  int64_t PendingTotal() EXCLUDES(pending_mu_);
  // The lowest extent index >= idx of `rid` that may be mapped, committed or
  // pending (kNoSlot: none).
  Result<uint64_t> NextMappedCandidate(uint64_t rid, uint64_t idx)
      EXCLUDES(pending_mu_);

  // After a commit, in one transaction with `also` (the new resource record):
  // `dst` maps every slot `src` maps, each slot's refcount grows by one.
  // The caller keeps I/O on `src` out (its write barrier).
  Status Clone(uint64_t src, uint64_t dst,
               const std::function<Status(MetaTxn&)>& also)
      EXCLUDES(commit_mu_, pending_mu_);
  // After a commit, in one transaction with `also` (the record's removal):
  // every mapping of `rid` goes, slots no longer named are freed (punched
  // after the Sync). Sets `*freed` to how many were. No I/O on `rid` runs.
  Status Drop(uint64_t rid, const std::function<Status(MetaTxn&)>& also,
              size_t* freed) EXCLUDES(commit_mu_, pending_mu_);

 private:
  // `only`: commit that resource's batch alone, else every resource's.
  Status Commit(std::optional<uint64_t> only) EXCLUDES(commit_mu_, pending_mu_);
  // `adopted`: other resources' slots below `hwm` that join the free table.
  Status ApplyBatch(MetaTxn& txn, const Batch& b, uint64_t hwm,
                    const std::vector<uint64_t>& adopted,
                    std::vector<uint64_t>* released);

  MetaStore* const meta_;
  const ExtentTables t_;
  SlotPool* const pool_;
  ExtentCache* const cache_;
  const std::span<SharedMutex> stripes_;
  const std::function<void()> request_commit_;

  Mutex commit_mu_;
  // Held shared from a slot's allocation to its mapping, exclusive by the
  // commit while it takes the batch: a batch never holds an allocated slot
  // without its mapping (which would free it at commit while in use).
  WriterPreferringMutex alloc_gate_;
  Mutex pending_mu_ ACQUIRED_AFTER(alloc_gate_);
  Batch open_batch_ GUARDED_BY(pending_mu_);
  const Batch* committing_ GUARDED_BY(pending_mu_) = nullptr;
  // Every slot some batch (open or committing) takes off the free table:
  // a refill of the free cache skips them.
  std::unordered_set<uint64_t> taken_ GUARDED_BY(pending_mu_);
  // Generation of open_batch_.
  uint64_t gen_ GUARDED_BY(pending_mu_) = 1;
  // Successful commits; a prefetch that overlaps one caches nothing.
  std::atomic<uint64_t> commit_gen_{0};
};

}  // namespace cmkfs::fs
