// The engine facade: the state directory, and the control-plane methods as
// glue over the catalog (catalog.h), clones and deletes, fsck (fsck.h) and
// import/export (transfer.h). Open, seal and resize: engine_open.cc.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>

#include "cmkfs/path_guard.h"
#include "cmkfs/record.h"
#include "engine_impl.h"
#include "fsck.h"
#include "transfer.h"

namespace cmkfs::fs {
namespace {

constexpr size_t kStripes = 1024;

}  // namespace

EngineImpl::EngineImpl(const EngineOptions& options, keystore::KeyStore* ks,
                       EngineStores stores)
    : options_(options),
      ks_(ks),
      stores_(std::move(stores)),
      cache_(options.cache_bytes),
      stripes_(kStripes) {}

EngineImpl::~EngineImpl() {
  if (committer_.joinable()) {
    {
      std::lock_guard lock(loop_mu_);
      stop_ = true;
    }
    loop_cv_.notify_all();
    committer_.join();
  }
  if (meta_ && pool_) {
    Status st = CommitPending();
    if (!st.ok()) spdlog::error("engine: at close: {}", st.ToString());
  }
  pool_.reset();
  meta_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status EngineImpl::Init() {
  if (options_.dir.empty()) {
    return InvalidArgumentError("engine state directory is not set");
  }
  CMKFS_RETURN_IF_ERROR(path_guard::MakePrivateDir(options_.dir));
  CMKFS_RETURN_IF_ERROR(path_guard::MakePrivateDir(options_.dir / "meta"));
  CMKFS_RETURN_IF_ERROR(path_guard::MakePrivateDir(options_.dir / "extents"));
  std::string lock_path = (options_.dir / "LOCK").string();
  CMKFS_ASSIGN_OR_RETURN(lock_fd_,
                         path_guard::OpenNoFollow(lock_path, O_RDWR | O_CREAT));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) return ErrnoError("lock " + lock_path, err);
    char buf[32] = {};
    ssize_t n = ::pread(lock_fd_, buf, sizeof(buf) - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) {
      pid.pop_back();
    }
    return BusyError("state directory " + options_.dir.string() +
                     " is in use by another cmkfs process (pid " + pid + ")");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 ||
      ::pwrite(lock_fd_, pid.data(), pid.size(), 0) !=
          static_cast<ssize_t>(pid.size())) {
    return ErrnoError("write " + lock_path, errno);
  }

  CMKFS_ASSIGN_OR_RETURN(meta_, stores_.open_meta(options_.dir / "meta"));
  CMKFS_ASSIGN_OR_RETURN(db_meta_, meta_->OpenTable("meta"));
  CMKFS_ASSIGN_OR_RETURN(db_res_, meta_->OpenTable("resources"));
  CMKFS_ASSIGN_OR_RETURN(db_des_, meta_->OpenTable("des"));
  CMKFS_ASSIGN_OR_RETURN(db_map_, meta_->OpenTable("extmap"));
  CMKFS_ASSIGN_OR_RETURN(db_ref_, meta_->OpenTable("refcount"));
  CMKFS_ASSIGN_OR_RETURN(db_free_, meta_->OpenTable("free"));
  CMKFS_ASSIGN_OR_RETURN(db_count_, meta_->OpenTable("counts"));
  CMKFS_ASSIGN_OR_RETURN(
      std::unique_ptr<EraseSlotFile> slots,
      EraseSlotFile::Open(options_.dir / "meta" / "erase-slots"));
  catalog_.emplace(options_, ks_, meta_.get(),
                   CatalogTables{db_meta_, db_res_, db_des_}, std::move(slots));

  CMKFS_RETURN_IF_ERROR(meta_->Update([&](MetaTxn& txn) -> Status {
    auto fmt = txn.Get(db_meta_, "format");
    if (!fmt.ok()) {
      if (fmt.status().kind() != ErrorKind::kNotFound) return fmt.status();
      return txn.Put(db_meta_, "format", EncodeFormatRecord({}));
    }
    auto decoded = DecodeFormatRecord(*fmt);
    if (!decoded.ok()) {
      return decoded.status().WithContext("engine state in " +
                                          options_.dir.string());
    }
    return Status::Ok();
  }));
  CMKFS_RETURN_IF_ERROR(meta_->Sync());
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto a = txn.Get(db_meta_, "alloc");
    if (a.ok()) {
      CMKFS_ASSIGN_OR_RETURN(hwm_, DecodeCount(*a, "allocation record"));
    }
    return Status::Ok();
  }));
  pool_path_ = options_.dir / "extents" / "pool.0";
  CMKFS_ASSIGN_OR_RETURN(pool_, stores_.io->Open(pool_path_));
  CMKFS_ASSIGN_OR_RETURN(uint64_t pool_size, pool_->Size());
  pool_known_size_.store(pool_size);
  if (pool_size / kExtentSize < hwm_) {
    lost_begin_ = pool_size / kExtentSize;
    lost_end_ = hwm_;
    spdlog::warn(
        "engine: extent pool file {} holds {} bytes, less than the {} slots "
        "allocated; extents mapped to slots {} and up read as errors (run "
        "cmkctl fsck)",
        pool_path_.string(), pool_size, hwm_, lost_begin_);
  }
  CMKFS_RETURN_IF_ERROR(catalog_->SweepEraseSlots());
  CMKFS_RETURN_IF_ERROR(catalog_->EnsureSystemKey());

  // Resume re-wraps interrupted by a crash.
  CMKFS_ASSIGN_OR_RETURN(std::vector<DesRecord> all_des, catalog_->AllDes());
  for (DesRecord& d : all_des) {
    if (d.rotation_target.empty()) continue;
    spdlog::info("engine: resuming re-wrap of disk encryption set {} to {}",
                 d.name, d.rotation_target);
    Status st = catalog_->RewrapDes(d, Rewrap());
    if (!st.ok()) {
      spdlog::error("engine: re-wrap of {}: {}", d.name, st.ToString());
    }
  }
  committer_ = std::thread([this] { CommitLoop(); });
  return Status::Ok();
}

// --- disk encryption sets
// -----------------------------------------------------

Result<DesInfo> EngineImpl::CreateDes(const DesSpec& spec) {
  MutexLock lock(&control_mu_);
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, catalog_->CreateDes(spec));
  return Catalog::ToDesInfo(d);
}

Result<DesInfo> EngineImpl::UpdateDes(std::string_view name,
                                      std::optional<keystore::KeyId> key_id,
                                      std::optional<bool> auto_rotate) {
  MutexLock lock(&control_mu_);
  CMKFS_ASSIGN_OR_RETURN(
      DesRecord d, catalog_->UpdateDes(name, key_id, auto_rotate, Rewrap()));
  return Catalog::ToDesInfo(d);
}

Status EngineImpl::SetDesRotationError(std::string_view name,
                                       std::string_view error) {
  MutexLock lock(&control_mu_);
  return catalog_->SetDesRotationError(name, error);
}

Result<DesInfo> EngineImpl::GetDes(std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  return Catalog::ToDesInfo(d);
}

Result<std::vector<DesInfo>> EngineImpl::ListDes() {
  CMKFS_ASSIGN_OR_RETURN(std::vector<DesRecord> all, catalog_->AllDes());
  std::vector<DesInfo> out;
  out.reserve(all.size());
  for (const DesRecord& d : all) out.push_back(Catalog::ToDesInfo(d));
  return out;
}

Status EngineImpl::DeleteDes(std::string_view name) {
  MutexLock lock(&control_mu_);
  return catalog_->DeleteDes(name);
}

// --- resources
// --------------------------------------------------------------------

Result<ResourceInfo> EngineImpl::CreateDisk(const DiskSpec& spec) {
  return Changed([&]() -> Result<ResourceRecord> {
    MutexLock lock(&control_mu_);
    return CreateDiskLocked(spec);
  }());
}

Result<ResourceRecord> EngineImpl::CreateDiskLocked(const DiskSpec& spec) {
  CMKFS_RETURN_IF_ERROR(ValidateName("disk", spec.name));
  if (LoadResource(ResourceKind::kDisk, spec.name).ok()) {
    return AlreadyExistsError("disk " + spec.name + " already exists");
  }
  if (spec.source.empty()) return catalog_->CreateDisk(spec);
  CMKFS_ASSIGN_OR_RETURN(auto src_ref,
                         catalog_->ResolveSource(spec.source, false));
  auto hold = locks_.Lock(src_ref.first, src_ref.second);
  CMKFS_ASSIGN_OR_RETURN(auto src, LoadResource(src_ref.first, src_ref.second));
  return CloneLocked(ResourceKind::kDisk, spec.name, src, &spec);
}

Result<ResourceRecord> EngineImpl::CloneLocked(ResourceKind kind,
                                               std::string_view name,
                                               const ResourceRecord& src,
                                               const DiskSpec* spec) {
  CMKFS_RETURN_IF_ERROR(ValidateName(ResourceKindName(kind), name));
  if (LoadResource(kind, name).ok()) {
    return AlreadyExistsError(Describe(kind, name) + " already exists");
  }
  if (src.state == ResourceState::kSealed) {
    return KeyUnavailableError(Describe(src.kind, src.name) +
                               " is sealed: " + src.seal_reason);
  }
  ResourceRecord r;
  r.kind = kind;
  r.name = std::string(name);
  r.size = src.size;
  r.sku = src.sku;
  r.encryption = src.encryption;
  r.des = src.des;
  r.key_id = src.key_id;
  r.identity = src.identity;
  r.lineage = src.lineage;
  r.source = std::string(ResourceDirName(src.kind)) + "/" + src.name;
  r.scope = src.scope;
  r.guest_encrypted = src.guest_encrypted;
  r.created = NowSeconds();
  CMKFS_ASSIGN_OR_RETURN(r.uuid, NewObjectId());
  CMKFS_ASSIGN_OR_RETURN(auto src_key, keystore::KeyId::Parse(src.key_id));
  keystore::KeyId key = src_key;
  if (spec) {
    r.sku = spec->sku;
    r.guest_encrypted = src.guest_encrypted || spec->guest_encrypted;
    Scope scope = FillScope(spec->scope);
    if (src.encryption == EncryptionType::kCustomer &&
        (scope.subscription != src.scope.subscription ||
         scope.region != src.scope.region)) {
      return InvalidArgumentError("disk " + std::string(name) +
                                  " must be in the subscription and "
                                  "region of its customer-key source " +
                                  r.source + " (" + src.scope.subscription +
                                  ", " + src.scope.region + ")");
    }
    r.scope = scope;
    // Never-customer-keys travels with the data: a guest-encrypted source,
    // or a clone declared guest-encrypted, cannot use a customer key.
    if (r.guest_encrypted &&
        (src.encryption == EncryptionType::kCustomer || !spec->des.empty())) {
      return FailedPreconditionError(
          "disk " + std::string(name) +
          (src.guest_encrypted ? " is made from guest-encrypted " + r.source
                               : std::string(" is guest-encrypted")) +
          " and cannot use customer-managed keys");
    }
    if (spec->size != 0) {
      CMKFS_RETURN_IF_ERROR(CheckDiskSize("disk size", spec->size, src.size,
                                          options_.max_disk_size));
      r.size = spec->size;
    }
    if (!spec->des.empty() && spec->des != src.des) {
      if (src.encryption == EncryptionType::kPlatform) {
        return InvalidArgumentError(
            "source " + r.source +
            " uses a platform-managed key; create the disk without --des, "
            "then switch it with: cmkctl disk update " +
            std::string(name) + " --des " + spec->des);
      }
      CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(spec->des));
      CMKFS_ASSIGN_OR_RETURN(auto des_key, keystore::KeyId::Parse(d.key_id));
      if (!SameKey(des_key, src_key)) {
        return FailedPreconditionError(
            "source " + r.source + " is encrypted with customer key cmk://" +
            src_key.vault + "/keys/" + src_key.name +
            "; a disk made from it must use a disk encryption set with the "
            "same key (disk encryption set " +
            d.name + " uses cmk://" + des_key.vault + "/keys/" + des_key.name +
            ")");
      }
      if (d.scope.subscription != r.scope.subscription ||
          d.scope.region != r.scope.region) {
        return InvalidArgumentError("disk " + std::string(name) +
                                    " must be in the subscription and region "
                                    "of disk encryption set " +
                                    d.name);
      }
      CMKFS_RETURN_IF_ERROR(CheckDesAccess(d, des_key));
      r.des = d.name;
      r.identity = d.identity;
      key = des_key;
      r.key_id = d.key_id;
    }
  }
  // Key work before the write barrier: I/O on the source pauses only for
  // the metadata copy.
  CMKFS_ASSIGN_OR_RETURN(auto dek, UnwrapDek(src));
  CMKFS_ASSIGN_OR_RETURN(r.wrapped_dek, WrapDek(dek, r.identity, key, r.uuid));
  CMKFS_ASSIGN_OR_RETURN(r.rid, NextRid(*meta_, db_meta_));

  std::shared_ptr<OpenResource> open_src = FindOpen(src.rid);
  std::unique_lock<WriterPreferringRwLock> barrier;
  if (open_src) barrier = std::unique_lock(open_src->barrier);
  CMKFS_RETURN_IF_ERROR(Map().Clone(src.rid, r.rid, [&](MetaTxn& txn) {
    return txn.Put(db_res_, ResourceKey(r.kind, r.name), EncodeResource(r));
  }));
  if (barrier.owns_lock()) barrier.unlock();
  spdlog::info("engine: created {} from {} (key {})", Describe(kind, name),
               r.source, r.key_id);
  return r;
}

Result<ResourceInfo> EngineImpl::CreateSnapshot(std::string_view name,
                                                std::string_view source_disk) {
  std::string_view disk = source_disk;
  if (disk.starts_with("disks/")) disk.remove_prefix(6);
  return Changed([&]() -> Result<ResourceRecord> {
    MutexLock lock(&control_mu_);
    auto hold = locks_.Lock(ResourceKind::kDisk, disk);
    CMKFS_ASSIGN_OR_RETURN(auto src, LoadResource(ResourceKind::kDisk, disk));
    return CloneLocked(ResourceKind::kSnapshot, name, src, nullptr);
  }());
}

Result<ResourceInfo> EngineImpl::CreateImage(std::string_view name,
                                             std::string_view source) {
  return Changed([&]() -> Result<ResourceRecord> {
    MutexLock lock(&control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto src_ref, catalog_->ResolveSource(source, true));
    auto hold = locks_.Lock(src_ref.first, src_ref.second);
    CMKFS_ASSIGN_OR_RETURN(auto src,
                           LoadResource(src_ref.first, src_ref.second));
    return CloneLocked(ResourceKind::kImage, name, src, nullptr);
  }());
}

Result<ResourceInfo> EngineImpl::Get(ResourceKind kind, std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
  return ToInfo(r);
}

Result<std::vector<ResourceInfo>> EngineImpl::List(ResourceKind kind) {
  CMKFS_ASSIGN_OR_RETURN(auto recs, catalog_->ListResources(kind));
  std::vector<ResourceInfo> out;
  for (const auto& r : recs) {
    CMKFS_ASSIGN_OR_RETURN(auto info, ToInfo(r));
    out.push_back(std::move(info));
  }
  return out;
}

Status EngineImpl::DeleteLocked(const ResourceRecord& r) {
  size_t freed = 0;
  CMKFS_RETURN_IF_ERROR(Map().Drop(
      r.rid,
      [&](MetaTxn& txn) {
        return txn.Delete(db_res_, ResourceKey(r.kind, r.name));
      },
      &freed));
  // The record is gone and synced: erase its wrapped DEK, so no stale copy
  // of the record (LMDB's free pages, a later copy of the directory) opens.
  catalog_->ReleaseWrappedDek(r.wrapped_dek);
  spdlog::info("engine: deleted {} ({} extents freed)",
               Describe(r.kind, r.name), freed);
  return Status::Ok();
}

Status EngineImpl::Delete(ResourceKind kind, std::string_view name) {
  {
    MutexLock lock(&control_mu_);
    auto hold = locks_.Lock(kind, name);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
    if (auto open = FindOpen(r.rid)) {
      uint32_t handles;
      {
        MutexLock olock(&open_mu_);
        handles = open->handles;
      }
      return BusyError(Describe(kind, name) + " is open (" +
                       std::to_string(handles) +
                       " handle(s)); close it before deleting");
    }
    CMKFS_RETURN_IF_ERROR(DeleteLocked(r));
  }
  Notify(kind, name);
  return Status::Ok();
}

Result<ResourceInfo> EngineImpl::Move(std::string_view disk,
                                      std::string_view resource_group,
                                      std::optional<std::string> subscription) {
  return Changed([&]() -> Result<ResourceRecord> {
    MutexLock lock(&control_mu_);
    auto hold = locks_.Lock(ResourceKind::kDisk, disk);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(ResourceKind::kDisk, disk));
    CMKFS_RETURN_IF_ERROR(catalog_->Move(r, resource_group, subscription));
    return r;
  }());
}

Result<ResourceInfo> EngineImpl::SetDiskDes(std::string_view disk,
                                            std::string_view des) {
  return Changed([&]() -> Result<ResourceRecord> {
    MutexLock lock(&control_mu_);
    auto hold = locks_.Lock(ResourceKind::kDisk, disk);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(ResourceKind::kDisk, disk));
    CMKFS_RETURN_IF_ERROR(catalog_->SetDiskDes(
        r, des,
        [this](const ResourceRecord& rec) { return DekForRewrap(rec); }));
    return r;
  }());
}

// --- import, export
// -------------------------------------------------------------

Result<ResourceInfo> EngineImpl::ImportDisk(const DiskSpec& spec,
                                            const std::filesystem::path& file,
                                            const Progress& progress) {
  if (!spec.source.empty()) {
    return InvalidArgumentError(
        "a disk is made either from a source or from "
        "an imported file, not both");
  }
  DiskSpec s = spec;
  CMKFS_ASSIGN_OR_RETURN(auto in,
                         ImportSource::Open(file, options_.max_disk_size, &s));
  {
    MutexLock lock(&control_mu_);
    CMKFS_RETURN_IF_ERROR(CreateDiskLocked(s).status());
  }
  Status copied = [&]() -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto h, Open(ResourceKind::kDisk, s.name, true));
    return in->CopyTo(*h, progress);
  }();
  if (!copied.ok()) {
    Status del = Delete(ResourceKind::kDisk, s.name);
    if (!del.ok()) {
      spdlog::error("engine: removing half-imported disk {}: {}", s.name,
                    del.ToString());
    }
    return copied;
  }
  Notify(ResourceKind::kDisk, s.name);
  return Get(ResourceKind::kDisk, s.name);
}

Status EngineImpl::Export(ResourceKind kind, std::string_view name,
                          const std::filesystem::path& file,
                          const Progress& progress) {
  CMKFS_ASSIGN_OR_RETURN(auto h, Open(kind, name, false));
  return ExportTo(*h, file, progress);
}

// --- fsck, stats
// ------------------------------------------------------------------

Result<FsckReport> EngineImpl::Fsck() {
  CMKFS_RETURN_IF_ERROR(CommitPending());
  FsckPool pool;
  CMKFS_ASSIGN_OR_RETURN(pool.size, pool_->Size());
  pool.path = pool_path_.string();
  pool.slot_lost = [this](uint64_t slot) { return SlotLost(slot); };
  FsckKeys keys;
  keys.wrapped_dek_problem = [this](std::span<const uint8_t> wrapped) {
    return catalog_->WrappedDekProblem(wrapped);
  };
  const FsckTables tables{db_meta_, db_res_,  db_map_,
                          db_ref_,  db_free_, db_count_};
  std::optional<FsckReport> rep;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(rep, CheckMetadata(txn, tables, pool, keys));
    return Status::Ok();
  }));
  return std::move(*rep);
}

Result<PoolStats> EngineImpl::Stats() {
  PoolStats s;
  struct statvfs vfs {};
  if (::statvfs(options_.dir.c_str(), &vfs) == 0) {
    s.capacity_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    s.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  uint64_t committed = 0;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(committed, txn.Count(db_ref_));
    return Status::Ok();
  }));
  int64_t pending = Map().PendingTotal();
  // Pending counts are per mapping; close enough until the next commit.
  int64_t n = static_cast<int64_t>(committed) + pending;
  s.allocated_bytes =
      static_cast<uint64_t>(std::max<int64_t>(0, n)) * kExtentSize;
  return s;
}

Status EngineImpl::Flush() { return CommitPending(); }

// --- entry points
// -----------------------------------------------------------------

Result<std::unique_ptr<Engine>> OpenEngine(const EngineOptions& options,
                                           keystore::KeyStore* keystore) {
  return OpenEngine(options, keystore, EngineStores{});
}

Result<std::unique_ptr<Engine>> OpenEngine(const EngineOptions& options,
                                           keystore::KeyStore* keystore,
                                           EngineStores stores) {
  if (!keystore) return InvalidArgumentError("engine needs a keystore");
  if (!stores.io) stores.io = NewPosixIoLayer();
  if (!stores.open_meta) {
    // The engine orders its own syncs (pool first, then metadata): commits
    // need not be durable on their own.
    stores.open_meta = [](const std::filesystem::path& dir)
        -> Result<std::shared_ptr<MetaStore>> {
      LmdbMetaStoreOptions mo;
      mo.sync_on_commit = false;
      CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<MetaStore> store,
                             OpenLmdbMetaStore(dir, mo));
      return std::shared_ptr<MetaStore>(std::move(store));
    };
  }
  auto e = std::make_unique<EngineImpl>(options, keystore, std::move(stores));
  CMKFS_RETURN_IF_ERROR(e->Init());
  return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace cmkfs::fs
