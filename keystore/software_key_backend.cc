#include <span>
#include <string>
#include <utility>

#include "cmkfs/crypto.h"
#include "key_backend.h"

namespace cmkfs::keystore {
namespace {

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class SoftwareKeyBackend final : public KeyBackend {
 public:
  explicit SoftwareKeyBackend(crypto::SecretBytes master_key)
      : master_key_(std::move(master_key)) {}

  Result<StoredKey> Generate(int bits, std::string_view key_id) override {
    CMKFS_ASSIGN_OR_RETURN(crypto::RsaKey key, crypto::RsaKey::Generate(bits));
    return Import(key, key_id);
  }

  Result<StoredKey> Import(const crypto::RsaKey& key,
                           std::string_view key_id) override {
    CMKFS_ASSIGN_OR_RETURN(StoredKey stored,
                           StoredPublicPartOfImport(key, "software"));
    CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes der, key.PrivateDer());
    CMKFS_ASSIGN_OR_RETURN(
        stored.material,
        crypto::AeadSeal(master_key_, der.span(), AsBytes(key_id)));
    return stored;
  }

  Result<crypto::SecretBytes> Unwrap(const StoredKey& key,
                                     std::string_view key_id,
                                     std::span<const uint8_t> blob,
                                     std::span<const uint8_t> label,
                                     crypto::OaepHash hash) override {
    auto der = crypto::AeadOpen(master_key_, key.material, AsBytes(key_id));
    if (!der.ok()) {
      return CorruptionError("sealed private key of " + std::string(key_id) +
                             " does not open under the vault master key");
    }
    CMKFS_ASSIGN_OR_RETURN(crypto::RsaKey priv,
                           crypto::RsaKey::FromPrivateDer(der->span()));
    return priv.Unwrap(blob, label, hash);
  }

  Status Destroy(const StoredKey& /*key*/,
                 std::string_view /*key_id*/) override {
    return Status::Ok();
  }

 private:
  const crypto::SecretBytes master_key_;
};

}  // namespace

std::unique_ptr<KeyBackend> NewSoftwareKeyBackend(
    const crypto::SecretBytes& master_key) {
  return std::make_unique<SoftwareKeyBackend>(master_key.Clone());
}

}  // namespace cmkfs::keystore
