// Record encoding of the keystore databases: round trips, and Corruption (not
// a crash) for every truncation and for unknown versions or enum values.
#include "records.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "cmkfs/lmdb.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

VaultRecord SampleVault() {
  VaultRecord v;
  v.info.spec.name = "vault1";
  v.info.spec.sku = VaultSku::kPremium;
  v.info.spec.purge_protection = true;
  v.info.spec.retention_days = 30;
  v.info.admin_identity = "admin-id";
  v.info.created = TimePoint(std::chrono::seconds(1700000000));
  v.info.policies = {{"a", 3}, {"b", kAllPermissions}};
  return v;
}

KeyRecord SampleKey() {
  KeyRecord k;
  k.bits = 3072;
  k.deleted = true;
  k.deleted_at = TimePoint(std::chrono::seconds(5));
  k.scheduled_purge = TimePoint(std::chrono::seconds(6));
  k.rotation_policy.rotate_after = std::chrono::milliseconds(1000);
  k.rotation_policy.expires_in = std::chrono::hours(3);
  k.versions = {"v1", "v2"};
  return k;
}

VersionRecord SampleVersion() {
  VersionRecord v;
  v.bits = 2048;
  v.enabled = false;
  v.expires = TimePoint(std::chrono::seconds(99));
  v.created = TimePoint(std::chrono::seconds(7));
  v.updated = TimePoint(std::chrono::seconds(8));
  v.stored.public_der = {1, 2, 3};
  v.stored.material = {4, 5, 6, 7};
  v.near_expiry_notified = true;
  return v;
}

KdfRecord SampleKdf() {
  KdfRecord k;
  k.salt = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
  k.params.n = uint64_t{1} << 14;
  k.params.r = 8;
  k.params.p = 2;
  return k;
}

TEST(RecordsTest, RoundTrips) {
  auto vault = DecodeVault(EncodeVault(SampleVault()));
  ASSERT_TRUE(vault.ok());
  EXPECT_EQ(vault->info.spec.name, "vault1");
  EXPECT_EQ(vault->info.spec.sku, VaultSku::kPremium);
  EXPECT_EQ(vault->info.policies.size(), 2u);
  EXPECT_EQ(vault->info.policies[1].permissions, kAllPermissions);

  auto key = DecodeKey(EncodeKey(SampleKey()));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->versions, (std::vector<std::string>{"v1", "v2"}));
  EXPECT_EQ(key->rotation_policy.expires_in, std::chrono::hours(3));
  EXPECT_FALSE(key->rotation_policy.notify_before.has_value());
  EXPECT_EQ(key->scheduled_purge, TimePoint(std::chrono::seconds(6)));

  auto version = DecodeVersion(EncodeVersion(SampleVersion()));
  ASSERT_TRUE(version.ok());
  EXPECT_FALSE(version->enabled);
  EXPECT_FALSE(version->not_before.has_value());
  EXPECT_EQ(version->stored.material, (std::vector<uint8_t>{4, 5, 6, 7}));
  EXPECT_EQ(version->stored.bits, 2048);
  EXPECT_TRUE(version->near_expiry_notified);

  AuditRecord a;
  a.entry.identity = "id";
  a.entry.operation = "wrapKey";
  a.entry.result = "ok";
  a.key_name = "k";
  auto audit = DecodeAudit(EncodeAudit(a));
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(audit->entry.operation, "wrapKey");
  EXPECT_EQ(audit->key_name, "k");
}

template <typename Decode>
void ExpectEveryTruncationIsCorruption(const std::string& full, Decode decode) {
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = decode(std::string_view(full).substr(0, n));
    EXPECT_EQ(r.status().kind(), ErrorKind::kCorruption) << "length " << n;
  }
  auto longer = decode(full + "x");
  EXPECT_EQ(longer.status().kind(), ErrorKind::kCorruption);
  std::string future = full;
  future[0] = 9;  // unknown record version
  EXPECT_EQ(decode(future).status().kind(), ErrorKind::kCorruption);
}

TEST(RecordsTest, MalformedRecordsAreCorruption) {
  ExpectEveryTruncationIsCorruption(EncodeVault(SampleVault()), DecodeVault);
  ExpectEveryTruncationIsCorruption(EncodeKey(SampleKey()), DecodeKey);
  ExpectEveryTruncationIsCorruption(EncodeVersion(SampleVersion()),
                                    DecodeVersion);
  ExpectEveryTruncationIsCorruption(EncodeAudit(AuditRecord{}), DecodeAudit);
  ExpectEveryTruncationIsCorruption(EncodeKdf(SampleKdf()), DecodeKdf);
  ExpectEveryTruncationIsCorruption(EncodeFormat(kFormatVersion), DecodeFormat);
  ExpectEveryTruncationIsCorruption(EncodeCounter(42), DecodeCounter);
}

TEST(RecordsTest, MetaRecordsRoundTrip) {
  auto kdf = DecodeKdf(EncodeKdf(SampleKdf()));
  ASSERT_TRUE(kdf.ok()) << kdf.status().ToString();
  EXPECT_EQ(kdf->salt, SampleKdf().salt);
  EXPECT_EQ(kdf->params.n, uint64_t{1} << 14);
  EXPECT_EQ(kdf->params.r, 8u);
  EXPECT_EQ(kdf->params.p, 2u);
  EXPECT_EQ(*DecodeFormat(EncodeFormat(kFormatVersion)), kFormatVersion);
  EXPECT_EQ(*DecodeCounter(EncodeCounter(~uint64_t{0})), ~uint64_t{0});
}

TEST(RecordsTest, KdfRecordWithoutSaltIsCorruption) {
  KdfRecord k = SampleKdf();
  k.salt.clear();
  auto r = DecodeKdf(EncodeKdf(k));
  EXPECT_EQ(r.status().kind(), ErrorKind::kCorruption);
  EXPECT_NE(r.status().message().find("kdf record"), std::string::npos)
      << r.status().message();
}

TEST(RecordsTest, UnknownEnumValuesAreCorruption) {
  std::string vault = EncodeVault(SampleVault());
  // version byte, then u32 length + "vault1", then the SKU byte.
  vault[1 + 4 + 6] = 7;
  EXPECT_EQ(DecodeVault(vault).status().kind(), ErrorKind::kCorruption);
  std::string key = EncodeKey(SampleKey());
  key[1] = 5;  // key type
  EXPECT_EQ(DecodeKey(key).status().kind(), ErrorKind::kCorruption);
}

// A passphrase vault whose stored scrypt parameters were damaged is reported
// as a corrupt kdf record, not as a bad setting of the user's.
TEST(RecordsTest, DamagedKdfRecordIsCorruptionOnOpen) {
  testing::TempDir tmp;
  KeyStoreOptions o;
  o.dir = tmp.path() / "vault";
  o.passphrase_file = tmp.path() / "pass";
  {
    std::ofstream(o.passphrase_file) << "test-only passphrase\n";
    ::chmod(o.passphrase_file.c_str(), 0600);
  }
  ASSERT_TRUE(OpenKeyStore(o).ok());
  {
    auto env = lmdb::Env::Open(o.dir, lmdb::EnvOptions{});
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    auto meta = (*env)->OpenDb("meta");
    ASSERT_TRUE(meta.ok());
    KdfRecord bad = SampleKdf();
    bad.params.n = 3;  // not a power of two
    ASSERT_TRUE((*env)
                    ->Update([&](lmdb::Txn& txn) {
                      return txn.Put(*meta, "kdf", EncodeKdf(bad));
                    })
                    .ok());
  }
  auto reopened = OpenKeyStore(o);
  ASSERT_EQ(reopened.status().kind(), ErrorKind::kCorruption);
  EXPECT_NE(reopened.status().message().find("kdf record in " + o.dir.string()),
            std::string::npos)
      << reopened.status().message();
}

}  // namespace
}  // namespace cmkfs::keystore
