// Control plane of the engine: state directory, disk encryption sets,
// resources, clones, key wrapping, sealing, fsck.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "cmkfs/path_guard.h"
#include "cmkfs/record.h"
#include "engine_impl.h"

namespace cmkfs::fs {

std::shared_ptr<DiskHandle> MakeDiskHandle(EngineImpl* engine,
                                           std::shared_ptr<OpenResource> res,
                                           bool writable);

namespace {

constexpr size_t kStripes = 1024;
constexpr char kPlatformKeyName[] = "platform";
constexpr char kLabelPrefix[] = "cmkfs-dek:";

std::string Describe(ResourceKind kind, std::string_view name) {
  return std::string(ResourceKindName(kind)) + " " + std::string(name);
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Result<std::string> NewObjectId() {
  CMKFS_ASSIGN_OR_RETURN(std::string h, crypto::RandomHex(16));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" +
         h.substr(16, 4) + "-" + h.substr(20);
}

// Every size a disk gets (create, clone, import, resize) passes here:
// a multiple of 4096 bytes from `min` to the configured largest disk.
Status CheckDiskSize(std::string_view what, uint64_t size, uint64_t min,
                     uint64_t max) {
  max = std::min(max, kMaxMaxDiskSize);
  if (size >= min && size <= max && size % kSectorBytes == 0) {
    return Status::Ok();
  }
  if (min > max) {  // growing a disk that is already the largest
    return InvalidArgumentError(std::string(what) + " " + std::to_string(size) +
                                " is not accepted: the largest disk is " +
                                std::to_string(max) + " bytes (" +
                                FormatSize(max) + ", [limits] max_disk_size)");
  }
  return InvalidArgumentError(
      std::string(what) + " " + std::to_string(size) +
      " is not accepted: use a multiple of 4096 bytes from " +
      std::to_string(min) + " (" + FormatSize(min) + ") to " +
      std::to_string(max) + " (" + FormatSize(max) +
      ", [limits] max_disk_size)");
}

int64_t NowSeconds() { return Now().time_since_epoch().count(); }
TimePoint FromSeconds(int64_t s) { return TimePoint(std::chrono::seconds(s)); }

bool SameKey(const keystore::KeyId& a, const keystore::KeyId& b) {
  return a.vault == b.vault && a.name == b.name;
}

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
  CMKFS_RETURN_IF_ERROR(EnsureSystemKey());

  // Resume re-wraps interrupted by a crash.
  std::vector<DesRecord> unfinished;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_des_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      CMKFS_ASSIGN_OR_RETURN(DesRecord d, DecodeDes(cur->value()));
      if (!d.rotation_target.empty()) unfinished.push_back(std::move(d));
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
  for (DesRecord& d : unfinished) {
    spdlog::info("engine: resuming re-wrap of disk encryption set {} to {}",
                 d.name, d.rotation_target);
    Status st = RewrapDesLocked(d);
    if (!st.ok()) {
      spdlog::error("engine: re-wrap of {}: {}", d.name, st.ToString());
    }
  }
  committer_ = std::thread([this] { CommitLoop(); });
  return Status::Ok();
}

Status EngineImpl::EnsureSystemKey() {
  auto vault = ks_->GetVault(options_.system_vault);
  if (!vault.ok()) {
    if (vault.status().kind() != ErrorKind::kNotFound) return vault.status();
    keystore::VaultSpec spec;
    spec.name = options_.system_vault;
    spec.purge_protection = true;
    auto created = ks_->CreateVault(spec);
    if (!created.ok() && created.status().kind() != ErrorKind::kAlreadyExists) {
      return created.status().WithContext("creating the system vault");
    }
  }
  auto key = ks_->GetKeyVersion(
      "", keystore::KeyId{options_.system_vault, kPlatformKeyName, ""});
  if (key.ok()) return Status::Ok();
  if (key.status().kind() != ErrorKind::kNotFound) {
    return key.status().WithContext("platform key");
  }
  auto created =
      ks_->CreateKey("", options_.system_vault, kPlatformKeyName,
                     keystore::KeyType::kRsa, options_.system_key_bits);
  if (!created.ok() && created.status().kind() != ErrorKind::kAlreadyExists) {
    return created.status().WithContext("creating the platform key");
  }
  return Status::Ok();
}

// --- records
// ------------------------------------------------------------------

Result<ResourceRecord> EngineImpl::LoadResource(ResourceKind kind,
                                                std::string_view name) {
  std::optional<ResourceRecord> out;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto v = txn.Get(db_res_, ResourceKey(kind, name));
    if (!v.ok()) {
      if (v.status().kind() == ErrorKind::kNotFound) {
        return NotFoundError(Describe(kind, name) + " not found");
      }
      return v.status();
    }
    CMKFS_ASSIGN_OR_RETURN(out, DecodeResource(*v));
    return Status::Ok();
  }));
  return std::move(*out);
}

Result<DesRecord> EngineImpl::LoadDes(std::string_view name) {
  std::optional<DesRecord> out;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto v = txn.Get(db_des_, name);
    if (!v.ok()) {
      if (v.status().kind() == ErrorKind::kNotFound) {
        return NotFoundError("disk encryption set " + std::string(name) +
                             " not found");
      }
      return v.status();
    }
    CMKFS_ASSIGN_OR_RETURN(out, DecodeDes(*v));
    return Status::Ok();
  }));
  return std::move(*out);
}

Status EngineImpl::PutResource(const ResourceRecord& r) {
  CMKFS_RETURN_IF_ERROR(meta_->Update([&](MetaTxn& txn) {
    return txn.Put(db_res_, ResourceKey(r.kind, r.name), EncodeResource(r));
  }));
  return meta_->Sync();
}

Status EngineImpl::PutDes(const DesRecord& d) {
  CMKFS_RETURN_IF_ERROR(meta_->Update(
      [&](MetaTxn& txn) { return txn.Put(db_des_, d.name, EncodeDes(d)); }));
  return meta_->Sync();
}

std::shared_ptr<OpenResource> EngineImpl::FindOpen(uint64_t rid) {
  std::lock_guard lock(open_mu_);
  auto it = open_.find(rid);
  return it == open_.end() ? nullptr : it->second;
}

Result<ResourceInfo> EngineImpl::ToInfo(const ResourceRecord& r) {
  ResourceInfo i;
  i.kind = r.kind;
  i.name = r.name;
  i.size = r.size;
  i.sku = r.sku;
  i.encryption = r.encryption;
  i.des = r.des;
  CMKFS_ASSIGN_OR_RETURN(i.key_id, keystore::KeyId::Parse(r.key_id));
  i.state = r.state;
  i.seal_reason = r.seal_reason;
  i.source = r.source;
  i.scope = r.scope;
  i.guest_encrypted = r.guest_encrypted;
  i.created = FromSeconds(r.created);
  uint64_t count = 0;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto v = txn.Get(db_count_, EncodeU64Key(r.rid));
    if (v.ok()) {
      CMKFS_ASSIGN_OR_RETURN(count, DecodeCount(*v, "extent count"));
    }
    return Status::Ok();
  }));
  int64_t n = static_cast<int64_t>(count) + PendingCount(r.rid);
  i.allocated_bytes =
      static_cast<uint64_t>(std::max<int64_t>(0, n)) * kExtentSize;
  {
    std::lock_guard lock(open_mu_);
    auto it = open_.find(r.rid);
    if (it != open_.end()) i.open_handles = it->second->handles;
  }
  return i;
}

DesInfo EngineImpl::ToDesInfo(const DesRecord& d) {
  DesInfo i;
  i.name = d.name;
  auto key = keystore::KeyId::Parse(d.key_id);
  if (key.ok()) i.key_id = *key;
  i.auto_rotate = d.auto_rotate;
  i.identity = d.identity;
  i.scope = d.scope;
  i.created = FromSeconds(d.created);
  if (d.last_rotation) i.last_rotation = FromSeconds(*d.last_rotation);
  i.rotation_error = d.rotation_error;
  if (!d.previous_key_id.empty()) {
    auto prev = keystore::KeyId::Parse(d.previous_key_id);
    if (prev.ok()) i.previous_key_id = *prev;
  }
  return i;
}

Scope EngineImpl::FillScope(Scope s) const {
  if (s.subscription.empty()) s.subscription = options_.defaults.subscription;
  if (s.resource_group.empty()) {
    s.resource_group = options_.defaults.resource_group;
  }
  if (s.region.empty()) s.region = options_.defaults.region;
  return s;
}

void EngineImpl::SetChangeListener(
    std::function<void(ResourceKind, std::string_view)> listener) {
  std::lock_guard lock(listener_mu_);
  listener_ = std::move(listener);
}

void EngineImpl::Notify(ResourceKind kind, std::string_view name) {
  std::function<void(ResourceKind, std::string_view)> l;
  {
    std::lock_guard lock(listener_mu_);
    l = listener_;
  }
  if (l) l(kind, name);
}

// --- keys
// -----------------------------------------------------------------------

Result<keystore::KeyId> EngineImpl::ResolveKeyVersion(
    const keystore::KeyId& id) {
  auto v = ks_->GetKeyVersion("", id);
  if (!v.ok()) return v.status().WithContext("key " + id.ToString());
  return v->id;
}

Status EngineImpl::CheckDesAccess(const DesRecord& d,
                                  const keystore::KeyId& key) {
  CMKFS_ASSIGN_OR_RETURN(auto vault, ks_->GetVault(key.vault));
  keystore::PermissionSet have = 0;
  for (const auto& p : vault.policies) {
    if (p.object_id == d.identity) have = p.permissions;
  }
  std::string missing;
  for (auto [perm, name] :
       {std::pair{keystore::Permission::kGet, "get"},
        std::pair{keystore::Permission::kWrapKey, "wrapKey"},
        std::pair{keystore::Permission::kUnwrapKey, "unwrapKey"}}) {
    if (!(have & static_cast<uint32_t>(perm))) {
      missing += missing.empty() ? name : std::string(" ") + name;
    }
  }
  if (missing.empty()) return Status::Ok();
  return PermissionDeniedError("disk encryption set " + d.name +
                               ": its identity " + d.identity + " lacks " +
                               missing + " on vault " + key.vault +
                               "; grant them with: cmkctl vault set-policy " +
                               key.vault + " --object-id " + d.identity +
                               " --key-permissions get wrapKey unwrapKey");
}

Result<std::vector<uint8_t>> EngineImpl::WrapDek(const crypto::SecretBytes& dek,
                                                 const std::string& identity,
                                                 const keystore::KeyId& key,
                                                 const std::string& uuid) {
  std::string label = kLabelPrefix + uuid;
  auto blob = ks_->WrapKey(identity, key, dek.span(), AsBytes(label));
  if (!blob.ok()) {
    return blob.status().WithContext("wrapping the disk key with " +
                                     key.ToString());
  }
  return std::move(*blob);
}

Result<crypto::SecretBytes> EngineImpl::UnwrapDek(const ResourceRecord& r) {
  CMKFS_ASSIGN_OR_RETURN(auto key, keystore::KeyId::Parse(r.key_id));
  std::string label = kLabelPrefix + r.uuid;
  auto dek = ks_->UnwrapKey(r.identity, key, r.wrapped_dek, AsBytes(label));
  if (!dek.ok()) {
    return dek.status().WithContext("cannot unwrap the key of " +
                                    Describe(r.kind, r.name) + " with " +
                                    r.key_id);
  }
  if (dek->size() != crypto::kXtsKeySize) {
    return CorruptionError("unwrapped key of " + Describe(r.kind, r.name) +
                           " has the wrong length");
  }
  return std::move(*dek);
}

Result<crypto::SecretBytes> EngineImpl::DekForRewrap(const ResourceRecord& r) {
  if (r.state == ResourceState::kActive) {
    if (auto open = FindOpen(r.rid)) {
      std::shared_lock barrier(open->barrier);
      if (open->cipher && !open->dek.empty()) return open->dek.Clone();
    }
  }
  return UnwrapDek(r);
}

Result<crypto::SecretBytes> EngineImpl::NewDek() {
  for (;;) {
    CMKFS_ASSIGN_OR_RETURN(auto dek, crypto::RandomSecret(crypto::kXtsKeySize));
    std::span<const uint8_t> s = dek.span();
    if (!crypto::ConstantTimeEquals(s.first(32), s.last(32))) return dek;
  }
}

// --- disk encryption sets
// -----------------------------------------------------

Result<DesInfo> EngineImpl::CreateDes(const DesSpec& spec) {
  CMKFS_RETURN_IF_ERROR(ValidateName("disk encryption set", spec.name));
  std::lock_guard lock(control_mu_);
  auto existing = LoadDes(spec.name);
  if (existing.ok()) {
    return AlreadyExistsError("disk encryption set " + spec.name +
                              " already exists");
  }
  auto vault = ks_->GetVault(spec.key_id.vault);
  if (!vault.ok()) return vault.status();
  if (!vault->spec.purge_protection) {
    return FailedPreconditionError(
        "vault " + spec.key_id.vault +
        " has no purge protection; create it with --purge-protection");
  }
  Scope scope = FillScope(spec.scope);
  if (vault->spec.subscription != scope.subscription ||
      vault->spec.region != scope.region) {
    return InvalidArgumentError(
        "disk encryption set " + spec.name + " (subscription " +
        scope.subscription + ", region " + scope.region +
        ") must be in the subscription and region of vault " +
        spec.key_id.vault + " (" + vault->spec.subscription + ", " +
        vault->spec.region + ")");
  }
  uint32_t in_region = 0;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_des_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      CMKFS_ASSIGN_OR_RETURN(DesRecord d, DecodeDes(cur->value()));
      if (d.scope.subscription == scope.subscription &&
          d.scope.region == scope.region) {
        ++in_region;
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
  if (in_region >= options_.des_quota_per_region) {
    return FailedPreconditionError(
        "quota reached: subscription " + scope.subscription + " already has " +
        std::to_string(in_region) + " disk encryption sets in region " +
        scope.region + " (limit " +
        std::to_string(options_.des_quota_per_region) +
        ", [limits] disk_encryption_sets_per_region)");
  }
  CMKFS_ASSIGN_OR_RETURN(auto key, ResolveKeyVersion(spec.key_id));
  DesRecord d;
  d.name = spec.name;
  d.key_id = key.ToString();
  d.auto_rotate = spec.auto_rotate;
  CMKFS_ASSIGN_OR_RETURN(d.identity, NewObjectId());
  d.scope = scope;
  d.created = NowSeconds();
  CMKFS_RETURN_IF_ERROR(PutDes(d));
  spdlog::info("engine: created disk encryption set {} with {} identity {}",
               d.name, d.key_id, d.identity);
  return ToDesInfo(d);
}

Status EngineImpl::RewrapDesLocked(DesRecord& d) {
  CMKFS_ASSIGN_OR_RETURN(auto target,
                         keystore::KeyId::Parse(d.rotation_target));
  std::vector<ResourceRecord> todo;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_res_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      CMKFS_ASSIGN_OR_RETURN(ResourceRecord r, DecodeResource(cur->value()));
      if (r.des == d.name && r.key_id != d.rotation_target) {
        todo.push_back(std::move(r));
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
  Status first_error;
  for (ResourceRecord& r : todo) {
    // One resource per transaction: a crash leaves each resource wrapped
    // by a version its record names.
    Status st = [&]() -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto dek, DekForRewrap(r));
      CMKFS_ASSIGN_OR_RETURN(r.wrapped_dek,
                             WrapDek(dek, d.identity, target, r.uuid));
      r.key_id = d.rotation_target;
      r.identity = d.identity;
      return PutResource(r);
    }();
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  if (!first_error.ok()) {
    d.rotation_error = first_error.message();
    PutDes(d).IgnoreError();
    return first_error;
  }
  d.key_id = d.rotation_target;
  d.rotation_target.clear();
  d.previous_key_id.clear();
  d.rotation_error.clear();
  d.last_rotation = NowSeconds();
  return PutDes(d);
}

Result<DesInfo> EngineImpl::UpdateDes(std::string_view name,
                                      std::optional<keystore::KeyId> key_id,
                                      std::optional<bool> auto_rotate) {
  std::unique_lock lock(control_mu_);
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  if (auto_rotate) d.auto_rotate = *auto_rotate;
  if (key_id) {
    auto vault = ks_->GetVault(key_id->vault);
    if (!vault.ok()) return vault.status();
    if (!vault->spec.purge_protection) {
      return FailedPreconditionError(
          "vault " + key_id->vault +
          " has no purge protection; create it with --purge-protection");
    }
    if (vault->spec.subscription != d.scope.subscription ||
        vault->spec.region != d.scope.region) {
      return InvalidArgumentError(
          "vault " + key_id->vault +
          " is not in the subscription and region of disk encryption set " +
          d.name);
    }
    CMKFS_ASSIGN_OR_RETURN(auto target, ResolveKeyVersion(*key_id));
    if (target.ToString() != d.key_id || !d.rotation_target.empty()) {
      CMKFS_RETURN_IF_ERROR(CheckDesAccess(d, target));
      // Marker first: Open resumes an interrupted re-wrap. A retry keeps
      // the version the unfinished rotation started from.
      if (d.rotation_target.empty()) d.previous_key_id = d.key_id;
      d.rotation_target = target.ToString();
      d.key_id = target.ToString();
      CMKFS_RETURN_IF_ERROR(PutDes(d));
      Status st = RewrapDesLocked(d);
      if (!st.ok()) return st;
    }
  }
  CMKFS_RETURN_IF_ERROR(PutDes(d));
  return ToDesInfo(d);
}

Status EngineImpl::SetDesRotationError(std::string_view name,
                                       std::string_view error) {
  std::lock_guard lock(control_mu_);
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  if (d.rotation_error == error) return Status::Ok();
  d.rotation_error = std::string(error);
  return PutDes(d);
}

Result<DesInfo> EngineImpl::GetDes(std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  return ToDesInfo(d);
}

Result<std::vector<DesInfo>> EngineImpl::ListDes() {
  std::vector<DesInfo> out;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_des_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      CMKFS_ASSIGN_OR_RETURN(DesRecord d, DecodeDes(cur->value()));
      out.push_back(ToDesInfo(d));
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
  return out;
}

Status EngineImpl::DeleteDes(std::string_view name) {
  std::lock_guard lock(control_mu_);
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  std::vector<std::string> users;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_res_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      CMKFS_ASSIGN_OR_RETURN(ResourceRecord r, DecodeResource(cur->value()));
      if (r.des == d.name) {
        users.push_back(std::string(ResourceDirName(r.kind)) + "/" + r.name);
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
  if (!users.empty()) {
    std::string list;
    for (size_t i = 0; i < users.size() && i < 5; ++i) {
      list += (i ? ", " : "") + users[i];
    }
    if (users.size() > 5) list += ", ...";
    return FailedPreconditionError(
        "disk encryption set " + d.name + " is used by " +
        std::to_string(users.size()) + " resource(s) (" + list +
        "); delete them or switch their keys first");
  }
  CMKFS_RETURN_IF_ERROR(
      meta_->Update([&](MetaTxn& txn) { return txn.Delete(db_des_, name); }));
  return meta_->Sync();
}

// --- resources
// --------------------------------------------------------------------

Result<std::pair<ResourceKind, std::string>> EngineImpl::ResolveSource(
    std::string_view source, bool for_image) {
  std::vector<ResourceKind> allowed =
      for_image ? std::vector{ResourceKind::kDisk, ResourceKind::kSnapshot}
                : std::vector{ResourceKind::kSnapshot, ResourceKind::kImage};
  auto accepted = [&] {
    return for_image ? std::string("disks/NAME or snapshots/NAME")
                     : std::string("snapshots/NAME or images/NAME");
  };
  for (ResourceKind k :
       {ResourceKind::kDisk, ResourceKind::kSnapshot, ResourceKind::kImage}) {
    std::string prefix = std::string(ResourceDirName(k)) + "/";
    if (source.starts_with(prefix)) {
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        return InvalidArgumentError("source '" + std::string(source) +
                                    "' is not accepted here; use " +
                                    accepted());
      }
      return std::pair{k, std::string(source.substr(prefix.size()))};
    }
  }
  std::vector<ResourceKind> found;
  for (ResourceKind k : allowed) {
    if (LoadResource(k, source).ok()) found.push_back(k);
  }
  if (found.empty()) {
    return NotFoundError("source '" + std::string(source) +
                         "' not found; use " + accepted());
  }
  if (found.size() > 1) {
    return InvalidArgumentError("source '" + std::string(source) +
                                "' is ambiguous; use " + accepted());
  }
  return std::pair{found[0], std::string(source)};
}

Result<ResourceInfo> EngineImpl::CreateDisk(const DiskSpec& spec) {
  Result<ResourceRecord> r = [&]() -> Result<ResourceRecord> {
    std::lock_guard lock(control_mu_);
    return CreateDiskLocked(spec);
  }();
  if (!r.ok()) return r.status();
  Notify(ResourceKind::kDisk, r->name);
  return ToInfo(*r);
}

namespace {
Result<uint64_t> NextRid(MetaStore& meta_store, MetaTable meta) {
  uint64_t rid = 1;
  CMKFS_RETURN_IF_ERROR(meta_store.Update([&](MetaTxn& txn) -> Status {
    rid = 1;
    auto v = txn.Get(meta, "next_rid");
    if (v.ok()) {
      CMKFS_ASSIGN_OR_RETURN(rid, DecodeCount(*v, "next resource id"));
    }
    return txn.Put(meta, "next_rid", EncodeCount(rid + 1));
  }));
  return rid;
}
}  // namespace

Result<ResourceRecord> EngineImpl::CreateDiskLocked(const DiskSpec& spec) {
  CMKFS_RETURN_IF_ERROR(ValidateName("disk", spec.name));
  if (LoadResource(ResourceKind::kDisk, spec.name).ok()) {
    return AlreadyExistsError("disk " + spec.name + " already exists");
  }
  if (!spec.source.empty()) {
    CMKFS_ASSIGN_OR_RETURN(auto src_ref, ResolveSource(spec.source, false));
    CMKFS_ASSIGN_OR_RETURN(auto src,
                           LoadResource(src_ref.first, src_ref.second));
    return CloneLocked(ResourceKind::kDisk, spec.name, src, &spec);
  }
  CMKFS_RETURN_IF_ERROR(CheckDiskSize("disk size", spec.size, kSectorBytes,
                                      options_.max_disk_size));
  ResourceRecord r;
  r.kind = ResourceKind::kDisk;
  r.name = spec.name;
  r.size = spec.size;
  r.sku = spec.sku;
  r.scope = FillScope(spec.scope);
  r.guest_encrypted = spec.guest_encrypted;
  r.created = NowSeconds();
  CMKFS_ASSIGN_OR_RETURN(r.uuid, NewObjectId());
  r.lineage = r.uuid;
  keystore::KeyId key;
  if (!spec.des.empty()) {
    if (spec.guest_encrypted) {
      return FailedPreconditionError(
          "disk " + spec.name +
          " is guest-encrypted and cannot use customer-managed keys");
    }
    CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(spec.des));
    if (d.scope.subscription != r.scope.subscription ||
        d.scope.region != r.scope.region) {
      return InvalidArgumentError(
          "disk " + spec.name + " (subscription " + r.scope.subscription +
          ", region " + r.scope.region +
          ") must be in the subscription and region of disk encryption set " +
          d.name + " (" + d.scope.subscription + ", " + d.scope.region + ")");
    }
    CMKFS_ASSIGN_OR_RETURN(key, keystore::KeyId::Parse(d.key_id));
    CMKFS_RETURN_IF_ERROR(CheckDesAccess(d, key));
    r.encryption = EncryptionType::kCustomer;
    r.des = d.name;
    r.identity = d.identity;
  } else {
    CMKFS_ASSIGN_OR_RETURN(
        key, ResolveKeyVersion({options_.system_vault, kPlatformKeyName, ""}));
  }
  r.key_id = key.ToString();
  CMKFS_ASSIGN_OR_RETURN(auto dek, NewDek());
  CMKFS_ASSIGN_OR_RETURN(r.wrapped_dek, WrapDek(dek, r.identity, key, r.uuid));
  CMKFS_ASSIGN_OR_RETURN(r.rid, NextRid(*meta_, db_meta_));
  CMKFS_RETURN_IF_ERROR(PutResource(r));
  spdlog::info("engine: created disk {} ({} bytes, {}, key {})", r.name, r.size,
               DiskSkuName(r.sku), r.key_id);
  return r;
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
  Result<ResourceRecord> r = [&]() -> Result<ResourceRecord> {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto src, LoadResource(ResourceKind::kDisk, disk));
    return CloneLocked(ResourceKind::kSnapshot, name, src, nullptr);
  }();
  if (!r.ok()) return r.status();
  Notify(ResourceKind::kSnapshot, r->name);
  return ToInfo(*r);
}

Result<ResourceInfo> EngineImpl::CreateImage(std::string_view name,
                                             std::string_view source) {
  Result<ResourceRecord> r = [&]() -> Result<ResourceRecord> {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto src_ref, ResolveSource(source, true));
    CMKFS_ASSIGN_OR_RETURN(auto src,
                           LoadResource(src_ref.first, src_ref.second));
    return CloneLocked(ResourceKind::kImage, name, src, nullptr);
  }();
  if (!r.ok()) return r.status();
  Notify(ResourceKind::kImage, r->name);
  return ToInfo(*r);
}

Result<ResourceInfo> EngineImpl::Get(ResourceKind kind, std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
  return ToInfo(r);
}

Result<std::vector<ResourceInfo>> EngineImpl::List(ResourceKind kind) {
  std::vector<ResourceRecord> recs;
  std::string prefix = ResourceKey(kind, "");
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_res_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(prefix));
    while (ok && cur->key().starts_with(prefix)) {
      CMKFS_ASSIGN_OR_RETURN(ResourceRecord r, DecodeResource(cur->value()));
      recs.push_back(std::move(r));
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
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
  spdlog::info("engine: deleted {} ({} extents freed)",
               Describe(r.kind, r.name), freed);
  return Status::Ok();
}

Status EngineImpl::Delete(ResourceKind kind, std::string_view name) {
  {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
    if (auto open = FindOpen(r.rid)) {
      uint32_t handles;
      {
        std::lock_guard olock(open_mu_);
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

Result<ResourceInfo> EngineImpl::Resize(std::string_view disk,
                                        uint64_t new_size) {
  Result<ResourceRecord> r = [&]() -> Result<ResourceRecord> {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(ResourceKind::kDisk, disk));
    // Disks only grow.
    CMKFS_RETURN_IF_ERROR(
        CheckDiskSize("new size of disk " + r.name, new_size,
                      std::min(r.size, kMaxMaxDiskSize) + kSectorBytes,
                      options_.max_disk_size));
    r.size = new_size;
    auto open = FindOpen(r.rid);
    std::unique_lock<WriterPreferringRwLock> barrier;
    if (open) barrier = std::unique_lock(open->barrier);
    CMKFS_RETURN_IF_ERROR(PutResource(r));
    if (open) open->size.store(new_size);
    return r;
  }();
  if (!r.ok()) return r.status();
  Notify(ResourceKind::kDisk, r->name);
  return ToInfo(*r);
}

Result<ResourceInfo> EngineImpl::Move(std::string_view disk,
                                      std::string_view resource_group,
                                      std::optional<std::string> subscription) {
  Result<ResourceRecord> r = [&]() -> Result<ResourceRecord> {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(ResourceKind::kDisk, disk));
    if (r.encryption == EncryptionType::kCustomer) {
      return FailedPreconditionError(
          "disk " + r.name +
          " uses a customer-managed key (disk encryption "
          "set " +
          r.des +
          "); customer-key resources cannot move to another "
          "resource group or subscription");
    }
    if (resource_group.empty()) {
      return InvalidArgumentError("move of disk " + r.name +
                                  " needs a resource group");
    }
    r.scope.resource_group = std::string(resource_group);
    if (subscription) r.scope.subscription = *subscription;
    CMKFS_RETURN_IF_ERROR(PutResource(r));
    return r;
  }();
  if (!r.ok()) return r.status();
  Notify(ResourceKind::kDisk, r->name);
  return ToInfo(*r);
}

Result<ResourceInfo> EngineImpl::SetDiskDes(std::string_view disk,
                                            std::string_view des) {
  Result<ResourceRecord> r = [&]() -> Result<ResourceRecord> {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(ResourceKind::kDisk, disk));
    CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(des));
    if (r.guest_encrypted) {
      return FailedPreconditionError(
          "disk " + r.name +
          " was guest-encrypted and cannot switch to customer-managed keys");
    }
    if (d.scope.subscription != r.scope.subscription ||
        d.scope.region != r.scope.region) {
      return InvalidArgumentError(
          "disk " + r.name + " (subscription " + r.scope.subscription +
          ", region " + r.scope.region +
          ") must be in the subscription and region of disk encryption set " +
          d.name + " (" + d.scope.subscription + ", " + d.scope.region + ")");
    }
    if (r.des == d.name && r.key_id == d.key_id) return r;
    CMKFS_ASSIGN_OR_RETURN(auto key, keystore::KeyId::Parse(d.key_id));
    CMKFS_RETURN_IF_ERROR(CheckDesAccess(d, key));
    CMKFS_ASSIGN_OR_RETURN(auto dek, DekForRewrap(r));
    CMKFS_ASSIGN_OR_RETURN(r.wrapped_dek,
                           WrapDek(dek, d.identity, key, r.uuid));
    r.encryption = EncryptionType::kCustomer;
    r.des = d.name;
    r.identity = d.identity;
    r.key_id = d.key_id;
    CMKFS_RETURN_IF_ERROR(PutResource(r));
    spdlog::info("engine: disk {} now uses disk encryption set {} ({})", r.name,
                 d.name, r.key_id);
    return r;
  }();
  if (!r.ok()) return r.status();
  Notify(ResourceKind::kDisk, r->name);
  return ToInfo(*r);
}

// --- open, seal
// -----------------------------------------------------------------

Result<std::shared_ptr<DiskHandle>> EngineImpl::Open(ResourceKind kind,
                                                     std::string_view name,
                                                     bool writable) {
  std::lock_guard lock(control_mu_);
  CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
  if (writable && kind != ResourceKind::kDisk) {
    return ReadOnlyError(Describe(kind, name) +
                         " is read-only; open it without write access");
  }
  if (r.state == ResourceState::kSealed) {
    return KeyUnavailableError(Describe(kind, name) +
                               " is sealed: " + r.seal_reason);
  }
  if (r.size > kMaxMaxDiskSize) {  // recorded before sizes were bounded
    return CorruptionError(Describe(kind, name) + " has size " +
                           std::to_string(r.size) +
                           ", larger than any disk can be (" +
                           FormatSize(kMaxMaxDiskSize) + "); delete it");
  }
  if (auto open = FindOpen(r.rid)) {
    {
      std::shared_lock barrier(open->barrier);
      if (!open->cipher) {
        return KeyUnavailableError(Describe(kind, name) +
                                   " is sealed: " + open->seal_reason);
      }
    }
    std::lock_guard olock(open_mu_);
    ++open->handles;
    return MakeDiskHandle(this, open, writable);
  }
  CMKFS_ASSIGN_OR_RETURN(auto dek, UnwrapDek(r));
  auto res = std::make_shared<OpenResource>();
  res->rid = r.rid;
  res->kind = kind;
  res->name = r.name;
  res->sku = r.sku;
  res->size.store(r.size);
  CMKFS_ASSIGN_OR_RETURN(res->cipher, crypto::XtsCipher::Create(dek));
  res->dek = std::move(dek);
  {
    std::lock_guard olock(open_mu_);
    res->handles = 1;
    open_[r.rid] = res;
  }
  return MakeDiskHandle(this, res, writable);
}

Result<std::vector<KeyUse>> EngineImpl::KeyUses() {
  std::vector<KeyUse> out;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_res_));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      CMKFS_ASSIGN_OR_RETURN(ResourceRecord r, DecodeResource(cur->value()));
      KeyUse u;
      u.kind = r.kind;
      u.name = r.name;
      u.des = r.des;
      u.identity = r.identity;
      CMKFS_ASSIGN_OR_RETURN(u.key_id, keystore::KeyId::Parse(r.key_id));
      u.sku = r.sku;
      u.state = r.state;
      out.push_back(std::move(u));
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  }));
  return out;
}

Status EngineImpl::Seal(ResourceKind kind, std::string_view name,
                        std::string_view reason) {
  {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
    // Handles first: once the record says sealed (Get, KeyUses), no I/O may
    // still succeed; if the record cannot be written, the handles stay cut.
    // UltraSSD_LRS keeps its DEK while open; it cannot be reopened.
    if (auto open = FindOpen(r.rid); open && r.sku != DiskSku::kUltraSsdLrs) {
      std::unique_lock barrier(open->barrier);
      open->cipher.reset();
      open->dek.Wipe();
      open->seal_reason = std::string(reason);
    }
    r.state = ResourceState::kSealed;
    r.seal_reason = std::string(reason);
    Status st = PutResource(r);
    if (!st.ok()) {
      return st.WithContext("I/O of " + Describe(kind, name) +
                            " is cut off, but its sealed state was not saved");
    }
    // The caller (the key watcher) logs the seal with its reason.
    spdlog::debug("engine: sealed {}: {}", Describe(kind, name), reason);
  }
  Notify(kind, name);
  return Status::Ok();
}

Status EngineImpl::Unseal(ResourceKind kind, std::string_view name) {
  {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(kind, name));
    CMKFS_ASSIGN_OR_RETURN(auto dek, UnwrapDek(r));
    if (auto open = FindOpen(r.rid)) {
      std::unique_lock barrier(open->barrier);
      if (!open->cipher) {
        CMKFS_ASSIGN_OR_RETURN(open->cipher, crypto::XtsCipher::Create(dek));
        open->dek = std::move(dek);
      }
      open->seal_reason.clear();
    }
    r.state = ResourceState::kActive;
    r.seal_reason.clear();
    CMKFS_RETURN_IF_ERROR(PutResource(r));
    spdlog::debug("engine: unsealed {}", Describe(kind, name));
  }
  Notify(kind, name);
  return Status::Ok();
}

Status EngineImpl::Flush() { return CommitPending(); }

// --- fsck, stats
// ------------------------------------------------------------------

Result<FsckReport> EngineImpl::Fsck() {
  CMKFS_RETURN_IF_ERROR(CommitPending());
  FsckReport rep;
  CMKFS_ASSIGN_OR_RETURN(uint64_t pool_size, pool_->Size());
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto problem = [&](std::string s) {
      if (rep.problems.size() < 1000) rep.problems.push_back(std::move(s));
    };
    uint64_t hwm = 0;
    if (auto a = txn.Get(db_meta_, "alloc"); a.ok()) {
      CMKFS_ASSIGN_OR_RETURN(hwm, DecodeCount(*a, "allocation record"));
    }
    struct Res {
      std::string label;
      uint64_t extents;
      uint64_t mapped = 0;
    };
    std::unordered_map<uint64_t, Res> res;
    {
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_res_));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
      while (ok) {
        auto r = DecodeResource(cur->value());
        if (!r.ok()) {
          problem("unreadable resource record: " + r.status().message());
        } else {
          res[r->rid] = {std::string(ResourceDirName(r->kind)) + "/" + r->name,
                         ExtentCount(r->size)};
          ++rep.resources_checked;
        }
        CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
      }
    }
    // One counter per slot below the high-water mark: 4 bytes per 64 KiB.
    std::vector<uint32_t> refs(hwm, 0);
    {
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_map_));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
      while (ok) {
        ++rep.extents_checked;
        std::string_view key = cur->key();
        auto slot = DecodeSlot(cur->value());
        if (key.size() != 16 || !slot.ok()) {
          problem("malformed extent map entry");
        } else {
          uint64_t rid = *DecodeU64Key(key.substr(0, 8));
          uint64_t idx = *DecodeU64Key(key.substr(8));
          std::string where = "extent " + std::to_string(idx);
          auto it = res.find(rid);
          if (it == res.end()) {
            problem("dangling extent map entry: resource id " +
                    std::to_string(rid) + " " + where + " -> slot " +
                    std::to_string(*slot) + " belongs to no resource");
          } else {
            where = it->second.label + " " + where;
            ++it->second.mapped;
            if (idx >= it->second.extents) {
              problem(where + " lies beyond the end of the resource");
            }
          }
          if (*slot >= hwm) {
            problem(where + " maps slot " + std::to_string(*slot) +
                    " beyond the allocation high-water mark " +
                    std::to_string(hwm));
          } else {
            ++refs[*slot];
            if ((*slot + 1) * kExtentSize > pool_size) {
              problem(where + " maps slot " + std::to_string(*slot) +
                      " beyond the end of the extent pool file " +
                      pool_path_.string() + " (" + std::to_string(pool_size) +
                      " bytes): its data is missing");
            } else if (SlotLost(*slot)) {
              problem(where + " maps slot " + std::to_string(*slot) +
                      " whose data was missing from the extent pool file " +
                      pool_path_.string() + " when it was opened");
            }
          }
        }
        CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
      }
    }
    std::vector<uint8_t> seen(hwm, 0);  // 1: refcount entry, 2: free entry
    {
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_ref_));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
      while (ok) {
        auto slot = DecodeU64Key(cur->key());
        auto count = DecodeCount(cur->value(), "refcount");
        if (!slot.ok() || !count.ok()) {
          problem("malformed refcount entry");
        } else if (*slot >= hwm) {
          problem("refcount entry for slot " + std::to_string(*slot) +
                  " beyond the allocation high-water mark");
        } else {
          seen[*slot] |= 1;
          uint32_t c = refs[*slot];
          if (c == 0) {
            problem("leaked slot " + std::to_string(*slot) + ": refcount " +
                    std::to_string(*count) +
                    " but no extent map references it");
          } else if (c != *count) {
            problem("refcount mismatch on slot " + std::to_string(*slot) +
                    ": recorded " + std::to_string(*count) + ", referenced " +
                    std::to_string(c) + " times");
          }
        }
        CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
      }
    }
    {
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(db_free_));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
      while (ok) {
        auto slot = DecodeU64Key(cur->key());
        if (!slot.ok()) {
          problem("malformed free-list entry");
        } else if (*slot >= hwm) {
          problem("free-list entry for slot " + std::to_string(*slot) +
                  " beyond the allocation high-water mark");
        } else {
          seen[*slot] |= 2;
          if (seen[*slot] & 1) {
            problem("slot " + std::to_string(*slot) +
                    " is both allocated and on the free list");
          }
        }
        CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
      }
    }
    for (uint64_t s = 0; s < hwm; ++s) {
      if (refs[s] > 0 && !(seen[s] & 1)) {
        problem("slot " + std::to_string(s) + " is referenced " +
                std::to_string(refs[s]) + " times but has no refcount");
      }
      if (refs[s] > 0 && (seen[s] & 2)) {
        problem("slot " + std::to_string(s) +
                " is referenced but on the free list");
      }
      if (refs[s] == 0 && seen[s] == 0) {
        problem("leaked slot " + std::to_string(s) +
                ": neither referenced nor on the free list");
      }
    }
    for (const auto& [rid, r] : res) {
      uint64_t recorded = 0;
      if (auto v = txn.Get(db_count_, EncodeU64Key(rid)); v.ok()) {
        CMKFS_ASSIGN_OR_RETURN(recorded, DecodeCount(*v, "extent count"));
      }
      if (recorded != r.mapped) {
        problem(r.label + ": extent count records " + std::to_string(recorded) +
                " but the map holds " + std::to_string(r.mapped));
      }
    }
    return Status::Ok();
  }));
  return rep;
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

// --- import, export
// -------------------------------------------------------------

namespace {
bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}
bool Cancelled(const Progress& p) {
  return p.cancel && p.cancel->load(std::memory_order_relaxed);
}
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

Result<ResourceInfo> EngineImpl::ImportDisk(const DiskSpec& spec,
                                            const std::filesystem::path& file,
                                            const Progress& progress) {
  if (!spec.source.empty()) {
    return InvalidArgumentError(
        "a disk is made either from a source or from "
        "an imported file, not both");
  }
  Fd in;
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
  // below); it changes nothing for a regular file.
  in.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (in.fd < 0) {
    if (errno == ENOENT)
      return NotFoundError("file " + file.string() + " not found");
    return ErrnoError("open " + file.string(), errno);
  }
  struct stat st {};
  if (::fstat(in.fd, &st) != 0)
    return ErrnoError("stat " + file.string(), errno);
  if (!S_ISREG(st.st_mode)) {
    const char* what = S_ISFIFO(st.st_mode)   ? "a FIFO"
                       : S_ISDIR(st.st_mode)  ? "a directory"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    return InvalidArgumentError("cannot import " + file.string() + ": it is " +
                                what +
                                "; only a regular file (a raw disk image) "
                                "can be imported");
  }
  uint64_t fsize = static_cast<uint64_t>(st.st_size);
  DiskSpec s = spec;
  if (fsize > options_.max_disk_size) {
    return InvalidArgumentError(
        "file " + file.string() + " (" + std::to_string(fsize) +
        " bytes) is larger than the largest disk, " +
        std::to_string(options_.max_disk_size) + " bytes (" +
        FormatSize(options_.max_disk_size) + ", [limits] max_disk_size)");
  }
  if (s.size == 0)
    s.size = (fsize + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  if (s.size < fsize) {
    return InvalidArgumentError("disk size " + std::to_string(s.size) +
                                " is smaller than the file " + file.string() +
                                " (" + std::to_string(fsize) + " bytes)");
  }
  if (s.size == 0) s.size = kSectorBytes;
  {
    std::lock_guard lock(control_mu_);
    CMKFS_ASSIGN_OR_RETURN(auto rec, CreateDiskLocked(s));
    (void)rec;
  }
  Status st_copy = [&]() -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto h, Open(ResourceKind::kDisk, s.name, true));
    crypto::SecretBytes buf(1 << 20);  // plaintext: locked, wiped
    uint64_t off = 0;
    while (off < fsize) {
      if (Cancelled(progress)) {
        return CancelledError("import of " + file.string() + " cancelled");
      }
      off_t data = ::lseek(in.fd, static_cast<off_t>(off), SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) break;
        return ErrnoError("seek " + file.string(), errno);
      }
      off_t hole = ::lseek(in.fd, data, SEEK_HOLE);
      if (hole < 0) return ErrnoError("seek " + file.string(), errno);
      uint64_t start = static_cast<uint64_t>(data) / kExtentSize * kExtentSize;
      uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), fsize);
      for (uint64_t pos = start; pos < end;) {
        if (Cancelled(progress)) {
          return CancelledError("import of " + file.string() + " cancelled");
        }
        uint64_t want = std::min<uint64_t>(buf.size(), fsize - pos);
        ssize_t n = ::pread(in.fd, buf.data(), want, static_cast<off_t>(pos));
        if (n < 0) {
          if (errno == EINTR) continue;
          return ErrnoError("read " + file.string(), errno);
        }
        if (n == 0) break;
        uint64_t got = static_cast<uint64_t>(n);
        // Pad the tail to a sector.
        uint64_t padded =
            (got + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
        std::memset(buf.data() + got, 0, padded - got);
        for (uint64_t p = 0; p < padded; p += kExtentSize) {
          uint64_t len = std::min<uint64_t>(kExtentSize, padded - p);
          if (AllZero(buf.data() + p, len)) continue;
          CMKFS_ASSIGN_OR_RETURN(size_t w,
                                 h->Write(pos + p, {buf.data() + p, len}));
          (void)w;
        }
        pos += got;
        if (progress.on_progress) progress.on_progress(pos, fsize);
      }
      off = std::max<uint64_t>(end, off + 1);
    }
    CMKFS_RETURN_IF_ERROR(h->Sync());
    if (progress.on_progress) progress.on_progress(fsize, fsize);
    return Status::Ok();
  }();
  if (!st_copy.ok()) {
    Status del = Delete(ResourceKind::kDisk, s.name);
    if (!del.ok()) {
      spdlog::error("engine: removing half-imported disk {}: {}", s.name,
                    del.ToString());
    }
    return st_copy;
  }
  Notify(ResourceKind::kDisk, s.name);
  return Get(ResourceKind::kDisk, s.name);
}

Status EngineImpl::Export(ResourceKind kind, std::string_view name,
                          const std::filesystem::path& file,
                          const Progress& progress) {
  CMKFS_ASSIGN_OR_RETURN(auto h, Open(kind, name, false));
  Fd out;
  // 0600 whatever the umask; never through a symbolic link.
  auto created =
      path_guard::OpenNoFollow(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!created.ok()) {
    if (created.status().kind() == ErrorKind::kAlreadyExists) {
      return AlreadyExistsError("file " + file.string() +
                                " already exists; choose a new file name");
    }
    return created.status().WithContext("create " + file.string());
  }
  out.fd = *created;
  Status st = [&]() -> Status {
    uint64_t size = h->size();
    if (::ftruncate(out.fd, static_cast<off_t>(size)) != 0) {
      return ErrnoError("truncate " + file.string(), errno);
    }
    crypto::SecretBytes buf(1 << 20);  // plaintext: locked, wiped
    uint64_t off = 0;
    while (off < size) {
      auto data = h->SeekData(off);
      if (!data.ok()) {
        if (data.status().kind() == ErrorKind::kNotFound) break;
        return data.status();
      }
      CMKFS_ASSIGN_OR_RETURN(uint64_t hole, h->SeekHole(*data));
      for (uint64_t pos = *data; pos < hole;) {
        if (Cancelled(progress)) {
          return CancelledError("export to " + file.string() + " cancelled");
        }
        uint64_t want = std::min<uint64_t>(buf.size(), hole - pos);
        CMKFS_ASSIGN_OR_RETURN(size_t n, h->Read(pos, {buf.data(), want}));
        for (uint64_t p = 0; p < n; p += kExtentSize) {
          uint64_t len = std::min<uint64_t>(kExtentSize, n - p);
          if (AllZero(buf.data() + p, len)) continue;
          const uint8_t* src = buf.data() + p;
          for (uint64_t done = 0; done < len;) {
            ssize_t w = ::pwrite(out.fd, src + done, len - done,
                                 static_cast<off_t>(pos + p + done));
            if (w < 0) {
              if (errno == EINTR) continue;
              return ErrnoError("write " + file.string(), errno);
            }
            done += static_cast<uint64_t>(w);
          }
        }
        pos += n;
        if (progress.on_progress) progress.on_progress(pos, size);
        if (n == 0) break;
      }
      off = hole;
    }
    if (::fdatasync(out.fd) != 0)
      return ErrnoError("sync " + file.string(), errno);
    if (progress.on_progress) progress.on_progress(size, size);
    return Status::Ok();
  }();
  if (!st.ok()) ::unlink(file.c_str());
  return st;
}

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
