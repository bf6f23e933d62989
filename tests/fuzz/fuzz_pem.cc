// Fuzzes key import: PEM (key import --pem), and the DER forms the vault
// stores (PKCS#8 private keys inside sealed material, SubjectPublicKeyInfo
// public keys). The first byte selects the decoder. Invariants: no crash or
// sanitizer report, refusals are InvalidArgument (Corruption for stored
// DER), DescribePem never fails, and an accepted key is usable.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "cmkfs/crypto.h"
#include "fuzz_check.h"

namespace crypto = cmkfs::crypto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::span<const uint8_t> body(data + 1, size - 1);
  std::string_view text(reinterpret_cast<const char*>(body.data()),
                        body.size());
  switch (data[0] % 3) {
    case 0: {
      auto key = crypto::RsaKey::FromPrivatePem(text);
      FuzzReport(key.ok());
      FUZZ_CHECK(!crypto::DescribePem(text).empty(), "empty PEM description");
      if (key.ok()) {
        FUZZ_CHECK(key->valid() && key->has_private(), "unusable key");
        FUZZ_CHECK(key->bits() >= 512, "implausible key size");
      } else {
        FUZZ_CHECK(key.status().kind() == cmkfs::ErrorKind::kInvalidArgument,
                   "PEM import failed with a kind other than InvalidArgument");
        FUZZ_CHECK(key.status().message().find('\n') == std::string::npos,
                   "multi-line error");
      }
      break;
    }
    case 1: {
      auto key = crypto::RsaKey::FromPrivateDer(body);
      FuzzReport(key.ok());
      if (key.ok()) {
        auto der = key->PrivateDer();
        FUZZ_CHECK(der.ok(), "accepted private DER does not re-export");
      }
      break;
    }
    case 2: {
      auto key = crypto::RsaKey::FromPublicDer(body);
      FuzzReport(key.ok());
      if (key.ok()) {
        FUZZ_CHECK(!key->has_private(), "public DER yielded a private key");
        auto der = key->PublicDer();
        FUZZ_CHECK(der.ok(), "accepted public DER does not re-export");
      }
      break;
    }
  }
  return 0;
}
