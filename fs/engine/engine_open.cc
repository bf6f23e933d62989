// The engine's per-resource control plane: open, seal, unseal and resize
// under the resource's hold (never control_mu_), the open table, and the
// change listener.
#include <spdlog/spdlog.h>

#include "cmkfs/config.h"
#include "cmkfs/record.h"
#include "engine_impl.h"

namespace cmkfs::fs {

std::shared_ptr<DiskHandle> MakeDiskHandle(EngineImpl* engine,
                                           std::shared_ptr<OpenResource> res,
                                           bool writable);

Result<std::shared_ptr<DiskHandle>> EngineImpl::Open(ResourceKind kind,
                                                     std::string_view name,
                                                     bool writable) {
  auto hold = locks_.Lock(kind, name);
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
    // Joins it only if its last handle did not close meanwhile (CloseHandle
    // takes no hold): a resource out of the table is opened afresh.
    MutexLock olock(&open_mu_);
    auto it = open_.find(r.rid);
    if (it != open_.end() && it->second == open) {
      ++open->handles;
      return MakeDiskHandle(this, open, writable);
    }
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
    MutexLock olock(&open_mu_);
    res->handles = 1;
    open_[r.rid] = res;
  }
  return MakeDiskHandle(this, res, writable);
}

Status EngineImpl::Seal(ResourceKind kind, std::string_view name,
                        std::string_view reason) {
  {
    auto hold = locks_.Lock(kind, name);
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
    Status st = catalog_->PutResource(r);
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
    auto hold = locks_.Lock(kind, name);
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
    CMKFS_RETURN_IF_ERROR(catalog_->PutResource(r));
    spdlog::debug("engine: unsealed {}", Describe(kind, name));
  }
  Notify(kind, name);
  return Status::Ok();
}

Result<ResourceInfo> EngineImpl::Resize(std::string_view disk,
                                        uint64_t new_size) {
  return Changed([&]() -> Result<ResourceRecord> {
    auto hold = locks_.Lock(ResourceKind::kDisk, disk);
    CMKFS_ASSIGN_OR_RETURN(auto r, LoadResource(ResourceKind::kDisk, disk));
    // Disks only grow.
    CMKFS_RETURN_IF_ERROR(catalog_->CheckGrow(r, new_size));
    r.size = new_size;
    auto open = FindOpen(r.rid);
    std::unique_lock<WriterPreferringRwLock> barrier;
    if (open) barrier = std::unique_lock(open->barrier);
    CMKFS_RETURN_IF_ERROR(catalog_->PutResource(r));
    if (open) open->size.store(new_size);
    return r;
  }());
}

Result<std::vector<KeyUse>> EngineImpl::KeyUses() {
  return catalog_->KeyUses();
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

RewrapHooks EngineImpl::Rewrap() {
  RewrapHooks hooks;
  hooks.hold = [this](ResourceKind kind, std::string_view name,
                      const std::function<Status()>& step) {
    auto hold = locks_.Lock(kind, name);
    return step();
  };
  hooks.dek = [this](const ResourceRecord& r) { return DekForRewrap(r); };
  return hooks;
}

std::shared_ptr<OpenResource> EngineImpl::FindOpen(uint64_t rid) {
  MutexLock lock(&open_mu_);
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
    MutexLock lock(&open_mu_);
    auto it = open_.find(r.rid);
    if (it != open_.end()) i.open_handles = it->second->handles;
  }
  return i;
}

void EngineImpl::SetChangeListener(
    std::function<void(ResourceKind, std::string_view)> listener) {
  MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void EngineImpl::Notify(ResourceKind kind, std::string_view name) {
  std::function<void(ResourceKind, std::string_view)> l;
  {
    MutexLock lock(&listener_mu_);
    l = listener_;
  }
  if (l) l(kind, name);
}

Result<ResourceInfo> EngineImpl::Changed(const Result<ResourceRecord>& r) {
  if (!r.ok()) return r.status();
  Notify(r->kind, r->name);
  return ToInfo(*r);
}

}  // namespace cmkfs::fs
