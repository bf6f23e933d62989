// The KeyStore contract, run against the embedded store and against cmkvault
// through a real gRPC connection with mutual TLS (loopback TCP and a unix
// socket): the same calls give the same results, kinds and messages.
#include <gtest/gtest.h>

#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

using keystore::AttributeUpdate;
using keystore::KeyId;
using keystore::KeyStore;
using keystore::Permission;
using keystore::VaultSpec;
using keystore::testing::Bytes;

// In-process store; any object id may be a caller.
class Embedded {
 public:
  Embedded() {
    keystore::KeyStoreOptions o;
    o.dir = tmp_.path() / "vault";
    o.master_key_file = tmp_.path() / "vault.key";
    auto s = keystore::OpenKeyStore(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  KeyStore& store() { return *store_; }
  std::string NewIdentity() { return *NewObjectId(); }

 private:
  TempDir tmp_;
  std::unique_ptr<KeyStore> store_;
};

// cmkvault over loopback TCP (or its unix socket); other callers are
// identities it issued, whose bundles the client finds in credentials_dir.
template <bool kUnix>
class Service {
 public:
  Service() : store_(service_.Connect({}, kUnix)) {}
  KeyStore& store() { return *store_; }
  std::string NewIdentity() { return service_.Issue("client").object_id; }

 private:
  TestVaultService service_;
  std::unique_ptr<KeyStore> store_;
};
using ServiceTcp = Service<false>;
using ServiceUnixSocket = Service<true>;

template <typename T>
class KeyStoreContractTest : public ::testing::Test {
 protected:
  KeyStore& ks() { return backend_.store(); }
  void MakeVault(const std::string& name) {
    keystore::testing::MakeVault(ks(), name);
  }
  keystore::KeyVersionInfo Import(const std::string& vault,
                                  const std::string& name) {
    return keystore::testing::ImportFixtureKey(ks(), vault, name);
  }
  T backend_;
};

using Backends = ::testing::Types<Embedded, ServiceTcp, ServiceUnixSocket>;
TYPED_TEST_SUITE(KeyStoreContractTest, Backends);

TYPED_TEST(KeyStoreContractTest, VaultsAreCreatedListedAndUnique) {
  this->MakeVault("vault1");
  auto got = this->ks().GetVault("vault1");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->spec.name, "vault1");
  EXPECT_EQ(got->admin_identity.size(), 36u);
  VaultSpec again;
  again.name = "vault1";
  auto dup = this->ks().CreateVault(again);
  EXPECT_EQ(dup.status().kind(), ErrorKind::kAlreadyExists);
  EXPECT_EQ(dup.status().message(), "vault vault1 already exists");
  auto missing = this->ks().GetVault("nope");
  EXPECT_EQ(missing.status().kind(), ErrorKind::kNotFound);
  auto all = this->ks().ListVaults();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TYPED_TEST(KeyStoreContractTest, KeyLifecycle) {
  this->MakeVault("vault1");
  auto v1 = this->Import("vault1", "k");
  EXPECT_EQ(v1.bits, 2048);
  EXPECT_FALSE(v1.public_der.empty());
  auto v2 = this->ks().RotateKey("", "vault1", "k");
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  auto key = this->ks().GetKey("", "vault1", "k");
  ASSERT_TRUE(key.ok());
  ASSERT_EQ(key->versions.size(), 2u);
  EXPECT_EQ(key->versions[1].id, v2->id);
  auto listed = this->ks().ListKeys("", "vault1");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1u);

  AttributeUpdate off;
  off.enabled = false;
  auto disabled = this->ks().UpdateKeyAttributes("", v2->id, off);
  ASSERT_TRUE(disabled.ok()) << disabled.status().ToString();
  EXPECT_FALSE(disabled->enabled);
  auto latest = this->ks().GetKeyVersion("", KeyId{"vault1", "k", ""});
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->id, v1.id);  // latest enabled

  ASSERT_TRUE(this->ks().DeleteKey("", "vault1", "k").ok());
  auto deleted = this->ks().GetKey("", "vault1", "k");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->deleted);
  EXPECT_TRUE(deleted->scheduled_purge.has_value());
  auto rotate = this->ks().RotateKey("", "vault1", "k");
  EXPECT_EQ(rotate.status().kind(), ErrorKind::kFailedPrecondition);
  ASSERT_TRUE(this->ks().RecoverKey("", "vault1", "k").ok());
  ASSERT_TRUE(this->ks().DeleteKey("", "vault1", "k").ok());
  ASSERT_TRUE(this->ks().PurgeKey("", "vault1", "k").ok());
  EXPECT_EQ(this->ks().GetKey("", "vault1", "k").status().kind(),
            ErrorKind::kNotFound);
}

TYPED_TEST(KeyStoreContractTest, WrapUnwrapRoundTripAndRefusals) {
  this->MakeVault("vault1");
  auto k = this->Import("vault1", "k");
  const std::string dek(64, 'd');
  auto blob = this->ks().WrapKey("", k.id, Bytes(dek), Bytes("label"));
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  auto back = this->ks().UnwrapKey("", k.id, *blob, Bytes("label"));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(back->data()), back->size()),
      dek);
  auto wrong_label = this->ks().UnwrapKey("", k.id, *blob, Bytes("other"));
  EXPECT_EQ(wrong_label.status().kind(), ErrorKind::kCorruption);
  auto rsa15 = this->ks().WrapKey("", k.id, Bytes(dek), Bytes("label"),
                                  keystore::WrapAlgorithm::kRsa15);
  EXPECT_EQ(rsa15.status().kind(), ErrorKind::kInvalidArgument);
  AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(this->ks().UpdateKeyAttributes("", k.id, off).ok());
  auto unusable = this->ks().UnwrapKey("", k.id, *blob, Bytes("label"));
  EXPECT_EQ(unusable.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_EQ(unusable.status().message(),
            k.id.ToString() + ": key version disabled");
}

TYPED_TEST(KeyStoreContractTest, PoliciesDecideWhatAnotherIdentityMayDo) {
  this->MakeVault("vault1");
  auto k = this->Import("vault1", "k");
  const std::string other = this->backend_.NewIdentity();
  auto denied = this->ks().GetKey(other, "vault1", "k");
  EXPECT_EQ(denied.status().kind(), ErrorKind::kPermissionDenied);
  EXPECT_NE(
      denied.status().message().find("identity " + other + " lacks 'get'"),
      std::string::npos)
      << denied.status().message();
  ASSERT_TRUE(this->ks()
                  .SetAccessPolicy("", "vault1", other,
                                   Permission::kGet | Permission::kUnwrapKey)
                  .ok());
  EXPECT_TRUE(this->ks().GetKey(other, "vault1", "k").ok());
  auto blob = this->ks().WrapKey("", k.id, Bytes("0123456789abcdef"), {});
  ASSERT_TRUE(blob.ok());
  EXPECT_TRUE(this->ks().UnwrapKey(other, k.id, *blob, {}).ok());
  auto no_wrap = this->ks().WrapKey(other, k.id, Bytes("x"), {});
  EXPECT_EQ(no_wrap.status().kind(), ErrorKind::kPermissionDenied);
  auto not_admin = this->ks().SetAccessPolicy(other, "vault1", other,
                                              keystore::kAllPermissions);
  EXPECT_EQ(not_admin.kind(), ErrorKind::kPermissionDenied);

  std::vector<keystore::UsabilityQuery> qs = {{other, k.id}};
  EXPECT_TRUE(this->ks().CheckUsable(qs)[0].ok());
  ASSERT_TRUE(this->ks().DeleteAccessPolicy("", "vault1", other).ok());
  EXPECT_EQ(this->ks().CheckUsable(qs)[0].kind(), ErrorKind::kKeyUnavailable);
}

TYPED_TEST(KeyStoreContractTest, AuditAndChangeCounter) {
  auto before = this->ks().ChangeCounter();
  ASSERT_TRUE(before.ok());
  this->MakeVault("vault1");
  auto k = this->Import("vault1", "k");
  auto after = this->ks().ChangeCounter();
  ASSERT_TRUE(after.ok());
  EXPECT_NE(*before, *after);
  keystore::AuditEntry e;
  e.operation = "disk.seal";
  e.key_id = k.id.ToString();
  e.result = "ok";
  ASSERT_TRUE(this->ks().AppendAudit("vault1", e).ok());
  auto audit = this->ks().ReadAudit("vault1", {});
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> ops;
  for (const auto& a : *audit) ops.push_back(a.operation);
  EXPECT_EQ(ops, (std::vector<std::string>{"vault.create", "key.import",
                                           "disk.seal"}));
}

TYPED_TEST(KeyStoreContractTest, RotationPolicyRoundTrips) {
  this->MakeVault("vault1");
  this->Import("vault1", "k");
  keystore::RotationPolicy p;
  p.rotate_after = std::chrono::hours(24);
  p.expires_in = std::chrono::hours(48);
  ASSERT_TRUE(this->ks().SetRotationPolicy("", "vault1", "k", p).ok());
  auto key = this->ks().GetKey("", "vault1", "k");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->rotation_policy.rotate_after, p.rotate_after);
  EXPECT_EQ(key->rotation_policy.expires_in, p.expires_in);
  EXPECT_FALSE(key->rotation_policy.notify_before.has_value());
  auto applied = this->ks().ApplyRotationPolicies();
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_TRUE(applied->empty());
}

}  // namespace
}  // namespace cmkfs::vault::testing
