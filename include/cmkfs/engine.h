// The disk engine: disk encryption sets, thin encrypted disks, snapshots and
// images as copy-on-write clones. A library used in-process by the daemon,
// the CLI (when no daemon runs) and the tests. Depends on keystore::KeyStore
// only through its interface.
//
// Thread-safety: every Engine method and every DiskHandle method is
// thread-safe. One Engine owns its state directory exclusively (a lock file);
// a second Open of the same directory fails with Busy.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/keystore.h"
#include "cmkfs/meta_store.h"
#include "cmkfs/status.h"
#include "cmkfs/units.h"

namespace cmkfs::fs {

enum class ResourceKind { kDisk, kSnapshot, kImage };
// "disk", "snapshot", "image"; directory names are "disks", "snapshots",
// "images".
std::string_view ResourceKindName(ResourceKind kind);
// The mount's directory for the kind: "disks", "snapshots", "images".
std::string_view ResourceDirName(ResourceKind kind);

enum class DiskSku { kPremiumLrs, kStandardSsdLrs, kStandardLrs, kUltraSsdLrs };
std::string_view DiskSkuName(DiskSku sku);  // "Premium_LRS", ...
// InvalidArgument lists the four accepted SKUs.
Result<DiskSku> ParseDiskSku(std::string_view text);

enum class EncryptionType { kPlatform, kCustomer };  // "platform", "customer"
std::string_view EncryptionTypeName(EncryptionType e);

struct Scope {
  std::string subscription = "default";
  std::string resource_group = "default";
  std::string region = "local";
};

struct DesSpec {
  std::string name;
  keystore::KeyId key_id;  // versionless resolves to the latest enabled one
  bool auto_rotate = false;
  Scope scope;
};

struct DesInfo {
  std::string name;
  keystore::KeyId key_id;  // with version
  std::string encryption_type = "EncryptionAtRestWithCustomerKey";
  bool auto_rotate = false;
  std::string identity;  // system-assigned object id to grant in the vault
  Scope scope;
  TimePoint created{};
  std::optional<TimePoint> last_rotation;
  std::string rotation_error;  // empty when the last rotation succeeded
  // The previous key version, kept until every resource is re-wrapped.
  std::optional<keystore::KeyId> previous_key_id;
};

struct DiskSpec {
  std::string name;
  uint64_t size = 0;  // bytes, multiple of 4096; may be 0 with `source`
  DiskSku sku = DiskSku::kPremiumLrs;
  std::string des;     // empty = platform-managed key
  std::string source;  // snapshot or image name ("snapshots/N", "images/N"
                       // or a bare name that is unambiguous)
  Scope scope;
  bool guest_encrypted = false;
};

enum class ResourceState { kActive, kSealed };  // "active", "sealed"

struct ResourceInfo {
  ResourceKind kind = ResourceKind::kDisk;
  std::string name;
  uint64_t size = 0;
  DiskSku sku = DiskSku::kPremiumLrs;
  EncryptionType encryption = EncryptionType::kPlatform;
  std::string des;         // empty for platform keys
  keystore::KeyId key_id;  // the version that wraps the DEK now
  ResourceState state = ResourceState::kActive;
  std::string seal_reason;  // empty when active
  std::string source;       // "disks/NAME", "snapshots/NAME", ...
  Scope scope;
  bool guest_encrypted = false;
  TimePoint created{};
  uint64_t allocated_bytes = 0;
  uint32_t open_handles = 0;
};

struct PoolStats {
  uint64_t capacity_bytes = 0;  // of the backing filesystem
  uint64_t free_bytes = 0;
  uint64_t allocated_bytes = 0;  // by extents
};

struct FsckReport {
  uint64_t resources_checked = 0;
  uint64_t extents_checked = 0;
  std::vector<std::string> problems;  // one line each; empty = clean
  bool clean() const { return problems.empty(); }
};

// Progress and cancellation for long operations (import, export).
struct Progress {
  std::function<void(uint64_t done, uint64_t total)> on_progress;
  const std::atomic<bool>* cancel = nullptr;  // set to true to cancel
};

// An open disk, snapshot or image. Methods are thread-safe. Offsets and
// lengths are bytes, any alignment; unaligned edges are read-modify-write.
class DiskHandle {
 public:
  virtual ~DiskHandle() = default;
  virtual uint64_t size() const = 0;
  virtual bool writable() const = 0;
  // Reads up to buf.size() bytes; returns the count (short only at the end
  // of the disk). Unwritten ranges read as zeros. KeyUnavailable when sealed.
  virtual Result<size_t> Read(uint64_t offset, std::span<uint8_t> buf) = 0;
  // Writes all of `data`. OutOfRange past the end, ReadOnly on a snapshot or
  // image, KeyUnavailable when sealed, NoSpace when the backing store is full.
  virtual Result<size_t> Write(uint64_t offset,
                               std::span<const uint8_t> data) = 0;
  // Punch hole: the range reads as zeros; whole extents inside it are freed.
  virtual Status Discard(uint64_t offset, uint64_t length) = 0;
  // Zero range: the range reads as zeros (may free extents as Discard does).
  virtual Status ZeroRange(uint64_t offset, uint64_t length) = 0;
  // Makes every write acknowledged before the call durable: data first,
  // then the metadata that references it.
  virtual Status Sync() = 0;
  // Next offset >= `offset` that holds data / lies in a hole. NotFound when
  // there is no data at or after `offset` (SEEK_DATA's ENXIO); SeekHole
  // returns size() when the rest is data.
  virtual Result<uint64_t> SeekData(uint64_t offset) = 0;
  virtual Result<uint64_t> SeekHole(uint64_t offset) = 0;
};

// Where a resource's DEK is wrapped, for the key watcher.
struct KeyUse {
  ResourceKind kind = ResourceKind::kDisk;
  std::string name;
  std::string des;       // empty for platform keys
  std::string identity;  // the identity that unwraps
  keystore::KeyId key_id;
  DiskSku sku = DiskSku::kPremiumLrs;
  ResourceState state = ResourceState::kActive;
};

struct EngineOptions {
  std::filesystem::path dir;  // metadata (LMDB) and extents live here
  uint64_t cache_bytes = 32ull << 20;
  uint32_t des_quota_per_region = 1000;
  // Largest size of a disk (create, clone, import, resize); at most
  // kMaxMaxDiskSize (config.h), so that size arithmetic cannot overflow.
  uint64_t max_disk_size = kDefaultMaxDiskSize;
  Scope defaults;
  std::string system_vault = "cmkfs-system";  // platform-managed keys
  // Size of the "platform" key created in the system vault on first open.
  int system_key_bits = keystore::kDefaultKeyBits;
  // Longest time new extent mappings stay in memory before a batch commit
  // (Sync/Flush commit at once).
  std::chrono::milliseconds commit_interval{1000};
  // New extents are refused with NoSpace while the filesystem holding `dir`
  // has less than this free, so that metadata commits (fsync, fsck, delete)
  // still find room when disks fill it. 0: 1% of its capacity, at least
  // 4 MiB and at most 1 GiB.
  uint64_t backing_reserve_bytes = 0;
  // Makes the system-assigned identity of a new disk encryption set, given
  // its name, and returns the object id. In service mode the vault service
  // mints it and the host keeps its credential (vault::MintManagedIdentity);
  // empty: a random object id made here (embedded mode). Called with the
  // catalog's lock held; may block on the network up to the client deadline.
  std::function<Result<std::string>(std::string_view des_name)>
      mint_des_identity;
};

class IoLayer;  // cmkfs/io_layer.h: backing-file I/O of the extent pool

// What the engine keeps its state on. A null member means the product's
// own: POSIX files, and LMDB opened without a sync per commit (the engine
// orders its syncs itself: pool fdatasync, then metadata commit, then
// MetaStore::Sync). Tests inject fault-injecting stores (tests/support).
struct EngineStores {
  std::shared_ptr<IoLayer> io;
  // Opens the metadata store in `dir` (<options.dir>/meta, which exists),
  // once per engine, after the state directory lock is taken. The engine
  // holds the store for its life; a test may keep it across engines.
  std::function<Result<std::shared_ptr<MetaStore>>(
      const std::filesystem::path& dir)>
      open_meta;
};

// What presents the resources to a consumer (the FUSE adapter) needs of the
// engine: look them up, list them, open them, and hear of changes. Engine is
// one; the adapter's tests use a fake (tests/fs/fuse). Thread-safe.
class ResourceView {
 public:
  virtual ~ResourceView() = default;

  // NotFound.
  virtual Result<ResourceInfo> Get(ResourceKind kind,
                                   std::string_view name) = 0;
  virtual Result<std::vector<ResourceInfo>> List(ResourceKind kind) = 0;
  // The shared pool's space (statfs).
  virtual Result<PoolStats> Stats() = 0;
  // NotFound, KeyUnavailable when sealed, ReadOnly when `writable` is asked
  // of a snapshot or image.
  virtual Result<std::shared_ptr<DiskHandle>> Open(ResourceKind kind,
                                                   std::string_view name,
                                                   bool writable) = 0;
  // Called with (kind, name) after a resource is created, deleted, resized
  // or changes state. Called without engine locks held. One listener; a new
  // one (or nullptr) replaces it.
  virtual void SetChangeListener(
      std::function<void(ResourceKind, std::string_view)> listener) = 0;
};

// The engine facade the daemon and cmkctl use: the DES and resource
// lifecycle, transfer, fsck and the key watcher's hooks, plus the
// ResourceView (Get, List, Stats, Open, SetChangeListener). Thread-safe.
class Engine : public ResourceView {
 public:
  ~Engine() override = default;

  // --- disk encryption sets ------------------------------------------------
  // FailedPrecondition if the key's vault lacks purge protection;
  // FailedPrecondition when the per-region quota is reached.
  virtual Result<DesInfo> CreateDes(const DesSpec& spec) = 0;
  // Points the DES at a new key or version and re-wraps the DEK of every
  // resource that uses it (no data rewritten). Crash-safe: resumes on Open.
  virtual Result<DesInfo> UpdateDes(std::string_view name,
                                    std::optional<keystore::KeyId> key_id,
                                    std::optional<bool> auto_rotate) = 0;
  virtual Result<DesInfo> GetDes(std::string_view name) = 0;
  // Records why a rotation of the DES failed outside the engine (the key
  // watcher's auto-rotation); shown as rotation_error until the next
  // successful re-wrap clears it. Empty `error` clears it. NotFound.
  virtual Status SetDesRotationError(std::string_view name,
                                     std::string_view error) = 0;
  virtual Result<std::vector<DesInfo>> ListDes() = 0;
  // FailedPrecondition while a resource uses it.
  virtual Status DeleteDes(std::string_view name) = 0;

  // --- resources -------------------------------------------------------------
  virtual Result<ResourceInfo> CreateDisk(const DiskSpec& spec) = 0;
  // Creates a disk from a raw image file, skipping zero and hole ranges.
  // On cancel or error no disk is left behind.
  virtual Result<ResourceInfo> ImportDisk(const DiskSpec& spec,
                                          const std::filesystem::path& file,
                                          const Progress& progress) = 0;
  // Decrypts into a sparse raw file (created; AlreadyExists if present).
  virtual Status Export(ResourceKind kind, std::string_view name,
                        const std::filesystem::path& file,
                        const Progress& progress) = 0;
  // Point-in-time: every write acknowledged before the call is in it.
  virtual Result<ResourceInfo> CreateSnapshot(std::string_view name,
                                              std::string_view source_disk) = 0;
  // From a disk or a snapshot ("disks/N", "snapshots/N" or a bare name).
  virtual Result<ResourceInfo> CreateImage(std::string_view name,
                                           std::string_view source) = 0;
  // Busy while open. Clones of it stay intact.
  virtual Status Delete(ResourceKind kind, std::string_view name) = 0;
  // Grow only (InvalidArgument when smaller or unaligned).
  virtual Result<ResourceInfo> Resize(std::string_view disk,
                                      uint64_t new_size) = 0;
  // FailedPrecondition for customer-key disks.
  virtual Result<ResourceInfo> Move(
      std::string_view disk, std::string_view resource_group,
      std::optional<std::string> subscription) = 0;
  // Re-wraps the disk's DEK under the DES's key (no data rewritten).
  virtual Result<ResourceInfo> SetDiskDes(std::string_view disk,
                                          std::string_view des) = 0;
  virtual Result<FsckReport> Fsck() = 0;

  // --- key watcher support ---------------------------------------------------
  virtual Result<std::vector<KeyUse>> KeyUses() = 0;
  // Wipes the DEK and fails I/O on open handles (UltraSSD_LRS: only once its
  // last handle closes), then records the sealed state and the reason: once
  // Get/KeyUses show it sealed, no I/O on it succeeds. If the record cannot
  // be written the handles stay cut off and the error is returned.
  virtual Status Seal(ResourceKind kind, std::string_view name,
                      std::string_view reason) = 0;
  // Unwraps the DEK again; I/O works on open handles.
  virtual Status Unseal(ResourceKind kind, std::string_view name) = 0;
  // Commits pending metadata and syncs everything (shutdown, tests).
  virtual Status Flush() = 0;
};

// Opens (creating if needed) the engine in options.dir. `keystore` must
// outlive the engine.
Result<std::unique_ptr<Engine>> OpenEngine(const EngineOptions& options,
                                           keystore::KeyStore* keystore);
// Same, on the given stores.
Result<std::unique_ptr<Engine>> OpenEngine(const EngineOptions& options,
                                           keystore::KeyStore* keystore,
                                           EngineStores stores);

}  // namespace cmkfs::fs
