// The vault master key: key file rules, passphrase mode, wrong key.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::TempDir;

KeyStoreOptions FileOptions(const TempDir& tmp) {
  KeyStoreOptions o;
  o.dir = tmp.path() / "vault";
  o.master_key_file = tmp.path() / "vault.key";
  return o;
}

void WriteFile(const std::filesystem::path& p, std::string_view data,
               mode_t mode) {
  std::ofstream(p, std::ios::binary) << data;
  ::chmod(p.c_str(), mode);
}

TEST(MasterKeyTest, KeyFileIsCreated0600With32Bytes) {
  TempDir tmp;
  auto o = FileOptions(tmp);
  auto ks = OpenKeyStore(o);
  ASSERT_TRUE(ks.ok()) << ks.status().ToString();
  struct stat st {};
  ASSERT_EQ(::stat(o.master_key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  ks->reset();
  // Reopens with the same file.
  EXPECT_TRUE(OpenKeyStore(o).ok());
}

TEST(MasterKeyTest, WrongMasterKeyIsAClearError) {
  TempDir tmp;
  auto o = FileOptions(tmp);
  {
    auto ks = OpenKeyStore(o);
    ASSERT_TRUE(ks.ok());
    VaultSpec spec;
    spec.name = "vault1";
    ASSERT_TRUE((*ks)->CreateVault(spec).ok());
  }
  o.master_key_file = tmp.path() / "other.key";
  auto wrong = OpenKeyStore(o);
  ASSERT_EQ(wrong.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(),
            "wrong vault master key for " + o.dir.string() +
                ": it does not match the key this vault was created with");
}

TEST(MasterKeyTest, RefusesKeyFileWithGroupOrOtherAccess) {
  TempDir tmp;
  auto o = FileOptions(tmp);
  WriteFile(o.master_key_file, std::string(32, 'k'), 0640);
  auto r = OpenKeyStore(o);
  ASSERT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(r.status().message().find("has mode 0640"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("chmod 600"), std::string::npos);
  ::chmod(o.master_key_file.c_str(), 0604);
  EXPECT_EQ(OpenKeyStore(o).status().kind(), ErrorKind::kInvalidArgument);
  ::chmod(o.master_key_file.c_str(), 0600);
  EXPECT_TRUE(OpenKeyStore(o).ok());
}

TEST(MasterKeyTest, RefusesKeyFileOfWrongLength) {
  TempDir tmp;
  auto o = FileOptions(tmp);
  for (size_t n : {0, 16, 31, 33, 64}) {
    WriteFile(o.master_key_file, std::string(n, 'k'), 0600);
    auto r = OpenKeyStore(o);
    ASSERT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << n;
    EXPECT_NE(r.status().message().find("holds " + std::to_string(n) +
                                        " bytes; a vault master key file "
                                        "holds exactly 32 random bytes"),
              std::string::npos)
        << r.status().message();
  }
}

TEST(MasterKeyTest, NeedsAKeySource) {
  TempDir tmp;
  KeyStoreOptions o;
  o.dir = tmp.path() / "vault";
  auto r = OpenKeyStore(o);
  EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(r.status().message().find("master_key_file"), std::string::npos);
}

TEST(MasterKeyTest, PassphraseThroughScrypt) {
  TempDir tmp;
  KeyStoreOptions o;
  o.dir = tmp.path() / "vault";
  o.passphrase_file = tmp.path() / "pass";
  WriteFile(o.passphrase_file, "correct horse battery staple\n", 0600);
  {
    auto ks = OpenKeyStore(o);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    VaultSpec spec;
    spec.name = "vault1";
    ASSERT_TRUE((*ks)->CreateVault(spec).ok());
    ASSERT_TRUE((*ks)
                    ->ImportKey("", "vault1", "k", testing::Pem("rsa2048"),
                                KeyType::kRsa)
                    .ok());
  }
  {
    auto ks = OpenKeyStore(o);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    auto key = (*ks)->GetKeyVersion("", KeyId{"vault1", "k", ""});
    ASSERT_TRUE(key.ok());
    std::vector<uint8_t> dek(32, 1);
    auto blob = (*ks)->WrapKey("", key->id, dek, {});
    EXPECT_TRUE((*ks)->UnwrapKey("", key->id, *blob, {}).ok());
  }
  WriteFile(o.passphrase_file, "wrong horse\n", 0600);
  auto wrong = OpenKeyStore(o);
  EXPECT_EQ(wrong.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("wrong vault master key"),
            std::string::npos);
  // A key file does not open a passphrase vault either.
  KeyStoreOptions with_file = o;
  with_file.passphrase_file.clear();
  with_file.master_key_file = tmp.path() / "vault.key";
  EXPECT_EQ(OpenKeyStore(with_file).status().kind(),
            ErrorKind::kInvalidArgument);

  WriteFile(o.passphrase_file, "correct horse battery staple\n", 0644);
  EXPECT_EQ(OpenKeyStore(o).status().kind(), ErrorKind::kInvalidArgument);
  // Issue 14 item 9: a passphrase file of another user is refused too.
  if (::geteuid() == 0) {
    WriteFile(o.passphrase_file, "correct horse battery staple\n", 0600);
    ASSERT_EQ(::chown(o.passphrase_file.c_str(), 65534, 65534), 0);
    auto foreign = OpenKeyStore(o);
    EXPECT_EQ(foreign.status().kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(foreign.status().message().find(
                  "passphrase file " + o.passphrase_file.string() +
                  " (owner uid 65534, mode 0600) must be owned by root"),
              std::string::npos)
        << foreign.status().message();
    ASSERT_EQ(::chown(o.passphrase_file.c_str(), 0, 0), 0);
  }
  // Bounded: more than 4 KiB is not a passphrase.
  WriteFile(o.passphrase_file, std::string(5000, 'p'), 0600);
  auto huge = OpenKeyStore(o);
  EXPECT_EQ(huge.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(huge.status().message().find("is larger than the limit of 4 KiB"),
            std::string::npos)
      << huge.status().message();
  WriteFile(o.passphrase_file, "\n", 0600);
  auto empty = OpenKeyStore(o);
  EXPECT_EQ(empty.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::keystore
