// Fixed keys shared by the wrapped-key fuzz target and the seed generator,
// so the committed seeds are valid blobs for the target.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "cmkfs/crypto.h"

namespace cmkfs::fuzz {

// The engine's wrap label is "cmkfs-dek:" + the resource uuid.
inline constexpr char kDekLabel[] =
    "cmkfs-dek:00000000-0000-4000-8000-000000000000";
inline constexpr char kKeyId[] =
    "cmk://fuzzvault/keys/fuzzkey/0123456789abcdef";

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::abort();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A committed RSA-2048 test key (tests/core/testdata).
inline crypto::RsaKey FixtureRsaKey() {
  auto key = crypto::RsaKey::FromPrivatePem(
      ReadFileOrDie(std::string(CMKFS_SOURCE_DIR) +
                    "/tests/core/testdata/rsa2048_pkcs8.pem"));
  if (!key.ok()) std::abort();
  return std::move(*key);
}

inline crypto::SecretBytes FixtureMasterKey() {
  crypto::SecretBytes key(32);
  for (size_t i = 0; i < key.size(); ++i) key.data()[i] = uint8_t(0x40 + i);
  return key;
}

}  // namespace cmkfs::fuzz
