// Crypto core: the only module that includes OpenSSL. Everything that touches
// key bytes or ciphertext goes through these types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/status.h"

namespace cmkfs::crypto {

// Bytes of secret material (DEKs, private keys, master keys). The pages are
// mlock'ed so they never reach swap, and the bytes are wiped with
// OPENSSL_cleanse on destruction. Move-only. Not thread-safe for writing;
// concurrent reads of a const object are safe.
class SecretBytes {
 public:
  SecretBytes() = default;
  // Zero-filled secret of n bytes in its own page-aligned anonymous mapping,
  // mlock'ed and marked MADV_DONTDUMP and MADV_WIPEONFORK. If mlock fails
  // (RLIMIT_MEMLOCK), the bytes are still wiped on destruction and `locked()`
  // reports false; the first such failure of a process is logged as a
  // warning naming the locked-memory limit (`ulimit -l`). Throws
  // std::bad_alloc only if mmap itself fails, like new.
  explicit SecretBytes(size_t n);
  SecretBytes(const uint8_t* data, size_t n);
  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool locked() const { return locked_; }
  std::span<const uint8_t> span() const { return {data_, size_}; }
  // Explicit copy, for the few places that must duplicate a secret.
  SecretBytes Clone() const;
  // Wipes (OPENSSL_cleanse), unlocks and unmaps the bytes now; afterwards the
  // object is empty.
  void Wipe();

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool locked_ = false;
};

// Process-wide protection of key material, for every program that holds
// keys (the daemon, cmkctl in local mode); call it first thing in main():
// the process becomes non-dumpable (PR_SET_DUMPABLE 0) with a core limit of
// 0, and OpenSSL's secure heap (mlocked) is set up for private-key numbers.
// Problems (e.g. no mlock budget) are logged as warnings, never fatal.
void ProtectProcessSecrets();
// Process-wide TLS policy for the vault transport's server and clients:
// every TLS context made from then on (gRPC makes its own through this
// process's OpenSSL) refuses every protocol version but TLS 1.3, through
// OpenSSL's "system_default" settings, loaded from memory after the
// system's configuration. gRPC 1.51 has no public minimum-version setting.
// Idempotent and thread-safe; IOError when OpenSSL refuses the settings.
Status RequireTls13ForThisProcess();
// True when every block OpenSSL frees is wiped first (cmkfs installs such
// memory functions before main(); false only if something allocated through
// OpenSSL earlier).
bool OpenSslFreesAreWiped();

// Wipes memory in a way the compiler cannot elide.
void SecureWipe(void* p, size_t n);
// Wipes [p, p + n) (SecureWipe) when the scope ends, whichever way it ends:
// for buffers that hold plaintext or key bytes only for one operation.
// Cover() retargets it once a branch knows what it used.
class ScopedWipe {
 public:
  ScopedWipe() = default;
  ScopedWipe(void* p, size_t n) : p_(p), n_(n) {}
  ~ScopedWipe() { SecureWipe(p_, n_); }
  ScopedWipe(const ScopedWipe&) = delete;
  ScopedWipe& operator=(const ScopedWipe&) = delete;
  void Cover(void* p, size_t n) {
    p_ = p;
    n_ = n;
  }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Constant-time comparison; false when sizes differ.
bool ConstantTimeEquals(std::span<const uint8_t> a, std::span<const uint8_t> b);

// CSPRNG (OpenSSL's DRBG). Thread-safe.
Status RandomBytes(std::span<uint8_t> out);
Result<SecretBytes> RandomSecret(size_t n);
// Random lowercase hex string of 2*n_bytes characters.
Result<std::string> RandomHex(size_t n_bytes);

std::string HexEncode(std::span<const uint8_t> bytes);
Result<std::vector<uint8_t>> HexDecode(std::string_view hex);
std::vector<uint8_t> Sha256(std::span<const uint8_t> data);

// ---------------------------------------------------------------------------
// AES-256-XTS over sectors.
//
// Tweak rule: the tweak of a data unit is its unit number (for disks, the
// 4096-byte logical sector number within the disk, offset / 4096) encoded as a
// 128-bit little-endian integer, as IEEE 1619 and dm-crypt's plain64 do. CoW
// clones keep the logical sector numbers, so they can share ciphertext as is.
constexpr size_t kSectorSize = 4096;
constexpr size_t kXtsKeySize = 64;  // two AES-256 keys

class XtsCipher {
 public:
  // Takes a copy of the 64-byte key into locked memory. Refuses a key that is
  // not 64 bytes, or whose two halves are equal ("XTS key halves must
  // differ"), as IEEE 1619 and OpenSSL's FIPS rules demand (InvalidArgument).
  // Destroying the cipher frees and wipes all of its OpenSSL contexts; it
  // must not be destroyed while another thread is using it.
  static Result<std::unique_ptr<XtsCipher>> Create(const SecretBytes& key);
  ~XtsCipher();
  XtsCipher(const XtsCipher&) = delete;
  XtsCipher& operator=(const XtsCipher&) = delete;

  // Encrypts/decrypts `len` bytes (a multiple of kSectorSize) starting at
  // sector `first_sector`; each 4096-byte sector uses its own tweak. `in` and
  // `out` may be the same buffer (not partially overlapping). Thread-safe:
  // each call leases a pre-keyed OpenSSL context pair from the cipher's pool,
  // and only the tweak (IV) is reset per sector, never the key.
  // InvalidArgument for a bad length.
  Status EncryptSectors(uint64_t first_sector, const uint8_t* in, uint8_t* out,
                        size_t len) const;
  Status DecryptSectors(uint64_t first_sector, const uint8_t* in, uint8_t* out,
                        size_t len) const;
  // One data unit of 16 bytes to 16 MiB with tweak `unit_number` (used by the
  // IEEE 1619 known-answer tests, whose units are 512 bytes or smaller).
  Status EncryptUnit(uint64_t unit_number, const uint8_t* in, uint8_t* out,
                     size_t len) const;
  Status DecryptUnit(uint64_t unit_number, const uint8_t* in, uint8_t* out,
                     size_t len) const;

 private:
  XtsCipher();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// AES-256-GCM sealing of small secrets at rest (vault private keys).
// Blob layout: 12-byte random nonce || ciphertext || 16-byte tag. `aad` is
// authenticated, not stored. `key32` must be 32 bytes (InvalidArgument).
Result<std::vector<uint8_t>> AeadSeal(const SecretBytes& key32,
                                      std::span<const uint8_t> plaintext,
                                      std::span<const uint8_t> aad);
// Fails with Corruption("...authentication failed...") on a wrong key,
// wrong aad or tampered blob.
Result<SecretBytes> AeadOpen(const SecretBytes& key32,
                             std::span<const uint8_t> blob,
                             std::span<const uint8_t> aad);

struct ScryptParams {
  uint64_t n = 1u << 15;
  uint32_t r = 8;
  uint32_t p = 1;
};
// Memory-hard passphrase KDF (scrypt through EVP_KDF). 32-byte output.
// InvalidArgument when N is not a power of two >= 2, r or p is 0, the salt is
// empty, or the parameters need more than 1 GiB.
Result<SecretBytes> DeriveKeyFromPassphrase(std::string_view passphrase,
                                            std::span<const uint8_t> salt,
                                            const ScryptParams& params);

// ---------------------------------------------------------------------------
// RSA keys and RSA-OAEP key wrapping.
enum class OaepHash { kSha256, kSha1 };

// The numbers of an RSA private key as unsigned big-endian bytes, for
// handing the key to a PKCS#11 token (CKA_MODULUS ... CKA_COEFFICIENT). The
// private parts are in locked memory and wiped with the struct.
struct RsaPrivateComponents {
  std::vector<uint8_t> modulus;
  std::vector<uint8_t> public_exponent;
  SecretBytes private_exponent;
  SecretBytes prime1;
  SecretBytes prime2;
  SecretBytes exponent1;
  SecretBytes exponent2;
  SecretBytes coefficient;
};

// An RSA key (private, or public only). Move-only; const methods are
// thread-safe.
class RsaKey {
 public:
  RsaKey();
  ~RsaKey();
  RsaKey(RsaKey&&) noexcept;
  RsaKey& operator=(RsaKey&&) noexcept;

  // Generates a key of `bits` (1024..16384; the keystore decides which sizes
  // are allowed). Slow: about 0.1 s for 2048 bits, seconds for 4096.
  static Result<RsaKey> Generate(int bits);
  // Parses an unencrypted private key in PEM, PKCS#1 ("RSA PRIVATE KEY") or
  // PKCS#8 ("PRIVATE KEY"). Errors are InvalidArgument and name what was
  // found: an encrypted PEM, a public key only, an EC or Ed25519 key, or text
  // that is not a PEM key at all. Never prompts for a passphrase. Any RSA
  // size is returned; check bits().
  static Result<RsaKey> FromPrivatePem(std::string_view pem);
  // PKCS#8 DER, as produced by PrivateDer() (PKCS#1 DER is accepted too).
  static Result<RsaKey> FromPrivateDer(std::span<const uint8_t> der);
  // SubjectPublicKeyInfo DER, as produced by PublicDer().
  static Result<RsaKey> FromPublicDer(std::span<const uint8_t> der);
  // A public key from its modulus and public exponent (unsigned big-endian,
  // as a PKCS#11 token reports them). InvalidArgument for an empty or
  // implausible value.
  static Result<RsaKey> FromPublicComponents(
      std::span<const uint8_t> modulus,
      std::span<const uint8_t> public_exponent);

  bool valid() const;
  bool has_private() const;
  int bits() const;
  // PKCS#8 DER of the private key, in locked memory. FailedPrecondition for
  // a public-only key.
  Result<SecretBytes> PrivateDer() const;
  // The key's numbers, private ones in locked memory. FailedPrecondition for
  // a public-only key or one without CRT parameters.
  Result<RsaPrivateComponents> PrivateComponents() const;
  // SubjectPublicKeyInfo DER / PEM ("-----BEGIN PUBLIC KEY-----").
  Result<std::vector<uint8_t>> PublicDer() const;
  Result<std::string> PublicPem() const;

  // RSA-OAEP with `hash` as both the OAEP digest and MGF1 digest, and
  // `label` as the OAEP label (empty = no label). Works with a public-only
  // key. InvalidArgument when the plaintext exceeds modulus - 2*hLen - 2.
  Result<std::vector<uint8_t>> Wrap(std::span<const uint8_t> plaintext,
                                    std::span<const uint8_t> label,
                                    OaepHash hash = OaepHash::kSha256) const;
  // Fails with Corruption on a wrong key, wrong label or tampered blob; the
  // message gives no detail that could serve as a padding oracle. The
  // plaintext goes straight into locked memory. FailedPrecondition for a
  // public-only key.
  Result<SecretBytes> Unwrap(std::span<const uint8_t> blob,
                             std::span<const uint8_t> label,
                             OaepHash hash = OaepHash::kSha256) const;

  // Opaque pointer to the EVP_PKEY, for other code in the crypto module only.
  void* native_handle() const { return pkey_; }

 private:
  RsaKey(void* pkey, bool has_private);
  void* pkey_ = nullptr;  // EVP_PKEY*
  bool has_private_ = false;
};

// Checks and strips RSA-OAEP padding (`hash` for OAEP and MGF1, `label`)
// from the output of a raw RSA private-key operation, `encoded` being
// `modulus_bytes` long (leading zero bytes may be omitted). For tokens that
// do the raw operation (CKM_RSA_X_509) but not OAEP with SHA-256 or a label.
// Constant-time check; Corruption without detail on any mismatch.
Result<SecretBytes> OaepDecode(std::span<const uint8_t> encoded,
                               size_t modulus_bytes,
                               std::span<const uint8_t> label,
                               OaepHash hash = OaepHash::kSha256);

// Describes what a PEM holds without accepting it: "RSA 2048-bit private
// key", "RSA 2048-bit public key", "EC key", "ED25519 key", "encrypted
// private key", "certificate (a public key only)", "not a PEM key", ...
// Used for refusal messages; never prompts for a passphrase.
std::string DescribePem(std::string_view pem);

}  // namespace cmkfs::crypto
