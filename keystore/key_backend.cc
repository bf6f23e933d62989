#include "key_backend.h"

#include <string>

namespace cmkfs::keystore {

Result<StoredKey> StoredPublicPart(const crypto::RsaKey& key) {
  StoredKey stored;
  stored.bits = key.bits();
  CMKFS_ASSIGN_OR_RETURN(stored.public_der, key.PublicDer());
  return stored;
}

Result<StoredKey> StoredPublicPartOfImport(const crypto::RsaKey& key,
                                           std::string_view backend) {
  if (!key.has_private()) {
    return InvalidArgumentError("the " + std::string(backend) +
                                " key backend needs a private key, got a "
                                "public key");
  }
  return StoredPublicPart(key);
}

Result<std::vector<uint8_t>> KeyBackend::Wrap(
    const StoredKey& key, std::string_view /*key_id*/,
    std::span<const uint8_t> plaintext, std::span<const uint8_t> label,
    crypto::OaepHash hash) {
  CMKFS_ASSIGN_OR_RETURN(crypto::RsaKey pub,
                         crypto::RsaKey::FromPublicDer(key.public_der));
  return pub.Wrap(plaintext, label, hash);
}

}  // namespace cmkfs::keystore
