// The catalog: records, names, scope, quota and SKU rules, DEK wrapping.
#include "catalog.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "cmkfs/config.h"

namespace cmkfs::fs {
namespace {

// Decodes every record of `table` from `seek` on while the key starts with
// it, and passes each to `fn`.
template <typename Record, typename Decode, typename Fn>
Status ScanRecords(const MetaStore& meta, MetaTable table,
                   std::string_view prefix, Decode decode, Fn fn) {
  return meta.View([&](MetaTxn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(table));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(prefix));
    while (ok && cur->key().starts_with(prefix)) {
      CMKFS_ASSIGN_OR_RETURN(Record r, decode(cur->value()));
      fn(std::move(r));
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
    return Status::Ok();
  });
}

Status CheckPurgeProtection(std::string_view name,
                            const keystore::VaultInfo& vault) {
  if (vault.spec.purge_protection) return Status::Ok();
  return FailedPreconditionError(
      "vault " + std::string(name) +
      " has no purge protection; create it with --purge-protection");
}

Status CheckSameRegion(std::string_view what, const Scope& scope,
                       const DesRecord& d) {
  if (d.scope.subscription == scope.subscription &&
      d.scope.region == scope.region) {
    return Status::Ok();
  }
  return InvalidArgumentError(
      std::string(what) + " (subscription " + scope.subscription + ", region " +
      scope.region +
      ") must be in the subscription and region of disk encryption set " +
      d.name + " (" + d.scope.subscription + ", " + d.scope.region + ")");
}

}  // namespace

std::string Describe(ResourceKind kind, std::string_view name) {
  return std::string(ResourceKindName(kind)) + " " + std::string(name);
}

Result<std::string> NewObjectId() {
  CMKFS_ASSIGN_OR_RETURN(std::string h, crypto::RandomHex(16));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" +
         h.substr(16, 4) + "-" + h.substr(20);
}

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

Catalog::Catalog(const EngineOptions& options, keystore::KeyStore* ks,
                 MetaStore* meta, CatalogTables tables,
                 std::unique_ptr<EraseSlotFile> slots)
    : options_(options),
      ks_(ks),
      meta_(meta),
      t_(tables),
      slots_(std::move(slots)) {}

// --- records -----------------------------------------------------------------

Result<ResourceRecord> Catalog::LoadResource(ResourceKind kind,
                                             std::string_view name) const {
  std::optional<ResourceRecord> out;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto v = txn.Get(t_.resources, ResourceKey(kind, name));
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

Result<DesRecord> Catalog::LoadDes(std::string_view name) const {
  std::optional<DesRecord> out;
  CMKFS_RETURN_IF_ERROR(meta_->View([&](MetaTxn& txn) -> Status {
    auto v = txn.Get(t_.des, name);
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

Status Catalog::PutResource(const ResourceRecord& r) {
  CMKFS_RETURN_IF_ERROR(meta_->Update([&](MetaTxn& txn) {
    return txn.Put(t_.resources, ResourceKey(r.kind, r.name),
                   EncodeResource(r));
  }));
  return meta_->Sync();
}

Status Catalog::PutDes(const DesRecord& d) {
  CMKFS_RETURN_IF_ERROR(meta_->Update(
      [&](MetaTxn& txn) { return txn.Put(t_.des, d.name, EncodeDes(d)); }));
  return meta_->Sync();
}

Result<std::vector<ResourceRecord>> Catalog::ListResources(
    ResourceKind kind) const {
  std::vector<ResourceRecord> out;
  CMKFS_RETURN_IF_ERROR(ScanRecords<ResourceRecord>(
      *meta_, t_.resources, ResourceKey(kind, ""), DecodeResource,
      [&](ResourceRecord r) { out.push_back(std::move(r)); }));
  return out;
}

Result<std::vector<ResourceRecord>> Catalog::AllResources() const {
  std::vector<ResourceRecord> out;
  CMKFS_RETURN_IF_ERROR(ScanRecords<ResourceRecord>(
      *meta_, t_.resources, "", DecodeResource,
      [&](ResourceRecord r) { out.push_back(std::move(r)); }));
  return out;
}

Result<std::vector<DesRecord>> Catalog::AllDes() const {
  std::vector<DesRecord> out;
  CMKFS_RETURN_IF_ERROR(ScanRecords<DesRecord>(
      *meta_, t_.des, "", DecodeDes,
      [&](DesRecord d) { out.push_back(std::move(d)); }));
  return out;
}

Result<std::vector<KeyUse>> Catalog::KeyUses() const {
  CMKFS_ASSIGN_OR_RETURN(std::vector<ResourceRecord> all, AllResources());
  std::vector<KeyUse> out;
  out.reserve(all.size());
  for (ResourceRecord& r : all) {
    KeyUse u;
    u.kind = r.kind;
    u.name = std::move(r.name);
    u.des = std::move(r.des);
    u.identity = std::move(r.identity);
    CMKFS_ASSIGN_OR_RETURN(u.key_id, keystore::KeyId::Parse(r.key_id));
    u.sku = r.sku;
    u.state = r.state;
    out.push_back(std::move(u));
  }
  return out;
}

// --- names and scope
// -----------------------------------------------------------

Scope Catalog::FillScope(Scope s) const {
  if (s.subscription.empty()) s.subscription = options_.defaults.subscription;
  if (s.resource_group.empty()) {
    s.resource_group = options_.defaults.resource_group;
  }
  if (s.region.empty()) s.region = options_.defaults.region;
  return s;
}

Result<std::pair<ResourceKind, std::string>> Catalog::ResolveSource(
    std::string_view source, bool for_image) const {
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

DesInfo Catalog::ToDesInfo(const DesRecord& d) {
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

// --- disk encryption sets
// ------------------------------------------------------

Result<DesRecord> Catalog::CreateDes(const DesSpec& spec) {
  CMKFS_RETURN_IF_ERROR(ValidateName("disk encryption set", spec.name));
  if (LoadDes(spec.name).ok()) {
    return AlreadyExistsError("disk encryption set " + spec.name +
                              " already exists");
  }
  CMKFS_ASSIGN_OR_RETURN(auto vault, ks_->GetVault(spec.key_id.vault));
  CMKFS_RETURN_IF_ERROR(CheckPurgeProtection(spec.key_id.vault, vault));
  Scope scope = FillScope(spec.scope);
  if (vault.spec.subscription != scope.subscription ||
      vault.spec.region != scope.region) {
    return InvalidArgumentError(
        "disk encryption set " + spec.name + " (subscription " +
        scope.subscription + ", region " + scope.region +
        ") must be in the subscription and region of vault " +
        spec.key_id.vault + " (" + vault.spec.subscription + ", " +
        vault.spec.region + ")");
  }
  uint32_t in_region = 0;
  CMKFS_RETURN_IF_ERROR(
      ScanRecords<DesRecord>(*meta_, t_.des, "", DecodeDes, [&](DesRecord d) {
        if (d.scope.subscription == scope.subscription &&
            d.scope.region == scope.region) {
          ++in_region;
        }
      }));
  if (in_region >= options_.des_quota_per_region) {
    return FailedPreconditionError(
        "quota reached: subscription " + scope.subscription + " already has " +
        std::to_string(in_region) + " disk encryption sets in region " +
        scope.region + " (limit " +
        std::to_string(options_.des_quota_per_region) +
        ", [limits] disk_encryption_sets_per_region)");
  }
  DesRecord d;
  d.name = spec.name;
  d.auto_rotate = spec.auto_rotate;
  if (options_.mint_des_identity) {
    CMKFS_ASSIGN_OR_RETURN(d.identity, options_.mint_des_identity(spec.name));
  } else {
    CMKFS_ASSIGN_OR_RETURN(d.identity, NewObjectId());
  }
  Result<keystore::KeyId> key = ResolveKeyVersion(spec.key_id, KeyReaderOf(d));
  if (key.ok()) {
    d.key_id = key->ToString();
  } else if (options_.mint_des_identity &&
             key.status().kind() == ErrorKind::kPermissionDenied) {
    // The new identity has no grant yet: the version is read on first use.
    d.key_id = spec.key_id.ToString();
  } else {
    return key.status();
  }
  d.scope = scope;
  d.created = NowSeconds();
  CMKFS_RETURN_IF_ERROR(PutDes(d));
  spdlog::info("engine: created disk encryption set {} with {} identity {}",
               d.name, d.key_id, d.identity);
  return d;
}

Result<DesRecord> Catalog::UpdateDes(std::string_view name,
                                     std::optional<keystore::KeyId> key_id,
                                     std::optional<bool> auto_rotate,
                                     const RewrapHooks& hooks) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  if (auto_rotate) d.auto_rotate = *auto_rotate;
  if (key_id) {
    CMKFS_ASSIGN_OR_RETURN(auto vault, ks_->GetVault(key_id->vault));
    CMKFS_RETURN_IF_ERROR(CheckPurgeProtection(key_id->vault, vault));
    if (vault.spec.subscription != d.scope.subscription ||
        vault.spec.region != d.scope.region) {
      return InvalidArgumentError(
          "vault " + key_id->vault +
          " is not in the subscription and region of disk encryption set " +
          d.name);
    }
    CMKFS_ASSIGN_OR_RETURN(auto target,
                           ResolveKeyVersion(*key_id, KeyReaderOf(d)));
    if (target.ToString() != d.key_id || !d.rotation_target.empty()) {
      CMKFS_RETURN_IF_ERROR(CheckDesAccess(d, target));
      // Marker first: Open resumes an interrupted re-wrap. A retry keeps
      // the version the unfinished rotation started from.
      if (d.rotation_target.empty()) d.previous_key_id = d.key_id;
      d.rotation_target = target.ToString();
      d.key_id = target.ToString();
      CMKFS_RETURN_IF_ERROR(PutDes(d));
      CMKFS_RETURN_IF_ERROR(RewrapDes(d, hooks));
    }
  }
  CMKFS_RETURN_IF_ERROR(PutDes(d));
  return d;
}

Status Catalog::RewrapDes(DesRecord& d, const RewrapHooks& hooks) {
  CMKFS_ASSIGN_OR_RETURN(auto target,
                         keystore::KeyId::Parse(d.rotation_target));
  std::vector<std::pair<ResourceKind, std::string>> todo;
  CMKFS_RETURN_IF_ERROR(ScanRecords<ResourceRecord>(
      *meta_, t_.resources, "", DecodeResource, [&](ResourceRecord r) {
        if (r.des == d.name && r.key_id != d.rotation_target) {
          todo.emplace_back(r.kind, std::move(r.name));
        }
      }));
  Status first_error;
  for (const auto& entry : todo) {
    const ResourceKind kind = entry.first;
    const std::string& name = entry.second;
    // One resource per transaction: a crash leaves each resource wrapped
    // by a version its record names. The record is read again under the
    // resource's lock: a seal or resize may have changed it since the scan.
    Status st = hooks.hold(kind, name, [&]() -> Status {
      auto r = LoadResource(kind, name);
      if (!r.ok()) {
        return r.status().kind() == ErrorKind::kNotFound ? Status::Ok()
                                                         : r.status();
      }
      if (r->des != d.name || r->key_id == d.rotation_target) {
        return Status::Ok();
      }
      CMKFS_ASSIGN_OR_RETURN(auto dek, hooks.dek(*r));
      const std::vector<uint8_t> old = r->wrapped_dek;
      CMKFS_ASSIGN_OR_RETURN(r->wrapped_dek,
                             WrapDek(dek, d.identity, target, r->uuid));
      r->key_id = d.rotation_target;
      r->identity = d.identity;
      CMKFS_RETURN_IF_ERROR(PutResource(*r));
      ReleaseWrappedDek(old);
      return Status::Ok();
    });
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

Status Catalog::SetDesRotationError(std::string_view name,
                                    std::string_view error) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  if (d.rotation_error == error) return Status::Ok();
  d.rotation_error = std::string(error);
  return PutDes(d);
}

Status Catalog::DeleteDes(std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  std::vector<std::string> users;
  CMKFS_RETURN_IF_ERROR(ScanRecords<ResourceRecord>(
      *meta_, t_.resources, "", DecodeResource, [&](ResourceRecord r) {
        if (r.des == d.name) {
          users.push_back(std::string(ResourceDirName(r.kind)) + "/" + r.name);
        }
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
      meta_->Update([&](MetaTxn& txn) { return txn.Delete(t_.des, name); }));
  return meta_->Sync();
}

// --- resources
// -------------------------------------------------------------------

Result<ResourceRecord> Catalog::CreateDisk(const DiskSpec& spec) {
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
    CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDesForUse(spec.des));
    CMKFS_RETURN_IF_ERROR(CheckSameRegion("disk " + spec.name, r.scope, d));
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
  CMKFS_ASSIGN_OR_RETURN(r.rid, NextRid(*meta_, t_.meta));
  CMKFS_RETURN_IF_ERROR(PutResource(r));
  spdlog::info("engine: created disk {} ({} bytes, {}, key {})", r.name, r.size,
               DiskSkuName(r.sku), r.key_id);
  return r;
}

Status Catalog::CheckGrow(const ResourceRecord& r, uint64_t new_size) const {
  return CheckDiskSize("new size of disk " + r.name, new_size,
                       std::min(r.size, kMaxMaxDiskSize) + kSectorBytes,
                       options_.max_disk_size);
}

Status Catalog::Move(ResourceRecord& r, std::string_view resource_group,
                     const std::optional<std::string>& subscription) {
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
  return PutResource(r);
}

Status Catalog::SetDiskDes(
    ResourceRecord& r, std::string_view des,
    const std::function<Result<crypto::SecretBytes>(const ResourceRecord&)>&
        dek_for) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDesForUse(des));
  if (r.guest_encrypted) {
    return FailedPreconditionError(
        "disk " + r.name +
        " was guest-encrypted and cannot switch to customer-managed keys");
  }
  CMKFS_RETURN_IF_ERROR(CheckSameRegion("disk " + r.name, r.scope, d));
  if (r.des == d.name && r.key_id == d.key_id) return Status::Ok();
  CMKFS_ASSIGN_OR_RETURN(auto key, keystore::KeyId::Parse(d.key_id));
  CMKFS_RETURN_IF_ERROR(CheckDesAccess(d, key));
  CMKFS_ASSIGN_OR_RETURN(auto dek, dek_for(r));
  const std::vector<uint8_t> old = r.wrapped_dek;
  CMKFS_ASSIGN_OR_RETURN(r.wrapped_dek, WrapDek(dek, d.identity, key, r.uuid));
  r.encryption = EncryptionType::kCustomer;
  r.des = d.name;
  r.identity = d.identity;
  r.key_id = d.key_id;
  CMKFS_RETURN_IF_ERROR(PutResource(r));
  ReleaseWrappedDek(old);
  spdlog::info("engine: disk {} now uses disk encryption set {} ({})", r.name,
               d.name, r.key_id);
  return Status::Ok();
}

}  // namespace cmkfs::fs
