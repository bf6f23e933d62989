// The catalog's key work: the system key, key versions, DES access, and the
// wrapping and unwrapping of DEKs through the keystore.
#include "catalog.h"

namespace cmkfs::fs {
namespace {

constexpr char kLabelPrefix[] = "cmkfs-dek:";

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

// --- keys
// ----------------------------------------------------------------------

Status Catalog::EnsureSystemKey() {
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

Result<keystore::KeyId> Catalog::ResolveKeyVersion(const keystore::KeyId& id) {
  auto v = ks_->GetKeyVersion("", id);
  if (!v.ok()) return v.status().WithContext("key " + id.ToString());
  return v->id;
}

Status Catalog::CheckDesAccess(const DesRecord& d, const keystore::KeyId& key) {
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

Result<std::vector<uint8_t>> Catalog::WrapDek(const crypto::SecretBytes& dek,
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

Result<crypto::SecretBytes> Catalog::UnwrapDek(const ResourceRecord& r) {
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

Result<crypto::SecretBytes> Catalog::NewDek() {
  for (;;) {
    CMKFS_ASSIGN_OR_RETURN(auto dek, crypto::RandomSecret(crypto::kXtsKeySize));
    std::span<const uint8_t> s = dek.span();
    if (!crypto::ConstantTimeEquals(s.first(32), s.last(32))) return dek;
  }
}

}  // namespace cmkfs::fs
