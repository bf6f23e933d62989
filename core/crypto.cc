// The only translation unit of cmkfs that includes OpenSSL (3.0 API).
//
// Only inline parts of cmkfs/status.h are used here: cmkfs_crypto is linked
// after cmkfs_core, so it must not depend on symbols from status.cc.
#include "cmkfs/crypto.h"

#include <malloc.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/conf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

#include "cmkfs/mutex.h"

namespace cmkfs::crypto {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct KdfFree {
  void operator()(EVP_KDF* k) const { EVP_KDF_free(k); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};
struct EncoderCtxFree {
  void operator()(OSSL_ENCODER_CTX* c) const { OSSL_ENCODER_CTX_free(c); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using KdfPtr = std::unique_ptr<EVP_KDF, KdfFree>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxFree>;
using EncoderCtxPtr = std::unique_ptr<OSSL_ENCODER_CTX, EncoderCtxFree>;

// Returns the oldest queued OpenSSL error as text (usually the root cause)
// and empties the thread's error queue.
std::string DrainOpenSslErrors() {
  std::string text;
  unsigned long err = ERR_get_error();
  if (err != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    text = buf;
  }
  ERR_clear_error();
  return text;
}

// IOError for an OpenSSL call that should not fail; carries OpenSSL's reason.
Status OpenSslFailure(std::string what) {
  std::string reason = DrainOpenSslErrors();
  if (!reason.empty()) what += " (openssl: " + reason + ")";
  return IOError(std::move(what));
}

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// mlock/munlock through syscall(): the sanitizer runtimes replace the libc
// functions with no-ops that report success, which would make locked() lie.
bool LockPages(void* p, size_t n) { return syscall(SYS_mlock, p, n) == 0; }
void UnlockPages(void* p, size_t n) { syscall(SYS_munlock, p, n); }

size_t MappingSize(size_t n) {
  const size_t page = PageSize();
  return (n + page - 1) / page * page;
}

// The first failed mlock of a process is logged (once): key material then
// lives in pages the kernel may swap out.
void WarnUnlockedOnce(size_t bytes) {
  static std::atomic<bool> warned{false};
  if (warned.exchange(true)) return;
  struct rlimit lim {};
  std::string limit = "unknown";
  if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0) {
    limit = lim.rlim_cur == RLIM_INFINITY
                ? std::string("unlimited")
                : std::to_string(lim.rlim_cur / 1024) + " KiB";
  }
  spdlog::warn(
      "cannot mlock {} bytes of key memory (locked-memory limit `ulimit -l`: "
      "{}): key material may be swapped to disk; raise the limit (ulimit -l, "
      "or LimitMEMLOCK= in the systemd unit)",
      bytes, limit);
}

// OpenSSL frees many temporaries that held key bytes without wiping them
// (its DER decoders copy the whole private key into a buffer per decoder
// tried, BIO and ASN.1 buffers grow by realloc, ...). Every block OpenSSL
// allocates goes through these functions, which wipe a block before it is
// freed or moved, so no freed heap chunk keeps a private key or a DEK.
void* WipingMalloc(size_t n, const char*, int) { return std::malloc(n); }

void WipingFree(void* p, const char*, int) {
  if (p == nullptr) return;
  OPENSSL_cleanse(p, malloc_usable_size(p));
  std::free(p);
}

void* WipingRealloc(void* p, size_t n, const char* file, int line) {
  if (p == nullptr) return std::malloc(n);
  if (n == 0) {
    WipingFree(p, file, line);
    return nullptr;
  }
  const size_t old = malloc_usable_size(p);
  void* q = std::malloc(n);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, std::min(old, n));
  WipingFree(p, file, line);
  return q;
}

constexpr size_t kSecureHeapSize = size_t{1} << 20;

// Installed before main(), ahead of any OpenSSL allocation (OpenSSL refuses
// new memory functions once it has allocated).
__attribute__((constructor(101))) void InstallWipingAllocator() {
  CRYPTO_set_mem_functions(WipingMalloc, WipingRealloc, WipingFree);
}

}  // namespace

bool OpenSslFreesAreWiped() {
  CRYPTO_malloc_fn m = nullptr;
  CRYPTO_realloc_fn r = nullptr;
  CRYPTO_free_fn f = nullptr;
  CRYPTO_get_mem_functions(&m, &r, &f);
  return m == WipingMalloc && r == WipingRealloc && f == WipingFree;
}

void ProtectProcessSecrets() {
  // No core dump of this process: not by the kernel (dumpable 0), not by a
  // core_pattern pipe or a suid_dumpable setting that ignores that flag
  // (core limit 0).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit none {};
  ::setrlimit(RLIMIT_CORE, &none);
  // OpenSSL's secure heap: the numbers of private keys (BN_FLG_SECURE, as
  // the DER decoder and key generation allocate them) come from one
  // mlocked, MADV_DONTDUMP arena, wiped on free. Once per process. An RSA
  // private key takes a few KiB of it (key generation up to ~100 KiB for the
  // largest size), so the arena holds many at once.
  static std::once_flag once;
  std::call_once(once, [] {
    if (CRYPTO_secure_malloc_initialized()) return;
    const int rc = CRYPTO_secure_malloc_init(kSecureHeapSize, 16);
    if (rc == 0) {
      spdlog::warn(
          "cannot set up OpenSSL's secure heap ({} KiB): private-key numbers "
          "live in the ordinary heap (still wiped when freed)",
          kSecureHeapSize / 1024);
    } else if (rc == 2) {
      WarnUnlockedOnce(kSecureHeapSize);
    }
  });
}

Status RequireTls13ForThisProcess() {
  // "Protocol" sets SSL_OP_NO_* options, which gRPC's own
  // SSL_CTX_set_min_proto_version(TLS 1.2) does not clear; MinProtocol alone
  // would be overridden by it. The cipher string is Debian's default one,
  // which this section replaces.
  static constexpr char kSettings[] =
      "cmkfs_tls_conf = cmkfs_tls_modules\n"
      "[cmkfs_tls_modules]\n"
      "ssl_conf = cmkfs_tls_ssl\n"
      "[cmkfs_tls_ssl]\n"
      "system_default = cmkfs_tls_system_default\n"
      "[cmkfs_tls_system_default]\n"
      "Protocol = -ALL, TLSv1.3\n"
      "MinProtocol = TLSv1.3\n"
      "CipherString = DEFAULT:@SECLEVEL=2\n";
  static std::once_flag once;
  static Status result = Status::Ok();
  std::call_once(once, [] {
    // The system's configuration first, so that loading it later (OpenSSL
    // loads it once, on first use) cannot replace these settings.
    OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, nullptr);
    OPENSSL_load_builtin_modules();
    BIO* bio = BIO_new_mem_buf(kSettings, -1);
    CONF* conf = NCONF_new(nullptr);
    long bad_line = 0;
    if (bio == nullptr || conf == nullptr ||
        NCONF_load_bio(conf, bio, &bad_line) <= 0 ||
        CONF_modules_load(conf, "cmkfs_tls_conf", 0) <= 0) {
      result = OpenSslFailure("loading the TLS 1.3-only settings");
    }
    NCONF_free(conf);
    BIO_free(bio);
  });
  return result;
}

// ---------------------------------------------------------------------------
// SecretBytes: each secret has its own anonymous mapping, so locking and the
// dump/fork flags apply to the secret's pages only and never to heap pages
// shared with other data.

SecretBytes::SecretBytes(size_t n) {
  if (n == 0) return;
  const size_t mapping = MappingSize(n);
  void* p = mmap(nullptr, mapping, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  locked_ = LockPages(p, mapping);
  if (!locked_) WarnUnlockedOnce(mapping);
  // Best effort: keep secrets out of core dumps and out of forked children.
  madvise(p, mapping, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
  madvise(p, mapping, MADV_WIPEONFORK);
#endif
  data_ = static_cast<uint8_t*>(p);
  size_ = n;
}

SecretBytes::SecretBytes(const uint8_t* data, size_t n) : SecretBytes(n) {
  if (n != 0) std::memcpy(data_, data, n);
}

SecretBytes::~SecretBytes() { Wipe(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

SecretBytes SecretBytes::Clone() const { return SecretBytes(data_, size_); }

void SecretBytes::Wipe() {
  if (data_ == nullptr) return;
  const size_t mapping = MappingSize(size_);
  OPENSSL_cleanse(data_, size_);
  if (locked_) UnlockPages(data_, mapping);
  munmap(data_, mapping);
  data_ = nullptr;
  size_ = 0;
  locked_ = false;
}

void SecureWipe(void* p, size_t n) {
  if (p != nullptr && n != 0) OPENSSL_cleanse(p, n);
}

bool ConstantTimeEquals(std::span<const uint8_t> a,
                        std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---------------------------------------------------------------------------
// Randomness, hex, hashing.

namespace {

Status FillRandom(uint8_t* out, size_t n, bool for_secret) {
  while (n > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(n, INT_MAX));
    const int rc =
        for_secret ? RAND_priv_bytes(out, chunk) : RAND_bytes(out, chunk);
    if (rc != 1) return OpenSslFailure("random generator failed");
    out += chunk;
    n -= static_cast<size_t>(chunk);
  }
  return Status::Ok();
}

}  // namespace

Status RandomBytes(std::span<uint8_t> out) {
  return FillRandom(out.data(), out.size(), false);
}

Result<SecretBytes> RandomSecret(size_t n) {
  SecretBytes secret(n);
  CMKFS_RETURN_IF_ERROR(FillRandom(secret.data(), n, true));
  return secret;
}

Result<std::string> RandomHex(size_t n_bytes) {
  std::vector<uint8_t> bytes(n_bytes);
  CMKFS_RETURN_IF_ERROR(RandomBytes(bytes));
  return HexEncode(bytes);
}

std::string HexEncode(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

namespace {
int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<std::vector<uint8_t>> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return InvalidArgumentError("hex string has an odd length (" +
                                std::to_string(hex.size()) +
                                "); expected pairs of hex digits");
  }
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); ++i) {
    const int v = HexDigitValue(hex[i]);
    if (v < 0) {
      return InvalidArgumentError("invalid hex character at position " +
                                  std::to_string(i) +
                                  "; expected 0-9, a-f or A-F");
    }
    out[i / 2] = static_cast<uint8_t>(out[i / 2] << 4 | v);
  }
  return out;
}

std::vector<uint8_t> Sha256(std::span<const uint8_t> data) {
  std::vector<uint8_t> digest(32);
  unsigned int len = 0;
  static const uint8_t kEmpty = 0;
  const uint8_t* p = data.empty() ? &kEmpty : data.data();
  if (EVP_Digest(p, data.size(), digest.data(), &len, EVP_sha256(), nullptr) !=
          1 ||
      len != digest.size()) {
    // Cannot happen with the default provider loaded; never return a
    // plausible-looking digest.
    ERR_clear_error();
    return {};
  }
  return digest;
}

// ---------------------------------------------------------------------------
// AES-256-XTS.
//
// Each cipher owns a pool of pre-keyed OpenSSL context pairs (one for each
// direction, since OpenSSL keys the XTS data key schedule per direction). A
// call leases one pair, so concurrent callers never share a context; between
// sectors only the IV (the tweak) is reset, never the key. The pool belongs
// to the cipher object, so destroying the cipher frees (and, through the
// provider, wipes) every context, and a later cipher can never see one.

namespace {

constexpr size_t kMaxXtsUnit = size_t{1} << 24;  // OpenSSL: 2^20 blocks

const EVP_CIPHER* AesXts() {
  static EVP_CIPHER* const cipher =
      EVP_CIPHER_fetch(nullptr, "AES-256-XTS", nullptr);
  return cipher;
}

struct XtsContextPair {
  CipherCtxPtr enc;
  CipherCtxPtr dec;
};

}  // namespace

struct XtsCipher::Impl {
  SecretBytes key;
  Mutex mu;
  std::vector<XtsContextPair> idle GUARDED_BY(mu);

  Result<XtsContextPair> NewContexts() const {
    const EVP_CIPHER* cipher = AesXts();
    if (cipher == nullptr) {
      return OpenSslFailure("AES-256-XTS is not available in OpenSSL");
    }
    XtsContextPair pair{CipherCtxPtr(EVP_CIPHER_CTX_new()),
                        CipherCtxPtr(EVP_CIPHER_CTX_new())};
    if (!pair.enc || !pair.dec ||
        EVP_CipherInit_ex(pair.enc.get(), cipher, nullptr, key.data(), nullptr,
                          1) != 1 ||
        EVP_CipherInit_ex(pair.dec.get(), cipher, nullptr, key.data(), nullptr,
                          0) != 1) {
      return OpenSslFailure("cannot key AES-256-XTS");
    }
    return pair;
  }

  Result<XtsContextPair> Acquire() {
    {
      MutexLock lock(&mu);
      if (!idle.empty()) {
        XtsContextPair pair = std::move(idle.back());
        idle.pop_back();
        return pair;
      }
    }
    return NewContexts();
  }

  void Release(XtsContextPair pair) {
    MutexLock lock(&mu);
    idle.push_back(std::move(pair));
  }

  Status Crypt(bool encrypt, uint64_t first_unit, size_t unit_len,
               const uint8_t* in, uint8_t* out, size_t len) {
    if (len == 0) return Status::Ok();
    if (in == nullptr || out == nullptr) {
      return InvalidArgumentError("XTS input and output buffers must be set");
    }
    CMKFS_ASSIGN_OR_RETURN(XtsContextPair pair, Acquire());
    EVP_CIPHER_CTX* ctx = encrypt ? pair.enc.get() : pair.dec.get();
    uint64_t unit = first_unit;
    for (size_t off = 0; off < len; off += unit_len, ++unit) {
      uint8_t tweak[16] = {};
      for (int i = 0; i < 8; ++i) {
        tweak[i] = static_cast<uint8_t>(unit >> (8 * i));
      }
      int out_len = 0;
      if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, tweak, -1) != 1 ||
          EVP_CipherUpdate(ctx, out + off, &out_len, in + off,
                           static_cast<int>(unit_len)) != 1 ||
          out_len != static_cast<int>(unit_len)) {
        // The context is dropped (freed) rather than returned to the pool.
        return OpenSslFailure(std::string("AES-256-XTS ") +
                              (encrypt ? "encryption" : "decryption") +
                              " failed at unit " + std::to_string(unit));
      }
    }
    Release(std::move(pair));
    return Status::Ok();
  }
};

XtsCipher::XtsCipher() : impl_(std::make_unique<Impl>()) {}
XtsCipher::~XtsCipher() = default;

Result<std::unique_ptr<XtsCipher>> XtsCipher::Create(const SecretBytes& key) {
  if (key.size() != kXtsKeySize) {
    return InvalidArgumentError(
        "XTS key must be 64 bytes (two AES-256 keys), got " +
        std::to_string(key.size()));
  }
  if (CRYPTO_memcmp(key.data(), key.data() + kXtsKeySize / 2,
                    kXtsKeySize / 2) == 0) {
    return InvalidArgumentError("XTS key halves must differ");
  }
  std::unique_ptr<XtsCipher> cipher(new XtsCipher());
  cipher->impl_->key = key.Clone();
  // Key one context pair now, so that a key OpenSSL refuses fails here.
  CMKFS_ASSIGN_OR_RETURN(XtsContextPair pair, cipher->impl_->NewContexts());
  cipher->impl_->Release(std::move(pair));
  return cipher;
}

namespace {
Status CheckSectorLength(size_t len) {
  if (len % kSectorSize != 0) {
    return InvalidArgumentError("XTS sector I/O length " + std::to_string(len) +
                                " is not a multiple of " +
                                std::to_string(kSectorSize));
  }
  return Status::Ok();
}

Status CheckUnitLength(size_t len) {
  if (len < 16 || len > kMaxXtsUnit) {
    return InvalidArgumentError("XTS data unit of " + std::to_string(len) +
                                " bytes; accepted are 16 bytes to 16 MiB");
  }
  return Status::Ok();
}
}  // namespace

Status XtsCipher::EncryptSectors(uint64_t first_sector, const uint8_t* in,
                                 uint8_t* out, size_t len) const {
  CMKFS_RETURN_IF_ERROR(CheckSectorLength(len));
  return impl_->Crypt(true, first_sector, kSectorSize, in, out, len);
}

Status XtsCipher::DecryptSectors(uint64_t first_sector, const uint8_t* in,
                                 uint8_t* out, size_t len) const {
  CMKFS_RETURN_IF_ERROR(CheckSectorLength(len));
  return impl_->Crypt(false, first_sector, kSectorSize, in, out, len);
}

Status XtsCipher::EncryptUnit(uint64_t unit_number, const uint8_t* in,
                              uint8_t* out, size_t len) const {
  CMKFS_RETURN_IF_ERROR(CheckUnitLength(len));
  return impl_->Crypt(true, unit_number, len, in, out, len);
}

Status XtsCipher::DecryptUnit(uint64_t unit_number, const uint8_t* in,
                              uint8_t* out, size_t len) const {
  CMKFS_RETURN_IF_ERROR(CheckUnitLength(len));
  return impl_->Crypt(false, unit_number, len, in, out, len);
}

// ---------------------------------------------------------------------------
// AES-256-GCM sealing.

namespace {
constexpr size_t kGcmNonceSize = 12;
constexpr size_t kGcmTagSize = 16;
constexpr size_t kAeadKeySize = 32;

Status CheckAeadKey(const SecretBytes& key) {
  if (key.size() != kAeadKeySize) {
    return InvalidArgumentError("AES-256-GCM key must be 32 bytes, got " +
                                std::to_string(key.size()));
  }
  return Status::Ok();
}

bool AddAad(EVP_CIPHER_CTX* ctx, std::span<const uint8_t> aad, bool encrypt) {
  if (aad.empty()) return true;
  int len = 0;
  return (encrypt ? EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(),
                                      static_cast<int>(aad.size()))
                  : EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(),
                                      static_cast<int>(aad.size()))) == 1;
}
}  // namespace

Result<std::vector<uint8_t>> AeadSeal(const SecretBytes& key32,
                                      std::span<const uint8_t> plaintext,
                                      std::span<const uint8_t> aad) {
  CMKFS_RETURN_IF_ERROR(CheckAeadKey(key32));
  if (plaintext.size() > INT_MAX / 2 || aad.size() > INT_MAX / 2) {
    return InvalidArgumentError("AEAD input too large (limit 1 GiB)");
  }
  std::vector<uint8_t> blob(kGcmNonceSize + plaintext.size() + kGcmTagSize);
  CMKFS_RETURN_IF_ERROR(RandomBytes(std::span(blob.data(), kGcmNonceSize)));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key32.data(),
                         blob.data()) != 1 ||
      !AddAad(ctx.get(), aad, true) ||
      (!plaintext.empty() &&
       EVP_EncryptUpdate(ctx.get(), blob.data() + kGcmNonceSize, &len,
                         plaintext.data(),
                         static_cast<int>(plaintext.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx.get(), blob.data() + kGcmNonceSize + len, &len) !=
          1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagSize,
                          blob.data() + kGcmNonceSize + plaintext.size()) !=
          1) {
    return OpenSslFailure("AES-256-GCM sealing failed");
  }
  return blob;
}

Result<SecretBytes> AeadOpen(const SecretBytes& key32,
                             std::span<const uint8_t> blob,
                             std::span<const uint8_t> aad) {
  CMKFS_RETURN_IF_ERROR(CheckAeadKey(key32));
  if (blob.size() < kGcmNonceSize + kGcmTagSize) {
    return CorruptionError("sealed blob of " + std::to_string(blob.size()) +
                           " bytes is too short; a nonce and a tag alone "
                           "take 28 bytes");
  }
  if (blob.size() > INT_MAX / 2 || aad.size() > INT_MAX / 2) {
    return InvalidArgumentError("AEAD input too large (limit 1 GiB)");
  }
  const size_t ct_size = blob.size() - kGcmNonceSize - kGcmTagSize;
  const uint8_t* ct = blob.data() + kGcmNonceSize;
  uint8_t tag[kGcmTagSize];
  std::memcpy(tag, ct + ct_size, kGcmTagSize);
  SecretBytes plain(ct_size);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key32.data(),
                         blob.data()) != 1 ||
      !AddAad(ctx.get(), aad, false) ||
      (ct_size != 0 && EVP_DecryptUpdate(ctx.get(), plain.data(), &len, ct,
                                         static_cast<int>(ct_size)) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag) !=
          1) {
    return OpenSslFailure("AES-256-GCM opening failed");
  }
  uint8_t final_block[16];
  if (EVP_DecryptFinal_ex(ctx.get(), final_block, &len) != 1) {
    ERR_clear_error();
    return CorruptionError(
        "sealed blob authentication failed: wrong key, wrong associated data "
        "or damaged blob");
  }
  return plain;
}

// ---------------------------------------------------------------------------
// scrypt.

Result<SecretBytes> DeriveKeyFromPassphrase(std::string_view passphrase,
                                            std::span<const uint8_t> salt,
                                            const ScryptParams& params) {
  if (params.n < 2 || (params.n & (params.n - 1)) != 0) {
    return InvalidArgumentError("scrypt N must be a power of two >= 2, got " +
                                std::to_string(params.n));
  }
  if (params.r == 0 || params.p == 0) {
    return InvalidArgumentError("scrypt r and p must be at least 1");
  }
  if (salt.empty()) {
    return InvalidArgumentError("scrypt salt must not be empty");
  }
  // scrypt needs about 128 * r * (N + p) bytes; OpenSSL refuses more than
  // its `maxmem`, whose default (32 MiB) is below the default parameters.
  constexpr uint64_t kMaxMem = uint64_t{1} << 30;
  const long double needed = 128.0L * params.r * (params.n + params.p + 2);
  if (needed > static_cast<long double>(kMaxMem)) {
    return InvalidArgumentError(
        "scrypt parameters need more than 1 GiB of memory; lower N or r");
  }
  KdfPtr kdf(EVP_KDF_fetch(nullptr, "SCRYPT", nullptr));
  if (!kdf) return OpenSslFailure("scrypt is not available in OpenSSL");
  KdfCtxPtr kctx(EVP_KDF_CTX_new(kdf.get()));
  if (!kctx) return OpenSslFailure("cannot create scrypt context");
  uint64_t n = params.n;
  uint32_t r = params.r;
  uint32_t p = params.p;
  uint64_t maxmem = kMaxMem;
  static const char kEmpty[1] = {0};
  OSSL_PARAM ossl_params[] = {
      OSSL_PARAM_construct_octet_string(
          OSSL_KDF_PARAM_PASSWORD,
          const_cast<char*>(passphrase.empty() ? kEmpty : passphrase.data()),
          passphrase.size()),
      OSSL_PARAM_construct_octet_string(
          OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size()),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
      OSSL_PARAM_construct_end()};
  SecretBytes key(32);
  if (EVP_KDF_derive(kctx.get(), key.data(), key.size(), ossl_params) != 1) {
    return OpenSslFailure("scrypt key derivation failed");
  }
  return key;
}

// ---------------------------------------------------------------------------
// PEM inspection.

namespace {

constexpr std::string_view kEncryptedPemMessage =
    "encrypted PEM is not supported; decrypt it first (openssl pkey -in F "
    "-out G)";
constexpr std::string_view kPublicOnlyMessage =
    "PEM holds only a public key; a private key is needed";
constexpr std::string_view kNotPemMessage =
    "not a PEM private key: expected '-----BEGIN PRIVATE KEY-----' (PKCS#8) "
    "or '-----BEGIN RSA PRIVATE KEY-----' (PKCS#1)";

struct PemBlock {
  std::string label;
  std::string_view text;          // from "-----BEGIN" through the END line
  bool encrypted_header = false;  // legacy "Proc-Type: 4,ENCRYPTED"
};

std::vector<PemBlock> SplitPem(std::string_view pem) {
  constexpr std::string_view kBegin = "-----BEGIN ";
  constexpr std::string_view kDashes = "-----";
  std::vector<PemBlock> blocks;
  size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != std::string_view::npos) {
    const size_t label_start = pos + kBegin.size();
    const size_t label_end = pem.find(kDashes, label_start);
    if (label_end == std::string_view::npos) break;
    PemBlock block;
    block.label = std::string(pem.substr(label_start, label_end - label_start));
    if (block.label.find('\n') != std::string::npos) {
      pos = label_start;
      continue;
    }
    const std::string end_line = "-----END " + block.label + "-----";
    size_t end = pem.find(end_line, label_end);
    const size_t stop =
        end == std::string_view::npos ? pem.size() : end + end_line.size();
    block.text = pem.substr(pos, stop - pos);
    block.encrypted_header =
        block.text.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos;
    blocks.push_back(std::move(block));
    pos = stop;
  }
  return blocks;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

const PemBlock* FindBlock(const std::vector<PemBlock>& blocks,
                          std::string_view label_suffix) {
  for (const PemBlock& b : blocks) {
    if (EndsWith(b.label, label_suffix)) return &b;
  }
  return nullptr;
}

int RefusePassphrase(char*, int, int, void*) { return -1; }

// Decodes one unencrypted private-key PEM block (PKCS#1 or PKCS#8) of any
// key type. Never prompts for a passphrase.
PkeyPtr ReadPrivateBlock(std::string_view text) {
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) return nullptr;
  PkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, RefusePassphrase, nullptr));
  ERR_clear_error();
  return key;
}

PkeyPtr ReadPublicBlock(std::string_view text) {
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) return nullptr;
  PkeyPtr key(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, RefusePassphrase, nullptr));
  ERR_clear_error();
  return key;
}

bool IsRsa(const EVP_PKEY* key) { return EVP_PKEY_is_a(key, "RSA") == 1; }

std::string TypeName(const EVP_PKEY* key) {
  const char* name = EVP_PKEY_get0_type_name(key);
  return name != nullptr ? name : "unknown";
}

// "an EC", "a DSA": the article as the name is spelled out letter by letter.
std::string WithArticle(const std::string& name) {
  const bool vowel_sound =
      !name.empty() && std::string_view("AEFHILMNORSXaeiou").find(name[0]) !=
                           std::string_view::npos;
  return (vowel_sound ? "an " : "a ") + name;
}

Status NotRsaError(const std::string& type) {
  return InvalidArgumentError("PEM holds " + WithArticle(type) +
                              " key; only RSA private keys are supported");
}

}  // namespace

std::string DescribePem(std::string_view pem) {
  const std::vector<PemBlock> blocks = SplitPem(pem);
  if (const PemBlock* b = FindBlock(blocks, "PRIVATE KEY")) {
    if (b->label == "ENCRYPTED PRIVATE KEY" || b->encrypted_header) {
      return "encrypted private key";
    }
    if (b->label == "EC PRIVATE KEY") return "EC key";
    if (b->label == "DSA PRIVATE KEY") return "DSA key";
    if (b->label == "OPENSSH PRIVATE KEY") return "OpenSSH-format private key";
    if (b->label != "PRIVATE KEY" && b->label != "RSA PRIVATE KEY") {
      return "unsupported '" + b->label + "' block";
    }
    PkeyPtr key = ReadPrivateBlock(b->text);
    if (!key) return "damaged private key";
    if (!IsRsa(key.get())) return TypeName(key.get()) + " key";
    return "RSA " + std::to_string(EVP_PKEY_get_bits(key.get())) +
           "-bit private key";
  }
  if (const PemBlock* b = FindBlock(blocks, "PUBLIC KEY")) {
    if (b->label == "PUBLIC KEY") {
      PkeyPtr key = ReadPublicBlock(b->text);
      if (key && IsRsa(key.get())) {
        return "RSA " + std::to_string(EVP_PKEY_get_bits(key.get())) +
               "-bit public key";
      }
      if (key) return TypeName(key.get()) + " public key";
    }
    return "public key";
  }
  if (FindBlock(blocks, "CERTIFICATE") != nullptr) {
    return "certificate (a public key only)";
  }
  return "not a PEM key";
}

// ---------------------------------------------------------------------------
// RsaKey.

namespace {
EVP_PKEY* AsPkey(void* p) { return static_cast<EVP_PKEY*>(p); }

const EVP_MD* OaepDigest(OaepHash hash) {
  return hash == OaepHash::kSha1 ? EVP_sha1() : EVP_sha256();
}

size_t OaepDigestSize(OaepHash hash) {
  return hash == OaepHash::kSha1 ? 20 : 32;
}

// Configures `ctx` (after *_init) for RSA-OAEP with `hash` as OAEP and MGF1
// digest and `label` as the OAEP label.
bool SetOaep(EVP_PKEY_CTX* ctx, OaepHash hash, std::span<const uint8_t> label) {
  if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx, OaepDigest(hash)) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, OaepDigest(hash)) <= 0) {
    return false;
  }
  if (label.empty()) return true;
  // OpenSSL takes ownership of the label on success.
  void* copy = OPENSSL_memdup(label.data(), label.size());
  if (copy == nullptr) return false;
  if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy,
                                       static_cast<int>(label.size())) <= 0) {
    OPENSSL_free(copy);
    return false;
  }
  return true;
}

Result<PkeyPtr> RequireRsa(PkeyPtr key, std::string_view what) {
  if (!IsRsa(key.get())) {
    return InvalidArgumentError(std::string(what) + " holds " +
                                WithArticle(TypeName(key.get())) +
                                " key; only RSA keys are supported");
  }
  return key;
}
}  // namespace

RsaKey::RsaKey() = default;

RsaKey::RsaKey(void* pkey, bool has_private)
    : pkey_(pkey), has_private_(has_private) {}

RsaKey::~RsaKey() { EVP_PKEY_free(AsPkey(pkey_)); }

RsaKey::RsaKey(RsaKey&& other) noexcept
    : pkey_(std::exchange(other.pkey_, nullptr)),
      has_private_(std::exchange(other.has_private_, false)) {}

RsaKey& RsaKey::operator=(RsaKey&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(AsPkey(pkey_));
    pkey_ = std::exchange(other.pkey_, nullptr);
    has_private_ = std::exchange(other.has_private_, false);
  }
  return *this;
}

Result<RsaKey> RsaKey::Generate(int bits) {
  if (bits < 1024 || bits > 16384) {
    return InvalidArgumentError("RSA key size " + std::to_string(bits) +
                                " bits is out of range; 1024 to 16384");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) <= 0 ||
      EVP_PKEY_generate(ctx.get(), &raw) <= 0) {
    return OpenSslFailure("RSA key generation failed");
  }
  return RsaKey(raw, true);
}

Result<RsaKey> RsaKey::FromPrivatePem(std::string_view pem) {
  const std::vector<PemBlock> blocks = SplitPem(pem);
  const PemBlock* block = FindBlock(blocks, "PRIVATE KEY");
  if (block == nullptr) {
    if (FindBlock(blocks, "PUBLIC KEY") != nullptr ||
        FindBlock(blocks, "CERTIFICATE") != nullptr) {
      return InvalidArgumentError(std::string(kPublicOnlyMessage));
    }
    return InvalidArgumentError(std::string(kNotPemMessage));
  }
  if (block->label == "ENCRYPTED PRIVATE KEY" || block->encrypted_header) {
    return InvalidArgumentError(std::string(kEncryptedPemMessage));
  }
  if (block->label == "EC PRIVATE KEY") return NotRsaError("EC");
  if (block->label == "DSA PRIVATE KEY") return NotRsaError("DSA");
  if (block->label == "OPENSSH PRIVATE KEY") {
    return InvalidArgumentError(
        "PEM holds an OpenSSH-format key; convert it first (ssh-keygen -p -m "
        "PEM -f F)");
  }
  if (block->label != "PRIVATE KEY" && block->label != "RSA PRIVATE KEY") {
    return InvalidArgumentError(std::string(kNotPemMessage) + "; found '" +
                                block->label + "'");
  }
  PkeyPtr key = ReadPrivateBlock(block->text);
  if (!key) {
    return InvalidArgumentError("not a PEM private key: the '" + block->label +
                                "' block is damaged (bad base64 or DER)");
  }
  if (!IsRsa(key.get())) return NotRsaError(TypeName(key.get()));
  return RsaKey(key.release(), true);
}

Result<RsaKey> RsaKey::FromPrivateDer(std::span<const uint8_t> der) {
  if (der.empty() || der.size() > INT_MAX) {
    return InvalidArgumentError("not a PKCS#8 DER private key: empty");
  }
  const unsigned char* p = der.data();
  PkeyPtr key(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  if (!key || p != der.data() + der.size()) {
    ERR_clear_error();
    return InvalidArgumentError("not a PKCS#8 DER private key: cannot decode " +
                                std::to_string(der.size()) + " bytes");
  }
  ERR_clear_error();
  CMKFS_ASSIGN_OR_RETURN(key, RequireRsa(std::move(key), "private key DER"));
  return RsaKey(key.release(), true);
}

Result<RsaKey> RsaKey::FromPublicDer(std::span<const uint8_t> der) {
  if (der.empty() || der.size() > INT_MAX) {
    return InvalidArgumentError("not a SubjectPublicKeyInfo DER key: empty");
  }
  const unsigned char* p = der.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key || p != der.data() + der.size()) {
    ERR_clear_error();
    return InvalidArgumentError(
        "not a SubjectPublicKeyInfo DER key: cannot decode " +
        std::to_string(der.size()) + " bytes");
  }
  ERR_clear_error();
  CMKFS_ASSIGN_OR_RETURN(key, RequireRsa(std::move(key), "public key DER"));
  return RsaKey(key.release(), false);
}

bool RsaKey::valid() const { return pkey_ != nullptr; }

bool RsaKey::has_private() const { return pkey_ != nullptr && has_private_; }

int RsaKey::bits() const {
  return pkey_ == nullptr ? 0 : EVP_PKEY_get_bits(AsPkey(pkey_));
}

Result<SecretBytes> RsaKey::PrivateDer() const {
  if (!has_private()) {
    return FailedPreconditionError("RSA key has no private part to export");
  }
  EncoderCtxPtr ctx(
      OSSL_ENCODER_CTX_new_for_pkey(AsPkey(pkey_), OSSL_KEYMGMT_SELECT_KEYPAIR,
                                    "DER", "PrivateKeyInfo", nullptr));
  unsigned char* buf = nullptr;
  size_t len = 0;
  if (!ctx || OSSL_ENCODER_CTX_get_num_encoders(ctx.get()) == 0 ||
      OSSL_ENCODER_to_data(ctx.get(), &buf, &len) != 1) {
    return OpenSslFailure("cannot encode the RSA private key as PKCS#8");
  }
  SecretBytes der(buf, len);
  OPENSSL_clear_free(buf, len);
  return der;
}

Result<std::vector<uint8_t>> RsaKey::PublicDer() const {
  if (!valid()) return FailedPreconditionError("RSA key is empty");
  const int len = i2d_PUBKEY(AsPkey(pkey_), nullptr);
  if (len <= 0) return OpenSslFailure("cannot encode the RSA public key");
  std::vector<uint8_t> der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  if (i2d_PUBKEY(AsPkey(pkey_), &p) != len) {
    return OpenSslFailure("cannot encode the RSA public key");
  }
  return der;
}

Result<std::string> RsaKey::PublicPem() const {
  if (!valid()) return FailedPreconditionError("RSA key is empty");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), AsPkey(pkey_)) != 1) {
    return OpenSslFailure("cannot write the RSA public key as PEM");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<std::vector<uint8_t>> RsaKey::Wrap(std::span<const uint8_t> plaintext,
                                          std::span<const uint8_t> label,
                                          OaepHash hash) const {
  if (!valid()) return FailedPreconditionError("RSA key is empty");
  const size_t modulus = static_cast<size_t>(EVP_PKEY_get_size(AsPkey(pkey_)));
  const size_t overhead = 2 * OaepDigestSize(hash) + 2;
  if (modulus <= overhead || plaintext.size() > modulus - overhead) {
    return InvalidArgumentError(
        "RSA-OAEP plaintext of " + std::to_string(plaintext.size()) +
        " bytes is too long for a " + std::to_string(bits()) +
        "-bit key; at most " +
        std::to_string(modulus > overhead ? modulus - overhead : 0));
  }
  if (label.size() > INT_MAX) {
    return InvalidArgumentError("RSA-OAEP label too long");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, AsPkey(pkey_), nullptr));
  size_t out_len = 0;
  static const uint8_t kEmpty = 0;
  const uint8_t* in = plaintext.empty() ? &kEmpty : plaintext.data();
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0 ||
      !SetOaep(ctx.get(), hash, label) ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &out_len, in, plaintext.size()) <=
          0) {
    return OpenSslFailure("RSA-OAEP wrap failed");
  }
  std::vector<uint8_t> out(out_len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &out_len, in, plaintext.size()) <=
      0) {
    return OpenSslFailure("RSA-OAEP wrap failed");
  }
  out.resize(out_len);
  return out;
}

Result<SecretBytes> RsaKey::Unwrap(std::span<const uint8_t> blob,
                                   std::span<const uint8_t> label,
                                   OaepHash hash) const {
  if (!has_private()) {
    return FailedPreconditionError(
        "RSA key has no private part; unwrapping needs the private key");
  }
  if (label.size() > INT_MAX) {
    return InvalidArgumentError("RSA-OAEP label too long");
  }
  const Status failed =
      CorruptionError("unwrap failed: wrong key, wrong label or damaged blob");
  if (blob.empty()) return failed;
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, AsPkey(pkey_), nullptr));
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) <= 0 ||
      !SetOaep(ctx.get(), hash, label)) {
    return OpenSslFailure("RSA-OAEP unwrap setup failed");
  }
  // The plaintext is never longer than the modulus.
  SecretBytes buffer(static_cast<size_t>(EVP_PKEY_get_size(AsPkey(pkey_))));
  size_t out_len = buffer.size();
  if (EVP_PKEY_decrypt(ctx.get(), buffer.data(), &out_len, blob.data(),
                       blob.size()) <= 0) {
    ERR_clear_error();
    return failed;
  }
  if (out_len == buffer.size()) return buffer;
  return SecretBytes(buffer.data(), out_len);
}

Result<RsaKey> RsaKey::FromPublicComponents(
    std::span<const uint8_t> modulus,
    std::span<const uint8_t> public_exponent) {
  if (modulus.empty() || modulus.size() > 2048 || public_exponent.empty() ||
      public_exponent.size() > 8) {
    return InvalidArgumentError(
        "not an RSA public key: modulus of " + std::to_string(modulus.size()) +
        " bytes, exponent of " + std::to_string(public_exponent.size()) +
        " bytes");
  }
  std::unique_ptr<BIGNUM, decltype(&BN_free)> n(
      BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr),
      &BN_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> e(
      BN_bin2bn(public_exponent.data(),
                static_cast<int>(public_exponent.size()), nullptr),
      &BN_free);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(
      OSSL_PARAM_BLD_new(), &OSSL_PARAM_BLD_free);
  if (!n || !e || !bld ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get())) {
    return OpenSslFailure("cannot build RSA public key parameters");
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
      OSSL_PARAM_BLD_to_param(bld.get()), &OSSL_PARAM_free);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <=
          0) {
    return OpenSslFailure("cannot build an RSA public key from its numbers");
  }
  RsaKey key(raw, false);
  if (key.bits() < 1024 || BN_is_odd(n.get()) == 0 || BN_is_odd(e.get()) == 0) {
    return InvalidArgumentError(
        "not a usable RSA public key: " + std::to_string(key.bits()) +
        "-bit modulus or even exponent");
  }
  return key;
}

Result<RsaPrivateComponents> RsaKey::PrivateComponents() const {
  if (!has_private()) {
    return FailedPreconditionError("RSA key has no private part to export");
  }
  auto number = [&](const char* name, std::vector<uint8_t>* out_public,
                    SecretBytes* out_secret) -> bool {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(AsPkey(pkey_), name, &bn) != 1 || bn == nullptr) {
      return false;
    }
    const size_t len = static_cast<size_t>(BN_num_bytes(bn));
    bool ok = len > 0;
    if (ok && out_public != nullptr) {
      out_public->assign(len, 0);
      ok = BN_bn2bin(bn, out_public->data()) == static_cast<int>(len);
    } else if (ok) {
      *out_secret = SecretBytes(len);
      ok = BN_bn2bin(bn, out_secret->data()) == static_cast<int>(len);
    }
    BN_clear_free(bn);
    return ok;
  };
  RsaPrivateComponents c;
  if (!number(OSSL_PKEY_PARAM_RSA_N, &c.modulus, nullptr) ||
      !number(OSSL_PKEY_PARAM_RSA_E, &c.public_exponent, nullptr) ||
      !number(OSSL_PKEY_PARAM_RSA_D, nullptr, &c.private_exponent) ||
      !number(OSSL_PKEY_PARAM_RSA_FACTOR1, nullptr, &c.prime1) ||
      !number(OSSL_PKEY_PARAM_RSA_FACTOR2, nullptr, &c.prime2) ||
      !number(OSSL_PKEY_PARAM_RSA_EXPONENT1, nullptr, &c.exponent1) ||
      !number(OSSL_PKEY_PARAM_RSA_EXPONENT2, nullptr, &c.exponent2) ||
      !number(OSSL_PKEY_PARAM_RSA_COEFFICIENT1, nullptr, &c.coefficient)) {
    ERR_clear_error();
    return FailedPreconditionError(
        "RSA key lacks its CRT parameters (p, q, dP, dQ, qInv)");
  }
  return c;
}

Result<SecretBytes> OaepDecode(std::span<const uint8_t> encoded,
                               size_t modulus_bytes,
                               std::span<const uint8_t> label, OaepHash hash) {
  const Status failed =
      CorruptionError("unwrap failed: wrong key, wrong label or damaged blob");
  if (encoded.empty() || encoded.size() > modulus_bytes ||
      modulus_bytes > 2048 || label.size() > INT_MAX) {
    return failed;
  }
  SecretBytes out(modulus_bytes);
  // The OAEP check itself has no EVP replacement; the deprecated function
  // is OpenSSL's constant-time implementation.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const int n = RSA_padding_check_PKCS1_OAEP_mgf1(
      out.data(), static_cast<int>(out.size()), encoded.data(),
      static_cast<int>(encoded.size()), static_cast<int>(modulus_bytes),
      label.data(), static_cast<int>(label.size()), OaepDigest(hash),
      OaepDigest(hash));
#pragma GCC diagnostic pop
  ERR_clear_error();
  if (n < 0) return failed;
  return SecretBytes(out.data(), static_cast<size_t>(n));
}

}  // namespace cmkfs::crypto
