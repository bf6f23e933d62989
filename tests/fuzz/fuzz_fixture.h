// Fixed keys shared by the wrapped-key fuzz target and the seed generator,
// so the committed seeds are valid blobs for the target.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cmkfs/crypto.h"
#include "key_backend.h"

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

inline crypto::SecretBytes FixtureSlotSecret() {
  crypto::SecretBytes secret(EraseSlotFile::kSecretSize);
  for (size_t i = 0; i < secret.size(); ++i) {
    secret.data()[i] = uint8_t(0x80 + i);
  }
  return secret;
}

// A software backend whose erase slot 0 holds FixtureSlotSecret(). The slot
// file is unlinked at once (the backend keeps it open): nothing is left in
// /tmp.
inline std::unique_ptr<keystore::KeyBackend> FixtureSoftwareBackend() {
  char dir[] = "/tmp/cmkfs-fuzz-XXXXXX";
  if (::mkdtemp(dir) == nullptr) std::abort();
  const std::string path = std::string(dir) + "/erase-slots";
  {
    std::ofstream out(path, std::ios::binary);
    crypto::SecretBytes secret = FixtureSlotSecret();
    out.write(reinterpret_cast<const char*>(secret.data()),
              static_cast<std::streamsize>(secret.size()));
    if (!out) std::abort();
  }
  ::chmod(path.c_str(), 0600);
  auto slots = EraseSlotFile::Open(path);
  ::unlink(path.c_str());
  ::rmdir(dir);
  if (!slots.ok()) std::abort();
  return keystore::NewSoftwareKeyBackend(FixtureMasterKey(), std::move(*slots));
}

// The fixture key sealed as a software key in slot 0 of the backend above.
inline std::vector<uint8_t> FixtureSealedMaterial() {
  auto der = FixtureRsaKey().PrivateDer();
  if (!der.ok()) std::abort();
  auto material = keystore::SealSoftwareKey(
      FixtureMasterKey(), 0, FixtureSlotSecret(), der->span(), kKeyId);
  if (!material.ok()) std::abort();
  return std::move(*material);
}

}  // namespace cmkfs::fuzz
