// Internal: the Engine implementation, shared by engine.cc (control plane)
// and engine_io.cc (the data path: the handles and their volume stacks, the
// stores below them, the commit timer).
//
// Lock order (outer first):
//   control_mu_ -> OpenResource::barrier -> the volume stack's locks
//   (fs/volume/extent_map.h: extent stripe -> ExtentMap's commit_mu_ ->
//   alloc_gate_ -> pending_mu_ -> SlotPool's lock -> ExtentCache shard);
//   open_mu_ and loop_mu_ are leaves (never held while taking another). The
//   I/O path takes barrier (shared), then goes down the stack; it never takes
//   control_mu_.
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

#include "cmkfs/crypto.h"
#include "cmkfs/engine.h"
#include "cmkfs/io_layer.h"
#include "cmkfs/meta_store.h"
#include "extent_cache.h"
#include "extent_map.h"
#include "records.h"
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
  void CloseHandle(const std::shared_ptr<OpenResource>& r);

 private:
  void CommitLoop();
  void RequestCommit();

  // --- engine.cc ---
  Result<ResourceRecord> LoadResource(ResourceKind kind, std::string_view name);
  Result<DesRecord> LoadDes(std::string_view name);
  Status PutResource(const ResourceRecord& r);
  Status PutDes(const DesRecord& d);
  Result<ResourceInfo> ToInfo(const ResourceRecord& r);
  DesInfo ToDesInfo(const DesRecord& d);
  Result<std::pair<ResourceKind, std::string>> ResolveSource(
      std::string_view source, bool allow_disk);
  Scope FillScope(Scope s) const;
  Status CheckDesAccess(const DesRecord& d, const keystore::KeyId& key);
  Result<keystore::KeyId> ResolveKeyVersion(const keystore::KeyId& id);
  Result<std::vector<uint8_t>> WrapDek(const crypto::SecretBytes& dek,
                                       const std::string& identity,
                                       const keystore::KeyId& key,
                                       const std::string& uuid);
  Result<crypto::SecretBytes> UnwrapDek(const ResourceRecord& r);
  // The DEK of an open, unsealed resource from memory (its wrapping key
  // version may be disabled already), else unwrapped. control_mu_ held.
  Result<crypto::SecretBytes> DekForRewrap(const ResourceRecord& r);
  Result<crypto::SecretBytes> NewDek();
  Result<ResourceRecord> CloneLocked(ResourceKind kind, std::string_view name,
                                     const ResourceRecord& src,
                                     const DiskSpec* spec);
  Result<ResourceRecord> CreateDiskLocked(const DiskSpec& spec);
  Status DeleteLocked(const ResourceRecord& r);
  Status RewrapDesLocked(DesRecord& d);
  Status EnsureSystemKey();
  std::shared_ptr<OpenResource> FindOpen(uint64_t rid);
  void Notify(ResourceKind kind, std::string_view name);

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

  std::mutex control_mu_;  // serializes control-plane operations
  std::mutex open_mu_;
  std::map<uint64_t, std::shared_ptr<OpenResource>> open_;

  std::mutex listener_mu_;
  std::function<void(ResourceKind, std::string_view)> listener_;

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stop_ = false;
  bool commit_requested_ = false;
  std::thread committer_;
};

}  // namespace cmkfs::fs
