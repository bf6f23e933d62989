// Rotation policies: rotate-after, expires-in, near-expiry notices.
#include <gtest/gtest.h>

#include <algorithm>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using testing::TestKeyStore;

class RotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ks_.MakeVault("vault1");
    v1_ = ks_.ImportKey("vault1", "k");
  }
  size_t AuditCount(const std::string& operation) {
    auto audit = ks_->ReadAudit("vault1", AuditFilter{"k", std::nullopt});
    EXPECT_TRUE(audit.ok());
    size_t n = 0;
    for (const auto& e : *audit) n += e.operation == operation;
    return n;
  }
  TestKeyStore ks_;
  KeyVersionInfo v1_;
};

TEST_F(RotationTest, RotateOnDemandKeepsSizeAndBecomesLatest) {
  auto v2 = ks_->RotateKey("", "vault1", "k");
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ(v2->bits, v1_.bits);
  EXPECT_NE(v2->id.version, v1_.id.version);
  auto latest = ks_->GetKeyVersion("", KeyId{"vault1", "k", ""});
  EXPECT_EQ(latest->id, v2->id);
  // The old version still unwraps what it wrapped.
  std::vector<uint8_t> dek(32, 4);
  auto blob = ks_->WrapKey("", v1_.id, dek, {});
  EXPECT_TRUE(ks_->UnwrapKey("", v1_.id, *blob, {}).ok());
}

TEST_F(RotationTest, RotateAfterCreatesVersionWhenDue) {
  RotationPolicy p;
  p.rotate_after = seconds(30);
  p.expires_in = hours(2);
  ASSERT_TRUE(ks_->SetRotationPolicy("", "vault1", "k", p).ok());
  EXPECT_EQ(ks_->GetKey("", "vault1", "k")->rotation_policy.rotate_after,
            seconds(30));

  ks_.Advance(seconds(29));
  auto none = ks_->ApplyRotationPolicies();
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  ks_.Advance(seconds(1));
  auto created = ks_->ApplyRotationPolicies();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_EQ(created->size(), 1u);
  const KeyId& v2 = (*created)[0];
  EXPECT_EQ(v2.name, "k");
  auto info = ks_->GetKeyVersion("", v2);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->created, ks_.now());
  EXPECT_EQ(info->expires, ks_.now() + hours(2));
  EXPECT_EQ(info->bits, 2048);
  EXPECT_EQ(ks_->GetKey("", "vault1", "k")->versions.size(), 2u);
  EXPECT_EQ(AuditCount("key.rotate"), 1u);
  auto audit = ks_->ReadAudit("vault1", AuditFilter{"k", std::nullopt});
  auto rotated = std::find_if(audit->rbegin(), audit->rend(), [](auto& e) {
    return e.operation == "key.rotate";
  });
  ASSERT_NE(rotated, audit->rend());
  EXPECT_EQ(rotated->key_id, v2.ToString());
  EXPECT_EQ(rotated->result, "ok");
  EXPECT_NE(rotated->identity.find("rotation policy"), std::string::npos);

  // Not due again until rotate_after passed since the new version.
  ks_.Advance(seconds(29));
  EXPECT_TRUE(ks_->ApplyRotationPolicies()->empty());
  ks_.Advance(seconds(1));
  EXPECT_EQ(ks_->ApplyRotationPolicies()->size(), 1u);
}

TEST_F(RotationTest, DeletedKeysAreNotRotated) {
  RotationPolicy p;
  p.rotate_after = seconds(1);
  ASSERT_TRUE(ks_->SetRotationPolicy("", "vault1", "k", p).ok());
  ASSERT_TRUE(ks_->DeleteKey("", "vault1", "k").ok());
  ks_.Advance(seconds(5));
  EXPECT_TRUE(ks_->ApplyRotationPolicies()->empty());
}

TEST_F(RotationTest, NearExpiryNoticeOncePerVersion) {
  RotationPolicy p;
  p.notify_before = hours(1);
  ASSERT_TRUE(ks_->SetRotationPolicy("", "vault1", "k", p).ok());
  AttributeUpdate u;
  u.expires = ks_.now() + hours(3);
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1_.id, u).ok());

  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_EQ(AuditCount("key.near-expiry"), 0u);
  ks_.Advance(hours(2) - seconds(1));
  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_EQ(AuditCount("key.near-expiry"), 0u);
  ks_.Advance(seconds(1));
  auto counter = ks_->ChangeCounter();
  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_EQ(AuditCount("key.near-expiry"), 1u);
  auto audit = ks_->ReadAudit("vault1", AuditFilter{"k", std::nullopt});
  EXPECT_EQ(audit->back().key_id, v1_.id.ToString());
  EXPECT_EQ(audit->back().result, "ok: expires " + FormatTime(**u.expires));
  // Once per version.
  ks_.Advance(seconds(60));
  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_EQ(AuditCount("key.near-expiry"), 1u);
  // A notice alone is not a key change.
  EXPECT_EQ(*ks_->ChangeCounter(), *counter);

  // A new version with its own expiry gets its own notice.
  auto v2 = ks_.ImportKey("vault1", "k", "rsa2048-b");
  u.expires = ks_.now() + seconds(30);
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v2.id, u).ok());
  ASSERT_TRUE(ks_->ApplyRotationPolicies().ok());
  EXPECT_EQ(AuditCount("key.near-expiry"), 2u);
}

TEST_F(RotationTest, ExpiresInAppliesToImportedVersionsToo) {
  RotationPolicy p;
  p.expires_in = hours(24) * 30;
  ASSERT_TRUE(ks_->SetRotationPolicy("", "vault1", "k", p).ok());
  auto v2 = ks_.ImportKey("vault1", "k", "rsa2048-b");
  EXPECT_EQ(v2.expires, ks_.now() + hours(24) * 30);
}

TEST_F(RotationTest, PolicyRefusals) {
  RotationPolicy p;
  p.rotate_after = std::chrono::milliseconds(500);
  Status s = ks_->SetRotationPolicy("", "vault1", "k", p);
  EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(s.message().find("at least 1s"), std::string::npos);
  EXPECT_EQ(
      ks_->SetRotationPolicy("", "vault1", "missing", RotationPolicy{}).kind(),
      ErrorKind::kNotFound);
}

}  // namespace
}  // namespace cmkfs::keystore
