#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "cmkfs/crypto.h"
#include "key_backend.h"

namespace cmkfs::keystore {
namespace {

constexpr std::string_view kMagic = "CKS2";

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class SoftwareKeyBackend final : public KeyBackend {
 public:
  SoftwareKeyBackend(crypto::SecretBytes master_key,
                     std::unique_ptr<EraseSlotFile> slots)
      : master_key_(std::move(master_key)), slots_(std::move(slots)) {}

  Result<StoredKey> Generate(int bits, std::string_view key_id) override {
    CMKFS_ASSIGN_OR_RETURN(crypto::RsaKey key, crypto::RsaKey::Generate(bits));
    return Import(key, key_id);
  }

  Result<StoredKey> Import(const crypto::RsaKey& key,
                           std::string_view key_id) override {
    CMKFS_ASSIGN_OR_RETURN(StoredKey stored,
                           StoredPublicPartOfImport(key, "software"));
    CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes der, key.PrivateDer());
    crypto::SecretBytes secret;
    CMKFS_ASSIGN_OR_RETURN(uint32_t slot, slots_->Allocate(&secret));
    auto material =
        SealSoftwareKey(master_key_, slot, secret, der.span(), key_id);
    if (!material.ok()) {
      slots_->Erase(slot).IgnoreError();
      return material.status();
    }
    stored.material = std::move(*material);
    return stored;
  }

  Result<crypto::SecretBytes> Unwrap(const StoredKey& key,
                                     std::string_view key_id,
                                     std::span<const uint8_t> blob,
                                     std::span<const uint8_t> label,
                                     crypto::OaepHash hash) override {
    auto der = OpenMaterial(key.material, key_id);
    if (!der.ok()) return der.status();
    CMKFS_ASSIGN_OR_RETURN(crypto::RsaKey priv,
                           crypto::RsaKey::FromPrivateDer(der->span()));
    return priv.Unwrap(blob, label, hash);
  }

  Status Destroy(const StoredKey& key, std::string_view /*key_id*/) override {
    std::optional<SlotRef> ref = SlotRef::Decode(kMagic, key.material);
    return ref ? slots_->Erase(*ref) : Status::Ok();
  }

 private:
  // The private key's DER; Corruption when it does not open: wrong master
  // key, material moved to another key id, or its slot erased (purged).
  Result<crypto::SecretBytes> OpenMaterial(std::span<const uint8_t> material,
                                           std::string_view key_id) const {
    const std::string id(key_id);
    if (std::optional<SlotRef> ref = SlotRef::Decode(kMagic, material)) {
      auto secret = slots_->Read(ref->slot);
      if (!secret.ok() && secret.status().kind() == ErrorKind::kNotFound) {
        return CorruptionError("sealed private key of " + id +
                               " does not open: its erase slot is erased "
                               "(the key was purged)");
      }
      if (!secret.ok()) return secret.status();
      auto inner = crypto::AeadOpen(
          master_key_, material.subspan(SlotRef::kEncodedSize), AsBytes(id));
      if (inner.ok()) {
        auto der = crypto::AeadOpen(*secret, inner->span(), AsBytes(id));
        if (der.ok()) return der;
      }
      // Fall through: master-key-only material that happens to start with
      // the magic.
    }
    auto der = crypto::AeadOpen(master_key_, material, AsBytes(id));
    if (!der.ok()) {
      return CorruptionError("sealed private key of " + id +
                             " does not open under the vault master key");
    }
    return der;
  }

  const crypto::SecretBytes master_key_;
  const std::unique_ptr<EraseSlotFile> slots_;
};

}  // namespace

Result<std::vector<uint8_t>> SealSoftwareKey(
    const crypto::SecretBytes& master_key, uint32_t slot,
    const crypto::SecretBytes& slot_secret, std::span<const uint8_t> der,
    std::string_view key_id) {
  CMKFS_ASSIGN_OR_RETURN(std::vector<uint8_t> inner,
                         crypto::AeadSeal(slot_secret, der, AsBytes(key_id)));
  CMKFS_ASSIGN_OR_RETURN(std::vector<uint8_t> outer,
                         crypto::AeadSeal(master_key, inner, AsBytes(key_id)));
  std::vector<uint8_t> material = SlotRef::Of(slot, slot_secret).Encode(kMagic);
  material.insert(material.end(), outer.begin(), outer.end());
  return material;
}

std::unique_ptr<KeyBackend> NewSoftwareKeyBackend(
    const crypto::SecretBytes& master_key,
    std::unique_ptr<EraseSlotFile> slots) {
  return std::make_unique<SoftwareKeyBackend>(master_key.Clone(),
                                              std::move(slots));
}

}  // namespace cmkfs::keystore
