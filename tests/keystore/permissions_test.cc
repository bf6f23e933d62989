// Access policies: every operation checks the caller; refusals are audited.
#include <gtest/gtest.h>

#include <functional>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::Pem;
using testing::TestKeyStore;

struct OpCase {
  const char* name;
  Permission needed;
  const char* audit_operation;
  // Runs the operation as `caller`; returns its status.
  std::function<Status(KeyStore&, const std::string& caller, const KeyId& v1)>
      run;
};

std::vector<OpCase> AllOps() {
  return {
      {"create", Permission::kCreate, "key.create",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         return ks.CreateKey(c, "vault1", "fresh", KeyType::kRsa, 2048)
             .status();
       }},
      {"import", Permission::kImport, "key.import",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         return ks.ImportKey(c, "vault1", "k", Pem("rsa2048-b"), KeyType::kRsa)
             .status();
       }},
      {"rotate", Permission::kRotate, "key.rotate",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         return ks.RotateKey(c, "vault1", "k").status();
       }},
      {"get", Permission::kGet, "key.get",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         return ks.GetKey(c, "vault1", "k").status();
       }},
      {"get-version", Permission::kGet, "key.get",
       [](KeyStore& ks, const std::string& c, const KeyId& v1) {
         return ks.GetKeyVersion(c, v1).status();
       }},
      {"list", Permission::kList, "key.list",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         return ks.ListKeys(c, "vault1").status();
       }},
      {"update", Permission::kUpdate, "key.update",
       [](KeyStore& ks, const std::string& c, const KeyId& v1) {
         AttributeUpdate u;
         u.enabled = true;
         return ks.UpdateKeyAttributes(c, v1, u).status();
       }},
      {"rotation-policy", Permission::kUpdate, "key.set-rotation-policy",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         RotationPolicy p;
         p.rotate_after = std::chrono::hours(24);
         return ks.SetRotationPolicy(c, "vault1", "k", p);
       }},
      {"wrapKey", Permission::kWrapKey, "wrapKey",
       [](KeyStore& ks, const std::string& c, const KeyId& v1) {
         std::vector<uint8_t> dek(32, 1);
         return ks.WrapKey(c, v1, dek, {}).status();
       }},
      {"unwrapKey", Permission::kUnwrapKey, "unwrapKey",
       [](KeyStore& ks, const std::string& c, const KeyId& v1) {
         std::vector<uint8_t> dek(32, 1);
         auto blob = ks.WrapKey("", v1, dek, {});
         if (!blob.ok()) return blob.status();
         return ks.UnwrapKey(c, v1, *blob, {}).status();
       }},
      {"delete", Permission::kDelete, "key.delete",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         return ks.DeleteKey(c, "vault1", "k");
       }},
      {"recover", Permission::kRecover, "key.recover",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         ks.DeleteKey("", "vault1", "k").IgnoreError();  // may be deleted
         return ks.RecoverKey(c, "vault1", "k");
       }},
      {"purge", Permission::kPurge, "key.purge",
       [](KeyStore& ks, const std::string& c, const KeyId&) {
         ks.DeleteKey("", "vault1", "k").IgnoreError();  // may be deleted
         return ks.PurgeKey(c, "vault1", "k");
       }},
  };
}

class PermissionTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    ks_.MakeVault("vault1");
    v1_ = ks_.ImportKey("vault1", "k");
  }
  TestKeyStore ks_;
  KeyVersionInfo v1_;
};

TEST_P(PermissionTest, DeniedWithoutPermissionAllowedWithIt) {
  const OpCase op = AllOps()[GetParam()];
  SCOPED_TRACE(op.name);
  const std::string perm = PermissionNames(static_cast<uint32_t>(op.needed))[0];
  // Everything except the needed permission.
  PermissionSet others = kAllPermissions & ~static_cast<uint32_t>(op.needed);
  ASSERT_TRUE(ks_->SetAccessPolicy("", "vault1", "app-1", others).ok());

  Status denied = op.run(*ks_, "app-1", v1_.id);
  ASSERT_EQ(denied.kind(), ErrorKind::kPermissionDenied) << denied.ToString();
  EXPECT_NE(denied.message().find("identity app-1 lacks '" + perm +
                                  "' on vault vault1; grant it with: cmkctl "
                                  "vault set-policy vault1 --object-id app-1 "
                                  "--key-permissions "),
            std::string::npos)
      << denied.message();
  // The suggested grant keeps what the identity had and adds the missing one.
  EXPECT_NE(denied.message().find(perm), std::string::npos);
  EXPECT_NE(denied.message().find("get list"), std::string::npos);

  auto audit = ks_->ReadAudit("vault1", {});
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  const AuditEntry& last = audit->back();
  EXPECT_EQ(last.identity, "app-1");
  EXPECT_EQ(last.operation, op.audit_operation);
  EXPECT_EQ(last.result.rfind("denied: ", 0), 0u) << last.result;
  if (std::string_view(op.name) != "list") {
    EXPECT_NE(last.key_id.find("cmk://vault1/keys/"), std::string::npos);
  }

  // An identity without any policy is denied too.
  EXPECT_EQ(op.run(*ks_, "nobody", v1_.id).kind(),
            ErrorKind::kPermissionDenied);

  // Granted: works, audited as ok under the identity.
  ASSERT_TRUE(ks_->SetAccessPolicy("", "vault1", "app-1",
                                   static_cast<uint32_t>(op.needed))
                  .ok());
  Status allowed = op.run(*ks_, "app-1", v1_.id);
  EXPECT_TRUE(allowed.ok()) << allowed.ToString();
  audit = ks_->ReadAudit("vault1", {});
  EXPECT_EQ(audit->back().identity, "app-1");
  EXPECT_EQ(audit->back().operation, op.audit_operation);
  EXPECT_EQ(audit->back().result, "ok");
}

INSTANTIATE_TEST_SUITE_P(EveryOperation, PermissionTest,
                         ::testing::Range<size_t>(0, 13),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string n = AllOps()[info.param].name;
                           std::erase(n, '-');
                           return n;
                         });

TEST(PolicyAdminTest, OnlyTheAdminSetsOrDeletesPolicies) {
  TestKeyStore ks;
  VaultInfo v = ks.MakeVault("vault1");
  ASSERT_TRUE(ks->SetAccessPolicy("", "vault1", "app-1", kAllPermissions).ok());
  Status s = ks->SetAccessPolicy("app-1", "vault1", "app-2", kAllPermissions);
  EXPECT_EQ(s.kind(), ErrorKind::kPermissionDenied);
  EXPECT_NE(s.message().find("only the vault admin may change access policies"),
            std::string::npos);
  EXPECT_EQ(ks->DeleteAccessPolicy("app-1", "vault1", "app-1").kind(),
            ErrorKind::kPermissionDenied);
  auto audit = ks->ReadAudit("vault1", {});
  EXPECT_EQ(audit->back().operation, "vault.delete-policy");
  EXPECT_EQ(audit->back().result.rfind("denied: ", 0), 0u);
  // The admin identity named explicitly is the admin.
  EXPECT_TRUE(ks->SetAccessPolicy(v.admin_identity, "vault1", "app-2", 0).ok());
  auto got = ks->GetVault("vault1");
  ASSERT_EQ(got->policies.size(), 2u);
  EXPECT_EQ(got->policies[0].object_id, "app-1");
  EXPECT_EQ(got->policies[0].permissions, kAllPermissions);
  // Replacing a set.
  ASSERT_TRUE(ks->SetAccessPolicy("", "vault1", "app-1",
                                  static_cast<uint32_t>(Permission::kGet))
                  .ok());
  EXPECT_EQ(ks->GetVault("vault1")->policies[0].permissions,
            static_cast<uint32_t>(Permission::kGet));
  ASSERT_TRUE(ks->DeleteAccessPolicy("", "vault1", "app-1").ok());
  EXPECT_EQ(ks->GetVault("vault1")->policies.size(), 1u);
  EXPECT_EQ(ks->DeleteAccessPolicy("", "vault1", "app-1").kind(),
            ErrorKind::kNotFound);
  EXPECT_EQ(ks->SetAccessPolicy("", "vault1", "", kAllPermissions).kind(),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(ks->SetAccessPolicy("", "vault1", v.admin_identity, 0).kind(),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(ks->SetAccessPolicy("", "nope-vault", "x", 0).kind(),
            ErrorKind::kNotFound);
}

}  // namespace
}  // namespace cmkfs::keystore
