// Private keys at rest are never plaintext: scan every file of the vault
// directory for the PKCS#8 DER of imported keys and for chunks of it.
#include <gtest/gtest.h>

#include <algorithm>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::Pkcs8Der;
using testing::ReadFileBytes;
using testing::TestKeyStore;

bool Contains(const std::vector<uint8_t>& hay,
              std::span<const uint8_t> needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) !=
         hay.end();
}

// The whole DER and 64-byte windows across it (the private exponent and the
// primes make up most of a PKCS#8 RSA key after the first ~300 bytes).
std::vector<std::span<const uint8_t>> Needles(const std::vector<uint8_t>& der) {
  std::vector<std::span<const uint8_t>> out{der};
  for (size_t off = 300; off + 64 <= der.size(); off += 100) {
    out.push_back(std::span(der).subspan(off, 64));
  }
  return out;
}

size_t CountHits(const std::filesystem::path& dir,
                 const std::vector<uint8_t>& der) {
  size_t hits = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    auto bytes = ReadFileBytes(entry.path());
    for (auto needle : Needles(der)) {
      if (Contains(bytes, needle)) {
        ADD_FAILURE() << "private key bytes found in " << entry.path();
        ++hits;
      }
    }
  }
  return hits;
}

TEST(AtRestTest, NoPrivateKeyInPlaintextInTheVaultFiles) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  const std::vector<uint8_t>& der_a = Pkcs8Der("rsa2048");
  const std::vector<uint8_t>& der_b = Pkcs8Der("rsa2048-pkcs1");
  ASSERT_GT(der_a.size(), 1100u);
  ks.ImportKey("vault1", "a", "rsa2048");
  ks.ImportKey("vault1", "b", "rsa2048-pkcs1");
  ks.ImportKey("vault1", "a", "rsa2048-pkcs1");  // a second version
  ASSERT_TRUE(ks->CreateKey("", "vault1", "c", KeyType::kRsa, 2048).ok());
  // Use the keys so any cached state would have been written.
  auto v = ks->GetKeyVersion("", KeyId{"vault1", "a", ""});
  std::vector<uint8_t> dek(32, 1);
  auto blob = ks->WrapKey("", v->id, dek, {});
  ASSERT_TRUE(ks->UnwrapKey("", v->id, *blob, {}).ok());
  ks.Close();  // flush and release everything

  size_t files = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(ks.dir())) {
    files += e.is_regular_file();
  }
  EXPECT_GE(files, 2u);  // data.mdb, lock.mdb
  EXPECT_EQ(CountHits(ks.dir(), der_a), 0u);
  EXPECT_EQ(CountHits(ks.dir(), der_b), 0u);
}

TEST(AtRestTest, ScannerFindsPlaintextKeysWhenPresent) {
  // The scan above can fail: a file holding the DER is found.
  testing::TempDir tmp;
  const std::vector<uint8_t>& der = Pkcs8Der("rsa2048");
  {
    std::vector<uint8_t> file(4096, 0);
    file.insert(file.begin() + 1000, der.begin() + 400, der.begin() + 464);
    FILE* f = std::fopen((tmp.path() / "leak").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(file.data(), 1, file.size(), f);
    std::fclose(f);
  }
  auto bytes = ReadFileBytes(tmp.path() / "leak");
  size_t found = 0;
  for (auto needle : Needles(der)) found += Contains(bytes, needle);
  EXPECT_EQ(found, 1u);
}

}  // namespace
}  // namespace cmkfs::keystore
