// wrapKey / unwrapKey, usability, CheckUsable and the change counter.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::Bytes;
using testing::Pem;
using testing::TestKeyStore;

class WrapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ks_.MakeVault("vault1");
    v1_ = ks_.ImportKey("vault1", "k");
  }
  TestKeyStore ks_;
  KeyVersionInfo v1_;
  const std::vector<uint8_t> dek_ = std::vector<uint8_t>(64, 0x5a);
};

TEST_F(WrapTest, DefaultIsRsaOaep256) {
  auto blob = ks_->WrapKey("", v1_.id, dek_, Bytes("disk-1"));
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(blob->size(), 256u);
  // The holder of the private key can unwrap it with OAEP SHA-256 ...
  auto priv = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  ASSERT_TRUE(priv.ok());
  auto direct = priv->Unwrap(*blob, Bytes("disk-1"), crypto::OaepHash::kSha256);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_TRUE(crypto::ConstantTimeEquals(direct->span(), dek_));
  // ... and not with SHA-1.
  EXPECT_FALSE(
      priv->Unwrap(*blob, Bytes("disk-1"), crypto::OaepHash::kSha1).ok());

  auto unwrapped = ks_->UnwrapKey("", v1_.id, *blob, Bytes("disk-1"));
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status().ToString();
  EXPECT_TRUE(crypto::ConstantTimeEquals(unwrapped->span(), dek_));
}

TEST_F(WrapTest, RsaOaepSha1OnlyWhenAsked) {
  auto blob = ks_->WrapKey("", v1_.id, dek_, {}, WrapAlgorithm::kRsaOaep);
  ASSERT_TRUE(blob.ok());
  auto priv = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  EXPECT_TRUE(priv->Unwrap(*blob, {}, crypto::OaepHash::kSha1).ok());
  EXPECT_EQ(ks_->UnwrapKey("", v1_.id, *blob, {}).status().kind(),
            ErrorKind::kCorruption);
  auto ok = ks_->UnwrapKey("", v1_.id, *blob, {}, WrapAlgorithm::kRsaOaep);
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(crypto::ConstantTimeEquals(ok->span(), dek_));
}

TEST_F(WrapTest, Rsa15Refused) {
  auto w = ks_->WrapKey("", v1_.id, dek_, {}, WrapAlgorithm::kRsa15);
  EXPECT_EQ(w.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(w.status().message(), "RSA1_5 is not supported; use RSA-OAEP-256");
  std::vector<uint8_t> blob(256, 1);
  auto u = ks_->UnwrapKey("", v1_.id, blob, {}, WrapAlgorithm::kRsa15);
  EXPECT_EQ(u.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(u.status().message(), "RSA1_5 is not supported; use RSA-OAEP-256");
}

TEST_F(WrapTest, TamperedBlobWrongLabelWrongVersionAreCorruption) {
  auto blob = ks_->WrapKey("", v1_.id, dek_, Bytes("label"));
  ASSERT_TRUE(blob.ok());
  auto tampered = *blob;
  tampered[17] ^= 1;
  EXPECT_EQ(
      ks_->UnwrapKey("", v1_.id, tampered, Bytes("label")).status().kind(),
      ErrorKind::kCorruption);
  EXPECT_EQ(ks_->UnwrapKey("", v1_.id, *blob, Bytes("other")).status().kind(),
            ErrorKind::kCorruption);
  auto v2 = ks_.ImportKey("vault1", "k", "rsa2048-b");
  EXPECT_EQ(ks_->UnwrapKey("", v2.id, *blob, Bytes("label")).status().kind(),
            ErrorKind::kCorruption);
}

TEST_F(WrapTest, NeedsAVersionedId) {
  KeyId versionless{"vault1", "k", ""};
  auto w = ks_->WrapKey("", versionless, dek_, {});
  EXPECT_EQ(w.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(w.status().message().find("has no version"), std::string::npos);
  KeyId missing{"vault1", "nope", std::string(32, 'a')};
  EXPECT_EQ(ks_->WrapKey("", missing, dek_, {}).status().kind(),
            ErrorKind::kNotFound);
}

TEST_F(WrapTest, UnusableVersionsAreKeyUnavailableWithReason) {
  auto blob = ks_->WrapKey("", v1_.id, dek_, {});
  ASSERT_TRUE(blob.ok());
  auto expect_unavailable = [&](std::string_view reason) {
    auto w = ks_->WrapKey("", v1_.id, dek_, {});
    EXPECT_EQ(w.status().kind(), ErrorKind::kKeyUnavailable);
    EXPECT_NE(w.status().message().find(reason), std::string::npos)
        << w.status().message();
    auto u = ks_->UnwrapKey("", v1_.id, *blob, {});
    EXPECT_EQ(u.status().kind(), ErrorKind::kKeyUnavailable);
    EXPECT_NE(u.status().message().find(reason), std::string::npos);
    auto checked = ks_->CheckUsable(std::vector<UsabilityQuery>{{"", v1_.id}});
    ASSERT_EQ(checked.size(), 1u);
    EXPECT_EQ(checked[0].kind(), ErrorKind::kKeyUnavailable);
    EXPECT_NE(checked[0].message().find(reason), std::string::npos);
  };
  auto expect_usable = [&] {
    EXPECT_TRUE(ks_->UnwrapKey("", v1_.id, *blob, {}).ok());
    EXPECT_TRUE(
        ks_->CheckUsable(std::vector<UsabilityQuery>{{"", v1_.id}})[0].ok());
  };

  AttributeUpdate u;
  u.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1_.id, u).ok());
  expect_unavailable("key version disabled");
  u.enabled = true;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1_.id, u).ok());
  expect_usable();

  AttributeUpdate exp;
  exp.expires = ks_.now() + std::chrono::seconds(10);
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1_.id, exp).ok());
  expect_usable();
  ks_.Advance(std::chrono::seconds(10));
  expect_unavailable("expired");
  exp.expires = std::optional<TimePoint>();
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1_.id, exp).ok());
  expect_usable();

  AttributeUpdate nbf;
  nbf.not_before = ks_.now() + std::chrono::seconds(5);
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1_.id, nbf).ok());
  expect_unavailable("not yet valid");
  ks_.Advance(std::chrono::seconds(5));
  expect_usable();

  ASSERT_TRUE(ks_->DeleteKey("", "vault1", "k").ok());
  expect_unavailable("key deleted");
  ASSERT_TRUE(ks_->RecoverKey("", "vault1", "k").ok());
  expect_usable();
}

TEST_F(WrapTest, CheckUsableManyQueriesIncludingIdentity) {
  auto other = ks_.ImportKey("vault1", "other", "rsa2048-b");
  ASSERT_TRUE(ks_->SetAccessPolicy("", "vault1", "des-identity",
                                   Permission::kGet | Permission::kUnwrapKey)
                  .ok());
  AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", other.id, off).ok());
  std::vector<UsabilityQuery> q = {
      {"", v1_.id},
      {"des-identity", v1_.id},
      {"stranger", v1_.id},
      {"des-identity", other.id},
      {"", KeyId{"vault1", "gone", std::string(32, 'b')}},
      {"", KeyId{"no-vault", "k", std::string(32, 'b')}},
  };
  auto r = ks_->CheckUsable(q);
  ASSERT_EQ(r.size(), q.size());
  EXPECT_TRUE(r[0].ok());
  EXPECT_TRUE(r[1].ok());
  EXPECT_EQ(r[2].kind(), ErrorKind::kKeyUnavailable);
  EXPECT_NE(r[2].message().find("identity stranger lacks unwrapKey"),
            std::string::npos)
      << r[2].message();
  EXPECT_EQ(r[3].kind(), ErrorKind::kKeyUnavailable);
  EXPECT_NE(r[3].message().find("key version disabled"), std::string::npos);
  EXPECT_EQ(r[4].kind(), ErrorKind::kKeyUnavailable);
  EXPECT_EQ(r[5].kind(), ErrorKind::kKeyUnavailable);

  // Losing unwrapKey makes the identity's query fail.
  ASSERT_TRUE(ks_->SetAccessPolicy("", "vault1", "des-identity",
                                   static_cast<uint32_t>(Permission::kGet))
                  .ok());
  auto after = ks_->CheckUsable(std::span(q).subspan(1, 1));
  EXPECT_NE(after[0].message().find("lacks unwrapKey"), std::string::npos);
  // CheckUsable is not audited.
  auto audit = ks_->ReadAudit("vault1", {});
  for (const auto& e : *audit) EXPECT_NE(e.operation, "checkUsable");
}

TEST_F(WrapTest, ChangeCounterMovesOnEveryChangeButNotOnReadsOrAudit) {
  auto counter = [&] {
    auto c = ks_->ChangeCounter();
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : 0;
  };
  uint64_t c = counter();
  auto changed = [&](const char* what) {
    uint64_t now = counter();
    EXPECT_GT(now, c) << what;
    c = now;
  };
  auto unchanged = [&](const char* what) { EXPECT_EQ(counter(), c) << what; };

  ks_.MakeVault("vault2");
  changed("vault create");
  ASSERT_TRUE(ks_->SetAccessPolicy("", "vault1", "x",
                                   static_cast<uint32_t>(Permission::kGet))
                  .ok());
  changed("set policy");
  ASSERT_TRUE(ks_->DeleteAccessPolicy("", "vault1", "x").ok());
  changed("delete policy");
  auto v2 = ks_.ImportKey("vault1", "k", "rsa2048-b");
  changed("import version");
  AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v2.id, off).ok());
  changed("disable");
  ASSERT_TRUE(ks_->DeleteKey("", "vault1", "k").ok());
  changed("delete");
  ASSERT_TRUE(ks_->RecoverKey("", "vault1", "k").ok());
  changed("recover");
  RotationPolicy p;
  p.notify_before = std::chrono::hours(1);
  ASSERT_TRUE(ks_->SetRotationPolicy("", "vault1", "k", p).ok());
  changed("rotation policy");

  ASSERT_TRUE(ks_->GetKey("", "vault1", "k").ok());
  ASSERT_TRUE(ks_->ListKeys("", "vault1").ok());
  auto blob = ks_->WrapKey("", v1_.id, dek_, {});
  ASSERT_TRUE(ks_->UnwrapKey("", v1_.id, *blob, {}).ok());
  AuditEntry seal;
  seal.time = ks_.now();
  seal.identity = "engine";
  seal.operation = "disk.seal";
  seal.result = "ok";
  ASSERT_TRUE(ks_->AppendAudit("vault1", seal).ok());
  EXPECT_EQ(ks_->UnwrapKey("stranger", v1_.id, *blob, {}).status().kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_FALSE(ks_->RotateKey("", "vault1", "missing").ok());
  unchanged("reads, crypto, audit-only writes and refusals");
}

TEST_F(WrapTest, ConcurrentWrapUnwrapWithChangesAndAudit) {
  auto blob = ks_->WrapKey("", v1_.id, dek_, {});
  ASSERT_TRUE(blob.ok());
  constexpr int kThreads = 4;
  constexpr int kOps = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kOps; ++i) {
        auto w = ks_->WrapKey("", v1_.id, dek_, {});
        auto u = ks_->UnwrapKey("", v1_.id, *blob, {});
        if (!w.ok() || !u.ok() ||
            !crypto::ConstantTimeEquals(u->span(), dek_)) {
          ++failures;
        }
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < kOps; ++i) {
      if (!ks_->SetAccessPolicy("", "vault1", "app-" + std::to_string(i),
                                static_cast<uint32_t>(Permission::kGet))
               .ok()) {
        ++failures;
      }
      (void)ks_->ChangeCounter();
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto audit = ks_->ReadAudit("vault1", {});
  ASSERT_TRUE(audit.ok());
  size_t wraps = 0, unwraps = 0, policies = 0;
  for (const auto& e : *audit) {
    wraps += e.operation == "wrapKey";
    unwraps += e.operation == "unwrapKey";
    policies += e.operation == "vault.set-policy";
  }
  EXPECT_EQ(wraps, 1u + kThreads * kOps);
  EXPECT_EQ(unwraps, size_t{kThreads * kOps});
  EXPECT_EQ(policies, size_t{kOps});
}

}  // namespace
}  // namespace cmkfs::keystore
