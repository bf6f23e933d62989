// Internal: the Engine implementation, shared by engine.cc (the facade over
// the catalog), engine_open.cc (open, seal, unseal, resize) and engine_io.cc
// (the data path: the handles and their volume stacks, the stores below
// them, the commit timer).
//
// Lock order (outer first):
//   control_mu_ -> a resource's hold (locks_) -> OpenResource::barrier ->
//   the volume stack's locks (fs/volume/extent_map.h: extent stripe ->
//   ExtentMap's commit_mu_ -> alloc_gate_ -> pending_mu_ -> SlotPool's lock
//   -> ExtentCache shard).
// open_mu_, listener_mu_, loop_mu_ and ResourceLocks' own mutex are leaves
// (never held while taking another); change listeners run with no engine
// lock held.
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
// Data path: the I/O path takes barrier (shared), then goes down the stack;
// it never takes control_mu_.
#pragma once

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
#include "extent_map.h"
#include "records.h"
#include "resource_locks.h"
#include "slot_pool.h"
#include "writer_preferring_mutex.h"

namespace cmkfs::fs {

// The write barrier's lock (fs/volume/writer_preferring_mutex.h).
using WriterPreferringRwLock = WriterPreferringMutex;

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

  // --- data path (engine_io.cc) ---
  // The extent map and slot pool of every volume, built on first use from
  // what Init read (the pool file, the high-water mark). Thread-safe.
  ExtentMap& Map();
  // Commits the extent map's batch (every disk's pending mappings).
  Status CommitPending();
  int64_t PendingCount(uint64_t rid);
  bool SlotLost(uint64_t slot);
  // Drops one handle of `r`; the last one removes it from the open table.
  void CloseHandle(const std::shared_ptr<OpenResource>& r) EXCLUDES(open_mu_);

 private:
  void CommitLoop();
  void RequestCommit();

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
  // Set by Init: the pool file, its size and the committed high-water mark
  // at open, the slots lost to a truncated file (Init warns about them).
  std::shared_ptr<IoFile> pool_;
  std::filesystem::path pool_path_;
  std::atomic<uint64_t> pool_known_size_{0};
  uint64_t lost_begin_ = 0, lost_end_ = 0;
  uint64_t hwm_ = 0;
  // One cache budget and one table of extent locks for every volume.
  ExtentCache cache_;
  std::vector<SharedMutex> stripes_;
  std::once_flag stores_once_;
  std::unique_ptr<SlotPool> slots_;
  std::unique_ptr<ExtentMap> map_;

  // Set by Init once the metadata store is open.
  std::optional<Catalog> catalog_;
  // Serializes changes of the catalog as a whole (see the lock order).
  Mutex control_mu_;
  // Per-resource holds: Open, Seal, Unseal, Resize, a re-wrap's step.
  ResourceLocks locks_;
  Mutex open_mu_ ACQUIRED_AFTER(control_mu_);
  std::map<uint64_t, std::shared_ptr<OpenResource>> open_ GUARDED_BY(open_mu_);

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
