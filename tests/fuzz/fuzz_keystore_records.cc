// Fuzzes every LMDB record decoder of the keystore (keystore/records.h):
// vault, key, version, audit, and the meta records kdf, format and counter.
// The first byte selects the decoder, the rest is the stored value. Invariants:
// no crash or sanitizer report, failures are Corruption, and a decoded record
// re-encodes canonically (Encode(Decode(Encode(Decode(x)))) ==
// Encode(Decode(x))).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "records.h"

namespace ks = cmkfs::keystore;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0:
      RoundTrip(value, ks::DecodeVault, ks::EncodeVault);
      break;
    case 1:
      RoundTrip(value, ks::DecodeKey, ks::EncodeKey);
      break;
    case 2:
      RoundTrip(value, ks::DecodeVersion, ks::EncodeVersion);
      break;
    case 3:
      RoundTrip(value, ks::DecodeAudit, ks::EncodeAudit);
      break;
    case 4:
      RoundTrip(value, ks::DecodeKdf, [](const ks::KdfRecord& k) {
        FUZZ_CHECK(!k.salt.empty(), "kdf record decoded with an empty salt");
        return ks::EncodeKdf(k);
      });
      break;
    case 5:
      RoundTrip(value, ks::DecodeFormat, ks::EncodeFormat);
      break;
    case 6:
      RoundTrip(value, ks::DecodeCounter, ks::EncodeCounter);
      break;
  }
  return 0;
}
