// Fuzzes the decoders of wrapped key blobs: the RSA-OAEP wrapped DEK stored in
// each engine resource record (unwrapped through the software key backend, as
// the keystore does), and the vault's sealed private-key material (AES-GCM
// blob holding PKCS#8 DER). The first byte selects the blob. Invariants: no
// crash or sanitizer report, tampered blobs fail with Corruption, and a blob
// that unwraps yields a DEK of the size that was wrapped (64 bytes) or less.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "cmkfs/crypto.h"
#include "fuzz_check.h"
#include "fuzz_fixture.h"
#include "key_backend.h"

namespace crypto = cmkfs::crypto;
namespace ks = cmkfs::keystore;

namespace {

struct Fixture {
  crypto::SecretBytes master = cmkfs::fuzz::FixtureMasterKey();
  std::unique_ptr<ks::KeyBackend> backend =
      cmkfs::fuzz::FixtureSoftwareBackend();
  ks::StoredKey stored;
  std::vector<uint8_t> good_blob;
  Fixture() {
    auto key = cmkfs::fuzz::FixtureRsaKey();
    auto s = ks::StoredPublicPart(key);
    if (!s.ok()) std::abort();
    stored = std::move(*s);
    stored.material = cmkfs::fuzz::FixtureSealedMaterial();
    std::vector<uint8_t> dek(64, 0x5a);
    auto blob = key.Wrap(dek, Label());
    if (!blob.ok()) std::abort();
    good_blob = std::move(*blob);
  }
  static std::span<const uint8_t> Label() {
    return {reinterpret_cast<const uint8_t*>(cmkfs::fuzz::kDekLabel),
            sizeof(cmkfs::fuzz::kDekLabel) - 1};
  }
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

void ExpectCorruptionOrSmallSecret(const cmkfs::Result<crypto::SecretBytes>& r,
                                   const char* what) {
  if (r.ok()) {
    FUZZ_CHECK(r->size() <= 64, what);
  } else {
    FUZZ_CHECK(r.status().kind() == cmkfs::ErrorKind::kCorruption ||
                   r.status().kind() == cmkfs::ErrorKind::kInvalidArgument,
               what);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Fixture& f = F();
  std::span<const uint8_t> body(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {  // wrapped DEK from a resource record
      auto dek = f.backend->Unwrap(f.stored, cmkfs::fuzz::kKeyId, body,
                                   Fixture::Label(), crypto::OaepHash::kSha256);
      FuzzReport(dek.ok());
      ExpectCorruptionOrSmallSecret(dek, "wrapped DEK decoder");
      break;
    }
    case 1: {  // sealed private key material from a key version record
      ks::StoredKey tampered = f.stored;
      tampered.material.assign(body.begin(), body.end());
      auto dek = f.backend->Unwrap(tampered, cmkfs::fuzz::kKeyId, f.good_blob,
                                   Fixture::Label(), crypto::OaepHash::kSha256);
      FuzzReport(dek.ok());
      if (dek.ok()) {
        FUZZ_CHECK(dek->size() == 64, "sealed material yielded a wrong DEK");
      } else {
        FUZZ_CHECK(dek.status().kind() == cmkfs::ErrorKind::kCorruption,
                   "sealed material failed with a kind other than Corruption");
      }
      break;
    }
    case 2: {  // the AES-GCM blob format itself
      auto opened = crypto::AeadOpen(
          f.master, body,
          std::span<const uint8_t>(
              reinterpret_cast<const uint8_t*>(cmkfs::fuzz::kKeyId),
              sizeof(cmkfs::fuzz::kKeyId) - 1));
      FuzzReport(opened.ok());
      if (!opened.ok()) {
        FUZZ_CHECK(
            opened.status().kind() == cmkfs::ErrorKind::kCorruption ||
                opened.status().kind() == cmkfs::ErrorKind::kInvalidArgument,
            "AEAD open failed with an unexpected kind");
      }
      break;
    }
  }
  return 0;
}
