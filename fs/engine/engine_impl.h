// Internal: the Engine implementation, shared by engine.cc (the facade over
// the catalog), engine_open.cc (open, seal, unseal, resize) and engine_io.cc
// (data path, batch commit, allocation).
//
// Lock order (outer first):
//   control_mu_ -> a resource's hold (locks_) -> OpenResource::barrier ->
//   commit_mu_ -> alloc_gate_ -> pending_mu_ -> ExtentCache shard.
// open_mu_, listener_mu_ and ResourceLocks' own mutex are leaves (never held
// while taking another); change listeners run with no engine lock held.
//
// Control plane: a change of the catalog as a whole (a DES's create, update
// and re-wrap, delete; a resource's create, clone, delete, move, set-des)
// holds control_mu_, then the hold of the one resource whose record it
// changes (a clone: its source). Open, Seal, Unseal and Resize take only the
// resource's hold, never control_mu_. A re-wrap holds control_mu_ for its
// whole run but each resource's hold only for that resource's step, so it
// stalls no Open, Seal or Resize of another resource. A thread holds at most
// one resource at a time.
//
// Data path: the I/O path takes barrier (shared) -> one extent stripe
// -> alloc_gate_ (shared, for a new slot) -> pending_mu_ (only when a mapping
// changes) -> cache shard. It never takes control_mu_ or commit_mu_. An
// aligned read may hold several stripes, all shared, taken in ascending
// index order, each once; nobody waits for a stripe while holding another
// exclusively, so this cannot deadlock.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "catalog.h"
#include "cmkfs/crypto.h"
#include "cmkfs/engine.h"
#include "cmkfs/io_layer.h"
#include "cmkfs/meta_store.h"
#include "cmkfs/mutex.h"
#include "extent_cache.h"
#include "records.h"
#include "resource_locks.h"

namespace cmkfs::fs {

// A reader-writer lock that lets a waiting writer in ahead of new readers
// (glibc's default prefers readers, which starves a snapshot behind a
// stream of I/O). Readers must not nest.
class WriterPreferringRwLock {
 public:
  WriterPreferringRwLock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~WriterPreferringRwLock() { pthread_rwlock_destroy(&lock_); }
  WriterPreferringRwLock(const WriterPreferringRwLock&) = delete;
  WriterPreferringRwLock& operator=(const WriterPreferringRwLock&) = delete;
  void lock() { pthread_rwlock_wrlock(&lock_); }
  void unlock() { pthread_rwlock_unlock(&lock_); }
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

// The lock of the engine's open table: a cmkfs::Mutex that std::lock_guard
// also takes (CloseHandle in engine_io.cc still uses it).
class CAPABILITY("mutex") OpenTableMutex : public Mutex {
 public:
  void lock() ACQUIRE() { Lock(); }
  void unlock() RELEASE() { Unlock(); }
};

// Per open resource; shared by its handles. Removed (DEK wiped) when the
// last handle closes.
struct OpenResource {
  uint64_t rid = 0;
  ResourceKind kind = ResourceKind::kDisk;
  std::string name;
  DiskSku sku = DiskSku::kPremiumLrs;
  // Write barrier: I/O holds it shared; snapshot, resize, seal exclusive.
  WriterPreferringRwLock barrier;
  // Guarded by barrier.
  std::unique_ptr<crypto::XtsCipher> cipher;  // null when sealed
  // The DEK behind `cipher` (re-wrap uses it instead of unwrapping with a
  // key version that may be disabled already); wiped with it.
  crypto::SecretBytes dek;
  std::string seal_reason;
  std::atomic<uint64_t> size{0};
  // Guarded by Engine::open_mu_.
  uint32_t handles = 0;
};

// Metadata changes made in memory since the last commit.
struct Batch {
  std::unordered_map<ExtKey, uint64_t, ExtKeyHash> map;  // slot or kNoSlot
  std::unordered_map<uint64_t, int64_t> ref;    // slot -> refcount delta
  std::unordered_set<uint64_t> taken;           // slots taken off "free"
  std::unordered_map<uint64_t, int64_t> count;  // rid -> mapped extents
  bool empty() const {
    return map.empty() && ref.empty() && taken.empty() && count.empty();
  }
};

class EngineImpl : public Engine {
 public:
  EngineImpl(const EngineOptions& options, keystore::KeyStore* ks,
             EngineStores stores);
  ~EngineImpl() override;
  Status Init();

  Result<DesInfo> CreateDes(const DesSpec& spec) override;
  Result<DesInfo> UpdateDes(std::string_view name,
                            std::optional<keystore::KeyId> key_id,
                            std::optional<bool> auto_rotate) override;
  Result<DesInfo> GetDes(std::string_view name) override;
  Status SetDesRotationError(std::string_view name,
                             std::string_view error) override;
  Result<std::vector<DesInfo>> ListDes() override;
  Status DeleteDes(std::string_view name) override;
  Result<ResourceInfo> CreateDisk(const DiskSpec& spec) override;
  Result<ResourceInfo> ImportDisk(const DiskSpec& spec,
                                  const std::filesystem::path& file,
                                  const Progress& progress) override;
  Status Export(ResourceKind kind, std::string_view name,
                const std::filesystem::path& file,
                const Progress& progress) override;
  Result<ResourceInfo> CreateSnapshot(std::string_view name,
                                      std::string_view source_disk) override;
  Result<ResourceInfo> CreateImage(std::string_view name,
                                   std::string_view source) override;
  Result<ResourceInfo> Get(ResourceKind kind, std::string_view name) override;
  Result<std::vector<ResourceInfo>> List(ResourceKind kind) override;
  Status Delete(ResourceKind kind, std::string_view name) override;
  Result<ResourceInfo> Resize(std::string_view disk,
                              uint64_t new_size) override;
  Result<ResourceInfo> Move(std::string_view disk,
                            std::string_view resource_group,
                            std::optional<std::string> subscription) override;
  Result<ResourceInfo> SetDiskDes(std::string_view disk,
                                  std::string_view des) override;
  Result<FsckReport> Fsck() override;
  Result<PoolStats> Stats() override;
  Result<std::shared_ptr<DiskHandle>> Open(ResourceKind kind,
                                           std::string_view name,
                                           bool writable) override;
  Result<std::vector<KeyUse>> KeyUses() override;
  Status Seal(ResourceKind kind, std::string_view name,
              std::string_view reason) override;
  Status Unseal(ResourceKind kind, std::string_view name) override;
  void SetChangeListener(
      std::function<void(ResourceKind, std::string_view)> listener) override;
  Status Flush() override;

  // --- data path (engine_io.cc), used by handles ---
  Result<size_t> ReadAt(OpenResource& r, uint64_t offset,
                        std::span<uint8_t> buf);
  Result<size_t> WriteAt(OpenResource& r, uint64_t offset,
                         std::span<const uint8_t> data);
  Status ZeroAt(OpenResource& r, uint64_t offset, uint64_t length);
  Result<uint64_t> SeekData(OpenResource& r, uint64_t offset);
  Result<uint64_t> SeekHole(OpenResource& r, uint64_t offset);
  Status SyncData();
  // Drops one handle of `r`; the last one removes it from the open table.
  // Takes open_mu_ with std::lock_guard, which the analysis cannot see.
  void CloseHandle(const std::shared_ptr<OpenResource>& r)
      NO_THREAD_SAFETY_ANALYSIS;

 private:
  // --- engine_io.cc ---
  // Aligned multi-extent reads hold up to this many stripes at once.
  static constexpr size_t kRunExtents = 32;
  size_t StripeIndex(const ExtKey& k) const;
  std::shared_mutex& Stripe(const ExtKey& k);
  Result<ExtEntry> Lookup(const ExtKey& k);
  Result<uint64_t> AllocateSlot();
  void RecordMapping(const ExtKey& k, uint64_t old_slot, uint64_t new_slot);
  // Data first (fdatasync), then one metadata transaction, then
  // MetaStore::Sync.
  Status CommitPending();
  Status ApplyBatch(MetaTxn& txn, const Batch& b, uint64_t hwm,
                    std::vector<uint64_t>* released);
  void ReleaseSlots(const std::vector<uint64_t>& released);
  Status RefillFreeCache();
  Status WriteExtent(OpenResource& r, const crypto::XtsCipher& c, uint64_t idx,
                     uint64_t ext_off, const uint8_t* data, uint64_t n);
  Status ReadAligned(OpenResource& r, const crypto::XtsCipher& c,
                     uint64_t offset, uint8_t* out, uint64_t n);
  Status ReadExtent(OpenResource& r, const crypto::XtsCipher& c, uint64_t idx,
                    uint64_t ext_off, uint8_t* out, uint64_t n);
  Status UnmapExtent(OpenResource& r, uint64_t idx);
  // Corruption unless the mapped `slot` lies inside the pool file and its
  // data was not lost to a truncated or missing file. Re-stats the file only
  // when the slot lies beyond the size seen last. Thread-safe.
  Status CheckSlotInPool(uint64_t slot);
  bool SlotLost(uint64_t slot);
  // NoSpace when the backing filesystem is down to its reserve. Looks at
  // statvfs every few allocations, or at each one when space is short.
  // pending_mu_ held.
  Status CheckBackingSpace();
  // Whether the backing filesystem is at or below its reserve (statvfs now).
  bool BackingFull();
  struct BackingSpace {
    uint64_t avail = 0;    // bytes an unprivileged writer may still use
    uint64_t reserve = 0;  // bytes kept for metadata
  };
  // statvfs of the backing directory now; nullopt when statvfs fails.
  std::optional<BackingSpace> ReadBackingSpace() const;
  void MarkSlotRewritten(uint64_t slot);
  Result<uint64_t> NextMappedCandidate(uint64_t rid, uint64_t idx);
  int64_t PendingCount(uint64_t rid);
  void CommitLoop();

  // --- control plane (engine.cc, engine_open.cc) ---
  // Catalog shorthands (CloneLocked and CreateDiskLocked use them).
  Result<ResourceRecord> LoadResource(ResourceKind kind,
                                      std::string_view name) {
    return catalog_->LoadResource(kind, name);
  }
  Result<DesRecord> LoadDes(std::string_view name) {
    return catalog_->LoadDes(name);
  }
  Scope FillScope(Scope s) const { return catalog_->FillScope(std::move(s)); }
  Status CheckDesAccess(const DesRecord& d, const keystore::KeyId& key) {
    return catalog_->CheckDesAccess(d, key);
  }
  Result<std::vector<uint8_t>> WrapDek(const crypto::SecretBytes& dek,
                                       const std::string& identity,
                                       const keystore::KeyId& key,
                                       const std::string& uuid) {
    return catalog_->WrapDek(dek, identity, key, uuid);
  }
  Result<crypto::SecretBytes> UnwrapDek(const ResourceRecord& r) {
    return catalog_->UnwrapDek(r);
  }
  // The record plus what only the engine knows: allocated bytes (pending
  // mappings included) and open handles.
  Result<ResourceInfo> ToInfo(const ResourceRecord& r) EXCLUDES(open_mu_);
  // The DEK of an open, unsealed resource from memory (its wrapping key
  // version may be disabled already), else unwrapped. The resource's hold
  // is held.
  Result<crypto::SecretBytes> DekForRewrap(const ResourceRecord& r)
      EXCLUDES(open_mu_);
  // The catalog's re-wrap hooks: each step under the resource's hold.
  RewrapHooks Rewrap();
  Result<ResourceRecord> CloneLocked(ResourceKind kind, std::string_view name,
                                     const ResourceRecord& src,
                                     const DiskSpec* spec)
      REQUIRES(control_mu_);
  Result<ResourceRecord> CreateDiskLocked(const DiskSpec& spec)
      REQUIRES(control_mu_);
  Status DeleteLocked(const ResourceRecord& r) REQUIRES(control_mu_);
  // After a change of one resource (the changed record, or the error):
  // notifies the listener and returns the resource's info.
  Result<ResourceInfo> Changed(const Result<ResourceRecord>& r)
      EXCLUDES(control_mu_);
  std::shared_ptr<OpenResource> FindOpen(uint64_t rid) EXCLUDES(open_mu_);
  void Notify(ResourceKind kind, std::string_view name)
      EXCLUDES(control_mu_, listener_mu_);

  EngineOptions options_;
  keystore::KeyStore* ks_;
  EngineStores stores_;
  int lock_fd_ = -1;
  std::shared_ptr<MetaStore> meta_;
  MetaTable db_meta_ = 0, db_res_ = 0, db_des_ = 0, db_map_ = 0, db_ref_ = 0,
            db_free_ = 0, db_count_ = 0;
  std::shared_ptr<IoFile> pool_;
  std::filesystem::path pool_path_;
  // Largest pool file size seen; slots below it are inside the file.
  std::atomic<uint64_t> pool_known_size_{0};
  // Slots [lost_begin_, lost_end_) were allocated but lay beyond the end of
  // the pool file at open (truncated or missing file): their data is gone.
  // Set by Init, constant afterwards.
  uint64_t lost_begin_ = 0, lost_end_ = 0;
  std::mutex rewritten_mu_;
  std::unordered_set<uint64_t> rewritten_;  // lost slots written since open
  ExtentCache cache_;
  std::vector<std::shared_mutex> stripes_;

  // Set by Init once the metadata store is open.
  std::optional<Catalog> catalog_;
  // Serializes changes of the catalog as a whole (see the lock order).
  Mutex control_mu_;
  // Per-resource holds: Open, Seal, Unseal, Resize, a re-wrap's step.
  ResourceLocks locks_;
  OpenTableMutex open_mu_ ACQUIRED_AFTER(control_mu_);
  std::map<uint64_t, std::shared_ptr<OpenResource>> open_ GUARDED_BY(open_mu_);

  std::mutex commit_mu_;
  // Held shared from a slot's allocation to its mapping, exclusive by the
  // commit while it takes the batch: a batch never holds an allocated slot
  // without its mapping (which would free it at commit while in use).
  WriterPreferringRwLock alloc_gate_;
  std::mutex pending_mu_;
  Batch open_batch_;                   // pending_mu_
  const Batch* committing_ = nullptr;  // pending_mu_
  uint64_t gen_ = 1;                   // pending_mu_: generation of open_batch_
  uint64_t hwm_ = 0;                   // pending_mu_: next never-used slot
  std::vector<uint64_t> free_cache_;   // pending_mu_
  bool free_db_has_more_ = true;       // pending_mu_
  uint32_t allocs_since_space_check_ = 0;  // pending_mu_
  bool space_short_ = true;                // pending_mu_
  std::atomic<uint64_t> commit_gen_{0};

  Mutex listener_mu_;
  std::function<void(ResourceKind, std::string_view)> listener_
      GUARDED_BY(listener_mu_);

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stop_ = false;
  bool commit_requested_ = false;
  std::thread committer_;
};

}  // namespace cmkfs::fs
