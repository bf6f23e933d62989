// Where the private half of a vault key lives. The keystore stores what a
// backend returns (public DER plus an opaque `material` blob: a sealed private
// key for software keys, a token handle for HSM keys) and hands the blob back
// for every private-key operation. Private key bytes never leave a backend.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "cmkfs/config.h"
#include "cmkfs/crypto.h"
#include "cmkfs/erase_slots.h"
#include "cmkfs/status.h"

namespace cmkfs::keystore {

struct StoredKey {
  int bits = 0;
  std::vector<uint8_t> public_der;  // SubjectPublicKeyInfo
  std::vector<uint8_t> material;    // opaque to the keystore
};

// Thread-safe: all methods may be called concurrently.
class KeyBackend {
 public:
  virtual ~KeyBackend() = default;
  // Creates a new RSA key of `bits`. `key_id` (the full id with version) is
  // bound to the material so it cannot be swapped into another version.
  virtual Result<StoredKey> Generate(int bits, std::string_view key_id) = 0;
  // Takes custody of an imported private key.
  virtual Result<StoredKey> Import(const crypto::RsaKey& key,
                                   std::string_view key_id) = 0;
  // RSA-OAEP encryption with the public key. The default uses the stored
  // public DER, which is all a wrap needs in every backend so far.
  virtual Result<std::vector<uint8_t>> Wrap(const StoredKey& key,
                                            std::string_view key_id,
                                            std::span<const uint8_t> plaintext,
                                            std::span<const uint8_t> label,
                                            crypto::OaepHash hash);
  // RSA-OAEP decryption with the private key. Corruption on a tampered blob,
  // wrong label or wrong key; Corruption too when the material does not open
  // (wrong master key, or material moved to another key id).
  virtual Result<crypto::SecretBytes> Unwrap(const StoredKey& key,
                                             std::string_view key_id,
                                             std::span<const uint8_t> blob,
                                             std::span<const uint8_t> label,
                                             crypto::OaepHash hash) = 0;
  // Releases whatever the backend holds for the key (token objects). The
  // keystore deletes the stored record itself.
  virtual Status Destroy(const StoredKey& key, std::string_view key_id) = 0;
};

// Shared by the backends. Bits and public DER of `key`, with `material` left
// empty for the backend to fill in.
Result<StoredKey> StoredPublicPart(const crypto::RsaKey& key);
// The same for a key given to Import: InvalidArgument naming `backend` when
// `key` has no private half.
Result<StoredKey> StoredPublicPartOfImport(const crypto::RsaKey& key,
                                           std::string_view backend);

// Private keys as PKCS#8 DER sealed twice with AES-256-GCM, aad = key id:
// under a secret of its own in `slots`, then under the vault master key (32
// bytes, copied into locked memory). Destroy erases the slot, after which no
// copy of the material opens (crypto-erase). Material written before erase
// slots (sealed under the master key alone) still opens; Destroy cannot erase
// it (docs/threat-model.md).
std::unique_ptr<KeyBackend> NewSoftwareKeyBackend(
    const crypto::SecretBytes& master_key,
    std::unique_ptr<EraseSlotFile> slots);

// The material of a software key (docs/keystore.md, "Private keys at
// rest"): SlotRef::Of(slot, slot_secret).Encode("CKS2"), then
// AeadSeal(master, AeadSeal(slot_secret, der, key_id), key_id).
Result<std::vector<uint8_t>> SealSoftwareKey(
    const crypto::SecretBytes& master_key, uint32_t slot,
    const crypto::SecretBytes& slot_secret, std::span<const uint8_t> der,
    std::string_view key_id);

// Keys inside a PKCS#11 token (config: module, token_label, pin_file). Each
// key version is a token object pair labelled with its key id; `material`
// holds the object id (SHA-256 of the key id). The private key is created
// sensitive and non-extractable. The module is loaded and the token logged
// into on first use, and again after a failure, so the errors (module cannot
// be loaded, no such token, wrong PIN, token unreachable) surface on the
// operation that needed the token, as FailedPrecondition or IOError.
std::unique_ptr<KeyBackend> NewPkcs11KeyBackend(const Config::Pkcs11& config);

// What the token says about the private key object of `key_id`, for tests
// and diagnostics.
struct TokenKeyFacts {
  bool found = false;
  bool sensitive = false;
  bool extractable = true;
  bool on_token = false;
  // Whether the token handed out CKA_PRIVATE_EXPONENT (it must not).
  bool private_exponent_readable = true;
  // CKA_ALLOWED_MECHANISMS as the token reports it (CKM_* values); unset
  // when the token does not keep the attribute.
  bool allowed_mechanisms_set = false;
  std::vector<unsigned long> allowed_mechanisms;
  // Whether the backend unwraps with the token's CKM_RSA_PKCS_OAEP (hash,
  // MGF1 and label checked by the token) rather than CKM_RSA_X_509 and a
  // padding check in software.
  bool unwraps_natively = false;
  // Whether the token performs a raw RSA decryption (CKM_RSA_X_509) with
  // the key: an unpadded private-key oracle for anyone holding the PIN.
  bool raw_decrypt_allowed = true;
};
Result<TokenKeyFacts> InspectPkcs11Key(KeyBackend& pkcs11_backend,
                                       std::string_view key_id);

}  // namespace cmkfs::keystore
