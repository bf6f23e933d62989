// The catalog's key work: the system key, key versions, DES access, and the
// wrapping and unwrapping of DEKs through the keystore.
#include <spdlog/spdlog.h>

#include <cstring>
#include <optional>
#include <set>

#include "catalog.h"

namespace cmkfs::fs {
namespace {

constexpr char kLabelPrefix[] = "cmkfs-dek:";
// A wrapped DEK sealed under an erase slot: SlotRef "CKD2", then the AEAD
// blob (docs/format.md, "Wrapped DEKs and erase slots").
constexpr std::string_view kSealedMagic = "CKD2";

std::optional<SlotRef> SlotOfWrappedDek(std::span<const uint8_t> wrapped) {
  return SlotRef::Decode(kSealedMagic, wrapped);
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The keystore's blob inside a sealed wrapped DEK. NotFound (erased slot) is
// reported as Corruption: the record names a key that no longer exists.
Result<crypto::SecretBytes> OpenSealedDek(const EraseSlotFile& slots,
                                          uint32_t slot,
                                          std::span<const uint8_t> wrapped,
                                          std::string_view label) {
  auto secret = slots.Read(slot);
  if (!secret.ok()) {
    if (secret.status().kind() != ErrorKind::kNotFound) return secret.status();
    return CorruptionError("its wrapped key is erased (erase slot " +
                           std::to_string(slot) + " of " +
                           slots.path().string() + " is zero)");
  }
  auto opened = crypto::AeadOpen(
      *secret, wrapped.subspan(SlotRef::kEncodedSize), AsBytes(label));
  if (!opened.ok()) {
    return CorruptionError("its wrapped key does not open under erase slot " +
                           std::to_string(slot));
  }
  return opened;
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

Result<keystore::KeyId> Catalog::ResolveKeyVersion(const keystore::KeyId& id,
                                                   std::string_view caller) {
  auto v = ks_->GetKeyVersion(caller, id);
  if (!v.ok()) return v.status().WithContext("key " + id.ToString());
  return v->id;
}

std::string Catalog::KeyReaderOf(const DesRecord& d) const {
  return options_.mint_des_identity ? d.identity : std::string();
}

Result<DesRecord> Catalog::LoadDesForUse(std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(DesRecord d, LoadDes(name));
  CMKFS_ASSIGN_OR_RETURN(auto key, keystore::KeyId::Parse(d.key_id));
  if (!key.version.empty()) return d;
  CMKFS_ASSIGN_OR_RETURN(auto resolved, ResolveKeyVersion(key, KeyReaderOf(d)));
  d.key_id = resolved.ToString();
  CMKFS_RETURN_IF_ERROR(PutDes(d));
  spdlog::info("engine: disk encryption set {} uses key {}", d.name, d.key_id);
  return d;
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
  crypto::SecretBytes secret;
  CMKFS_ASSIGN_OR_RETURN(uint32_t slot, slots_->Allocate(&secret));
  auto sealed = crypto::AeadSeal(secret, *blob, AsBytes(label));
  if (!sealed.ok()) {
    slots_->Erase(slot).IgnoreError();
    return sealed.status();
  }
  std::vector<uint8_t> out = SlotRef::Of(slot, secret).Encode(kSealedMagic);
  out.insert(out.end(), sealed->begin(), sealed->end());
  return out;
}

Result<crypto::SecretBytes> Catalog::UnwrapDek(const ResourceRecord& r) {
  CMKFS_ASSIGN_OR_RETURN(auto key, keystore::KeyId::Parse(r.key_id));
  std::string label = kLabelPrefix + r.uuid;
  // The keystore's blob: inside the erase-slot seal, or the record's bytes
  // themselves when they predate erase slots (tried too when the seal does
  // not open: such a blob may start with the magic, one in 2^32).
  std::vector<uint8_t> blob = r.wrapped_dek;
  if (std::optional<SlotRef> ref = SlotOfWrappedDek(r.wrapped_dek)) {
    auto opened = OpenSealedDek(*slots_, ref->slot, r.wrapped_dek, label);
    if (opened.ok()) {
      blob.assign(opened->span().begin(), opened->span().end());
    } else {
      auto legacy = ks_->UnwrapKey(r.identity, key, blob, AsBytes(label));
      if (legacy.ok() && legacy->size() == crypto::kXtsKeySize) {
        return std::move(*legacy);
      }
      return opened.status().WithContext(Describe(r.kind, r.name));
    }
  }
  auto dek = ks_->UnwrapKey(r.identity, key, blob, AsBytes(label));
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

void Catalog::ReleaseWrappedDek(std::span<const uint8_t> wrapped_dek) {
  std::optional<SlotRef> ref = SlotOfWrappedDek(wrapped_dek);
  if (!ref) return;
  Status s = slots_->Erase(*ref);
  if (!s.ok()) {
    spdlog::warn(
        "engine: erasing a released disk key (erase slot {}): {}; retried "
        "when the engine next opens",
        ref->slot, s.ToString());
  }
}

std::optional<std::string> Catalog::WrappedDekProblem(
    std::span<const uint8_t> wrapped_dek) const {
  std::optional<SlotRef> ref = SlotOfWrappedDek(wrapped_dek);
  if (!ref) return std::nullopt;
  const std::string where = "erase slot " + std::to_string(ref->slot) + " of " +
                            slots_->path().string();
  auto secret = slots_->Read(ref->slot);
  if (!secret.ok()) {
    if (secret.status().kind() == ErrorKind::kNotFound) {
      return "its wrapped disk key is erased (" + where + " is zero)";
    }
    return "its wrapped disk key cannot be read: " + secret.status().message();
  }
  if (SlotRef::Of(ref->slot, *secret).fingerprint != ref->fingerprint) {
    return "its wrapped disk key's " + where + " holds another key";
  }
  return std::nullopt;
}

Status Catalog::SweepEraseSlots() {
  std::set<uint32_t> named;
  Result<std::vector<ResourceRecord>> all = AllResources();
  if (!all.ok()) {
    // A record that does not decode may name a slot: erase nothing.
    if (all.status().kind() != ErrorKind::kCorruption) return all.status();
    spdlog::warn(
        "engine: not sweeping the erase slots of {}: {}; run cmkctl fsck",
        slots_->path().string(), all.status().ToString());
    return Status::Ok();
  }
  for (const ResourceRecord& r : *all) {
    if (auto ref = SlotOfWrappedDek(r.wrapped_dek)) named.insert(ref->slot);
  }
  CMKFS_ASSIGN_OR_RETURN(std::vector<uint32_t> used, slots_->UsedSlots());
  size_t erased = 0;
  for (uint32_t slot : used) {
    if (named.contains(slot)) continue;
    CMKFS_RETURN_IF_ERROR(slots_->Erase(slot));
    ++erased;
  }
  if (erased > 0) {
    spdlog::info("engine: erased {} disk key(s) no record names", erased);
  }
  return Status::Ok();
}

Result<crypto::SecretBytes> Catalog::NewDek() {
  for (;;) {
    CMKFS_ASSIGN_OR_RETURN(auto dek, crypto::RandomSecret(crypto::kXtsKeySize));
    std::span<const uint8_t> s = dek.span();
    if (!crypto::ConstantTimeEquals(s.first(32), s.last(32))) return dek;
  }
}

}  // namespace cmkfs::fs
