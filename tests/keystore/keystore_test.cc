// Vaults, key creation and import, versions, attributes, soft delete.
#include "cmkfs/keystore.h"

#include <gtest/gtest.h>

#include <set>

#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::Pem;
using testing::TestKeyStore;

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ks_.MakeVault("vault1"); }
  TestKeyStore ks_;
};

TEST(KeyIdTest, ParsesAndPrints) {
  auto id = KeyId::Parse(
      "cmk://vault1/keys/disk-key/0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->vault, "vault1");
  EXPECT_EQ(id->name, "disk-key");
  EXPECT_EQ(id->version, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(id->ToString(),
            "cmk://vault1/keys/disk-key/0123456789abcdef0123456789abcdef");
  auto versionless = KeyId::Parse("cmk://vault1/keys/disk-key");
  ASSERT_TRUE(versionless.ok());
  EXPECT_TRUE(versionless->versionless());
  for (const char* bad :
       {"vault1/keys/k", "cmk://vault1/secrets/k", "cmk://vault1/keys/",
        "cmk://vault1/keys/k/XYZ", "cmk://vault1/keys/k/v/extra",
        "cmk://vault1/keys/k/0123456789ABCDEF0123456789ABCDEF"}) {
    auto r = KeyId::Parse(bad);
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("cmk://VAULT/keys/NAME[/VERSION]"),
              std::string::npos);
  }
}

TEST(PermissionsTest, ParseAndNames) {
  auto set = ParsePermissions({"get", "wrapKey", "unwrapKey"});
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(*set, Permission::kGet | Permission::kWrapKey |
                      static_cast<uint32_t>(Permission::kUnwrapKey));
  EXPECT_EQ(PermissionNames(*set),
            (std::vector<std::string>{"get", "wrapKey", "unwrapKey"}));
  EXPECT_EQ(PermissionNames(kAllPermissions).size(), 11u);
  auto bad = ParsePermissions({"get", "decrypt"});
  EXPECT_EQ(bad.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("decrypt"), std::string::npos);
  EXPECT_NE(bad.status().message().find("wrapKey unwrapKey rotate"),
            std::string::npos);
}

TEST(EnumNamesTest, SkuAndKeyType) {
  EXPECT_EQ(*ParseVaultSku("premium"), VaultSku::kPremium);
  EXPECT_EQ(VaultSkuName(VaultSku::kStandard), "standard");
  EXPECT_EQ(ParseVaultSku("gold").status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(*ParseKeyType("RSA-HSM"), KeyType::kRsaHsm);
  EXPECT_EQ(KeyTypeName(KeyType::kRsa), "RSA");
  auto ec = ParseKeyType("EC");
  EXPECT_EQ(ec.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(ec.status().message().find("RSA, RSA-HSM"), std::string::npos);
}

TEST_F(KeyStoreTest, VaultCreateGetList) {
  VaultSpec spec;
  spec.name = "premium-vault";
  spec.sku = VaultSku::kPremium;
  spec.purge_protection = true;
  spec.retention_days = 7;
  auto v = ks_->CreateVault(spec);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE(v->admin_identity.empty());
  EXPECT_EQ(v->created, ks_.now());
  auto got = ks_->GetVault("premium-vault");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->spec.sku, VaultSku::kPremium);
  EXPECT_TRUE(got->spec.purge_protection);
  EXPECT_EQ(got->spec.retention_days, 7u);
  EXPECT_EQ(got->admin_identity, v->admin_identity);
  auto all = ks_->ListVaults();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(ks_->GetVault("nope-vault").status().kind(), ErrorKind::kNotFound);
}

TEST_F(KeyStoreTest, VaultDefaultsAndRefusals) {
  auto v = ks_->GetVault("vault1");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->spec.retention_days, 90u);
  EXPECT_EQ(v->spec.sku, VaultSku::kStandard);
  EXPECT_FALSE(v->spec.purge_protection);

  VaultSpec dup;
  dup.name = "vault1";
  EXPECT_EQ(ks_->CreateVault(dup).status().kind(), ErrorKind::kAlreadyExists);
  for (const char* bad : {"ab", "a-name-that-is-way-too-long", "bad_name",
                          "sp ace", "vault/x", ""}) {
    VaultSpec spec;
    spec.name = bad;
    auto r = ks_->CreateVault(spec);
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("3 to 24 characters"),
              std::string::npos);
  }
  for (uint32_t days : {0u, 6u, 91u, 365u}) {
    VaultSpec spec;
    spec.name = "retention";
    spec.retention_days = days;
    auto r = ks_->CreateVault(spec);
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << days;
    EXPECT_NE(r.status().message().find("7 to 90 days"), std::string::npos);
  }
  VaultSpec edge;
  edge.name = "edge";
  edge.retention_days = 7;
  EXPECT_TRUE(ks_->CreateVault(edge).ok());
  edge.name = "edge2";
  edge.retention_days = 90;
  EXPECT_TRUE(ks_->CreateVault(edge).ok());
}

TEST_F(KeyStoreTest, CreateKeyAllSizesDefaultIs3072) {
  auto k2048 = ks_->CreateKey("", "vault1", "k2048", KeyType::kRsa, 2048);
  ASSERT_TRUE(k2048.ok()) << k2048.status().ToString();
  EXPECT_EQ(k2048->bits, 2048);
  auto kdefault = ks_->CreateKey("", "vault1", "kdefault", KeyType::kRsa, 0);
  ASSERT_TRUE(kdefault.ok()) << kdefault.status().ToString();
  EXPECT_EQ(kdefault->bits, 3072);
  EXPECT_EQ(kDefaultKeyBits, 3072);
  auto k4096 = ks_->CreateKey("", "vault1", "k4096", KeyType::kRsa, 4096);
  ASSERT_TRUE(k4096.ok()) << k4096.status().ToString();
  EXPECT_EQ(k4096->bits, 4096);

  auto pub = crypto::RsaKey::FromPublicDer(k4096->public_der);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->bits(), 4096);
  EXPECT_FALSE(pub->has_private());
  EXPECT_EQ(k2048->id.vault, "vault1");
  EXPECT_EQ(k2048->id.name, "k2048");
  EXPECT_EQ(k2048->id.version.size(), 32u);
  EXPECT_TRUE(k2048->enabled);
  EXPECT_EQ(k2048->created, ks_.now());
  EXPECT_FALSE(k2048->expires.has_value());
}

TEST_F(KeyStoreTest, CreateKeyRefusals) {
  for (int bits : {1024, 2047, 8192, 512}) {
    auto r = ks_->CreateKey("", "vault1", "k", KeyType::kRsa, bits);
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << bits;
    EXPECT_NE(r.status().message().find("supported: 2048, 3072 or 4096"),
              std::string::npos)
        << r.status().message();
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "has space", "slash/name", "under_score",
                                std::string(128, 'a')}) {
    auto r = ks_->CreateKey("", "vault1", bad, KeyType::kRsa, 2048);
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(
      ks_->CreateKey("", "vault1", std::string(127, 'a'), KeyType::kRsa, 2048)
          .ok());
  EXPECT_EQ(ks_->CreateKey("", "no-such-vault", "k", KeyType::kRsa, 2048)
                .status()
                .kind(),
            ErrorKind::kNotFound);
  ks_.ImportKey("vault1", "exists");
  auto dup = ks_->CreateKey("", "vault1", "exists", KeyType::kRsa, 2048);
  EXPECT_EQ(dup.status().kind(), ErrorKind::kAlreadyExists);
  EXPECT_NE(dup.status().message().find("cmkctl key rotate vault1 exists"),
            std::string::npos);
}

TEST_F(KeyStoreTest, RsaHsmNeedsPremiumAndAnEnabledPkcs11Module) {
  auto std_r = ks_->CreateKey("", "vault1", "hsm", KeyType::kRsaHsm, 2048);
  EXPECT_EQ(std_r.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(std_r.status().message(),
            "RSA-HSM keys need a premium vault; this vault's SKU is standard");
  ks_.MakeVault("premium1", false, VaultSku::kPremium);
  auto prem = ks_->CreateKey("", "premium1", "hsm", KeyType::kRsaHsm, 2048);
  EXPECT_EQ(prem.status().kind(), ErrorKind::kNotSupported);
  EXPECT_EQ(prem.status().message().rfind(
                "RSA-HSM keys need a PKCS#11 module: set [pkcs11] module, "
                "token_label and pin_file in the config (module ",
                0),
            0u)
      << prem.status().message();
  auto imp =
      ks_->ImportKey("", "premium1", "hsm", Pem("rsa2048"), KeyType::kRsaHsm);
  EXPECT_EQ(imp.status().kind(), ErrorKind::kNotSupported);
  auto imp_std =
      ks_->ImportKey("", "vault1", "hsm", Pem("rsa2048"), KeyType::kRsaHsm);
  EXPECT_EQ(imp_std.status().kind(), ErrorKind::kFailedPrecondition);
  // An RSA (software) key in a premium vault is fine.
  EXPECT_TRUE(
      ks_->ImportKey("", "premium1", "soft", Pem("rsa2048"), KeyType::kRsa)
          .ok());
}

TEST_F(KeyStoreTest, ImportAcceptsPkcs8AndPkcs1OfEverySize) {
  for (const char* kind : {"rsa2048", "rsa2048-pkcs1", "rsa3072", "rsa4096"}) {
    auto k = ks_->ImportKey("", "vault1", std::string("imp-") + kind, Pem(kind),
                            KeyType::kRsa);
    ASSERT_TRUE(k.ok()) << kind << ": " << k.status().ToString();
    auto expected = crypto::RsaKey::FromPrivatePem(Pem(kind));
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(k->bits, expected->bits());
    EXPECT_EQ(k->public_der, *expected->PublicDer()) << kind;
  }
}

TEST_F(KeyStoreTest, ImportRefusesEverythingElseListingWhatIsSupported) {
  const std::string supported =
      "supported: RSA 2048, 3072 or 4096-bit private key in unencrypted PEM "
      "(PKCS#1 or PKCS#8)";
  for (const char* kind :
       {"rsa1024", "ec", "ed25519", "public", "encrypted", "garbage"}) {
    auto r = ks_->ImportKey("", "vault1", "refused", Pem(kind), KeyType::kRsa);
    ASSERT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << kind;
    const std::string m = r.status().message();
    EXPECT_EQ(m.rfind("unsupported key: ", 0), 0u) << m;
    EXPECT_NE(m.find(supported), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  auto empty = ks_->ImportKey("", "vault1", "refused", "", KeyType::kRsa);
  EXPECT_EQ(empty.status().kind(), ErrorKind::kInvalidArgument);
  auto keys = ks_->ListKeys("", "vault1");
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->empty());
}

// The 8192-bit PEM is a committed test-only fixture (testdata/rsa8192.pem).
TEST_F(KeyStoreTest, ImportRefusesRsa8192) {
  auto r = ks_->ImportKey("", "vault1", "big", Pem("rsa8192"), KeyType::kRsa);
  ASSERT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(r.status().message().find("8192"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("supported: RSA 2048, 3072 or 4096-bit"),
            std::string::npos);
}

TEST_F(KeyStoreTest, EveryCreateImportRotateMakesANewVersion) {
  auto v1 = ks_.ImportKey("vault1", "k");
  auto v2 = ks_->ImportKey("", "vault1", "k", Pem("rsa2048-b"), KeyType::kRsa);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  auto v3 = ks_->RotateKey("", "vault1", "k");
  ASSERT_TRUE(v3.ok()) << v3.status().ToString();
  EXPECT_EQ(v3->bits, 2048);
  std::set<std::string> versions{v1.id.version, v2->id.version, v3->id.version};
  EXPECT_EQ(versions.size(), 3u);
  for (const std::string& v : versions) {
    EXPECT_EQ(v.size(), 32u);
    EXPECT_EQ(v.find_first_not_of("0123456789abcdef"), std::string::npos);
  }
  auto info = ks_->GetKey("", "vault1", "k");
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->versions.size(), 3u);
  EXPECT_EQ(info->versions[0].id, v1.id);
  EXPECT_EQ(info->versions[1].id, v2->id);
  EXPECT_EQ(info->versions[2].id, v3->id);
  EXPECT_NE(info->versions[0].public_der, info->versions[2].public_der);
  EXPECT_EQ(ks_->RotateKey("", "vault1", "missing").status().kind(),
            ErrorKind::kNotFound);
}

TEST_F(KeyStoreTest, VersionlessIdResolvesToLatestEnabledVersion) {
  auto v1 = ks_.ImportKey("vault1", "k");
  auto v2 = ks_.ImportKey("vault1", "k", "rsa2048-b");
  KeyId versionless{"vault1", "k", ""};
  auto latest = ks_->GetKeyVersion("", versionless);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->id, v2.id);

  AttributeUpdate disable;
  disable.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v2.id, disable).ok());
  latest = ks_->GetKeyVersion("", versionless);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->id, v1.id);

  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1.id, disable).ok());
  auto none = ks_->GetKeyVersion("", versionless);
  EXPECT_EQ(none.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_NE(none.status().message().find("no enabled version"),
            std::string::npos);

  auto explicit_v1 = ks_->GetKeyVersion("", v1.id);
  ASSERT_TRUE(explicit_v1.ok());
  EXPECT_FALSE(explicit_v1->enabled);
  KeyId unknown = v1.id;
  unknown.version = std::string(32, '0');
  EXPECT_EQ(ks_->GetKeyVersion("", unknown).status().kind(),
            ErrorKind::kNotFound);
}

TEST_F(KeyStoreTest, AttributeUpdates) {
  auto v1 = ks_.ImportKey("vault1", "k");
  auto v2 = ks_.ImportKey("vault1", "k", "rsa2048-b");
  ks_.Advance(std::chrono::seconds(100));
  const TimePoint exp = ks_.now() + std::chrono::hours(24);
  const TimePoint nbf = ks_.now() + std::chrono::hours(1);
  AttributeUpdate u;
  u.expires = exp;
  u.not_before = nbf;
  // Versionless acts on the latest version.
  auto updated = ks_->UpdateKeyAttributes("", KeyId{"vault1", "k", ""}, u);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(updated->id, v2.id);
  EXPECT_EQ(updated->expires, exp);
  EXPECT_EQ(updated->not_before, nbf);
  EXPECT_EQ(updated->updated, ks_.now());
  EXPECT_EQ(updated->created, v2.created);
  EXPECT_TRUE(updated->enabled);

  auto stored = ks_->GetKeyVersion("", v2.id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->expires, exp);
  EXPECT_EQ(stored->not_before, nbf);
  auto other = ks_->GetKeyVersion("", v1.id);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->expires.has_value());

  // Clearing: inner nullopt.
  AttributeUpdate clear;
  clear.expires = std::optional<TimePoint>();
  auto cleared = ks_->UpdateKeyAttributes("", v2.id, clear);
  ASSERT_TRUE(cleared.ok());
  EXPECT_FALSE(cleared->expires.has_value());
  EXPECT_EQ(cleared->not_before, nbf);

  AttributeUpdate bad;
  bad.expires = nbf - std::chrono::seconds(1);
  auto refused = ks_->UpdateKeyAttributes("", v2.id, bad);
  EXPECT_EQ(refused.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("must be later than not-before"),
            std::string::npos);
  // The refused update changed nothing.
  EXPECT_FALSE(ks_->GetKeyVersion("", v2.id)->expires.has_value());
}

TEST_F(KeyStoreTest, GetReturnsOnlyThePublicPart) {
  auto v = ks_.ImportKey("vault1", "k");
  auto got = ks_->GetKeyVersion("", v.id);
  ASSERT_TRUE(got.ok());
  auto pub = crypto::RsaKey::FromPublicDer(got->public_der);
  ASSERT_TRUE(pub.ok());
  EXPECT_FALSE(pub->has_private());
  // The public DER is not a private key in disguise.
  EXPECT_FALSE(crypto::RsaKey::FromPrivateDer(got->public_der).ok());
  auto expected = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  EXPECT_EQ(got->public_der, *expected->PublicDer());
}

TEST_F(KeyStoreTest, SoftDeleteRecoverAndPurge) {
  ks_.ImportKey("vault1", "k");
  ASSERT_TRUE(ks_->DeleteKey("", "vault1", "k").ok());
  auto info = ks_->GetKey("", "vault1", "k");
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->deleted);
  EXPECT_EQ(info->deleted_at, ks_.now());
  EXPECT_EQ(info->scheduled_purge, ks_.now() + std::chrono::days(90));

  auto again = ks_->DeleteKey("", "vault1", "k");
  EXPECT_EQ(again.kind(), ErrorKind::kFailedPrecondition);
  auto create = ks_->CreateKey("", "vault1", "k", KeyType::kRsa, 2048);
  EXPECT_EQ(create.status().kind(), ErrorKind::kAlreadyExists);
  EXPECT_NE(create.status().message().find("soft-deleted"), std::string::npos);
  EXPECT_EQ(ks_->RotateKey("", "vault1", "k").status().kind(),
            ErrorKind::kFailedPrecondition);
  EXPECT_EQ(ks_->ImportKey("", "vault1", "k", Pem("rsa2048"), KeyType::kRsa)
                .status()
                .kind(),
            ErrorKind::kFailedPrecondition);

  ASSERT_TRUE(ks_->RecoverKey("", "vault1", "k").ok());
  info = ks_->GetKey("", "vault1", "k");
  EXPECT_FALSE(info->deleted);
  EXPECT_FALSE(info->scheduled_purge.has_value());
  EXPECT_EQ(ks_->RecoverKey("", "vault1", "k").kind(),
            ErrorKind::kFailedPrecondition);
  auto purge_live = ks_->PurgeKey("", "vault1", "k");
  EXPECT_EQ(purge_live.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_NE(purge_live.message().find("cmkctl key delete vault1 k"),
            std::string::npos);

  ASSERT_TRUE(ks_->DeleteKey("", "vault1", "k").ok());
  ASSERT_TRUE(ks_->PurgeKey("", "vault1", "k").ok());
  EXPECT_EQ(ks_->GetKey("", "vault1", "k").status().kind(),
            ErrorKind::kNotFound);
  // The name is free again.
  ks_.ImportKey("vault1", "k");
}

TEST_F(KeyStoreTest, PurgeRefusedWhilePurgeProtectionHolds) {
  VaultSpec spec;
  spec.name = "protected";
  spec.purge_protection = true;
  spec.retention_days = 30;
  ASSERT_TRUE(ks_->CreateVault(spec).ok());
  ks_.ImportKey("protected", "k");
  ASSERT_TRUE(ks_->DeleteKey("", "protected", "k").ok());
  const TimePoint purge_at = ks_.now() + std::chrono::days(30);
  Status s = ks_->PurgeKey("", "protected", "k");
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "purge protection is on for vault protected; the key is purged "
            "automatically on " +
                FormatTime(purge_at));
  EXPECT_TRUE(ks_->GetKey("", "protected", "k").ok());
  // Recovery is still allowed.
  EXPECT_TRUE(ks_->RecoverKey("", "protected", "k").ok());
}

TEST_F(KeyStoreTest, RetentionExpiryPurgesThroughApplyRotationPolicies) {
  VaultSpec spec;
  spec.name = "short";
  spec.purge_protection = true;
  spec.retention_days = 7;
  ASSERT_TRUE(ks_->CreateVault(spec).ok());
  ks_.ImportKey("short", "k");
  ks_.ImportKey("short", "kept");
  ASSERT_TRUE(ks_->DeleteKey("", "short", "k").ok());
  ks_.Advance(std::chrono::days(7) - std::chrono::seconds(1));
  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_TRUE(ks_->GetKey("", "short", "k").ok());
  ks_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_EQ(ks_->GetKey("", "short", "k").status().kind(),
            ErrorKind::kNotFound);
  EXPECT_TRUE(ks_->GetKey("", "short", "kept").ok());
  auto audit = ks_->ReadAudit("short", AuditFilter{"k", std::nullopt});
  ASSERT_TRUE(audit.ok());
  ASSERT_GE(audit->size(), 2u);
  // The purge, then the refused get that proved the key gone.
  const AuditEntry& purge = (*audit)[audit->size() - 2];
  EXPECT_EQ(purge.operation, "key.purge");
  EXPECT_EQ(purge.result, "ok");
  EXPECT_NE(purge.identity.find("retention"), std::string::npos);
}

TEST_F(KeyStoreTest, ListKeysOfOneVault) {
  ks_.MakeVault("vault1-b");
  ks_.ImportKey("vault1", "a");
  ks_.ImportKey("vault1", "b");
  ks_.ImportKey("vault1-b", "c");
  auto keys = ks_->ListKeys("", "vault1");
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "a");
  EXPECT_EQ((*keys)[1].name, "b");
  EXPECT_EQ((*keys)[0].versions.size(), 1u);
}

TEST_F(KeyStoreTest, StatePersistsAcrossReopen) {
  auto v = ks_.ImportKey("vault1", "k");
  auto counter = ks_->ChangeCounter();
  ASSERT_TRUE(counter.ok());
  ks_.Reopen();
  auto got = ks_->GetKeyVersion("", v.id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->public_der, v.public_der);
  EXPECT_EQ(*ks_->ChangeCounter(), *counter);
  std::vector<uint8_t> dek(32, 7);
  auto wrapped = ks_->WrapKey("", v.id, dek, {});
  ASSERT_TRUE(wrapped.ok());
  auto unwrapped = ks_->UnwrapKey("", v.id, *wrapped, {});
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status().ToString();
}

}  // namespace
}  // namespace cmkfs::keystore
