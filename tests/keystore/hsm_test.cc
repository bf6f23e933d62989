// RSA-HSM keys through the keystore, against a real SoftHSM2 token.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "cmkfs/keystore.h"
#include "key_backend.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using std::chrono::seconds;
using testing::Bytes;
using testing::Pem;
using testing::SoftHsmTokens;
using testing::TestKeyStore;

class HsmTest : public ::testing::Test {
 protected:
  HsmTest() : ks_(SoftHsmTokens().token) {}
  void SetUp() override {
    ks_.MakeVault("prem", false, VaultSku::kPremium);
    ks_.MakeVault("std");
  }
  // What the token says about a version's private key, asked through a
  // backend of its own.
  TokenKeyFacts Facts(const KeyId& id) {
    auto backend = NewPkcs11KeyBackend(SoftHsmTokens().token);
    auto facts = InspectPkcs11Key(*backend, id.ToString());
    EXPECT_TRUE(facts.ok()) << facts.status().ToString();
    return facts.ok() ? *facts : TokenKeyFacts{};
  }
  void ExpectWrapUnwrap(const KeyId& id) {
    auto blob = ks_->WrapKey("", id, dek_, Bytes("disk-1"));
    ASSERT_TRUE(blob.ok()) << blob.status().ToString();
    auto out = ks_->UnwrapKey("", id, *blob, Bytes("disk-1"));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(crypto::ConstantTimeEquals(out->span(), dek_));
  }
  TestKeyStore ks_;
  const std::vector<uint8_t> dek_ = std::vector<uint8_t>(64, 0x5a);
};

TEST_F(HsmTest, CreatesEachSizeInsideTheTokenNonExtractable) {
  for (int bits : {2048, 3072, 4096}) {
    const std::string name = "k" + std::to_string(bits);
    auto v = ks_->CreateKey("", "prem", name, KeyType::kRsaHsm, bits);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->kty, KeyType::kRsaHsm);
    EXPECT_EQ(v->bits, bits);
    EXPECT_EQ(crypto::RsaKey::FromPublicDer(v->public_der)->bits(), bits);
    ExpectWrapUnwrap(v->id);
    TokenKeyFacts f = Facts(v->id);
    EXPECT_TRUE(f.found);
    EXPECT_TRUE(f.on_token);
    EXPECT_TRUE(f.sensitive);
    EXPECT_FALSE(f.extractable);
    EXPECT_FALSE(f.private_exponent_readable);
  }
  EXPECT_EQ(ks_->GetKey("", "prem", "k2048")->kty, KeyType::kRsaHsm);
}

TEST_F(HsmTest, RefusesSizesOtherThan2048To4096) {
  auto v = ks_->CreateKey("", "prem", "k", KeyType::kRsaHsm, 1024);
  EXPECT_EQ(v.status().kind(), ErrorKind::kInvalidArgument);
}

TEST_F(HsmTest, StandardVaultRefusesHsmKeys) {
  auto v = ks_->CreateKey("", "std", "k", KeyType::kRsaHsm, 2048);
  EXPECT_EQ(v.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(v.status().message(),
            "RSA-HSM keys need a premium vault; this vault's SKU is standard");
  auto imported =
      ks_->ImportKey("", "std", "k", Pem("rsa2048"), KeyType::kRsaHsm);
  EXPECT_EQ(imported.status().kind(), ErrorKind::kFailedPrecondition);
}

TEST(HsmDisabledTest, PremiumVaultWithoutModuleNamesTheConfigKeys) {
  TestKeyStore ks;
  ks.MakeVault("prem", false, VaultSku::kPremium);
  auto v = ks->CreateKey("", "prem", "k", KeyType::kRsaHsm, 2048);
  EXPECT_EQ(v.status().kind(), ErrorKind::kNotSupported);
  EXPECT_NE(v.status().message().find(
                "set [pkcs11] module, token_label and pin_file"),
            std::string::npos)
      << v.status().message();
}

TEST_F(HsmTest, ImportPutsTheKeyInTheTokenNonExtractable) {
  auto v = ks_->ImportKey("", "prem", "imp", Pem("rsa3072"), KeyType::kRsaHsm);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->bits, 3072);
  EXPECT_EQ(v->public_der,
            *crypto::RsaKey::FromPrivatePem(Pem("rsa3072"))->PublicDer());
  ExpectWrapUnwrap(v->id);
  TokenKeyFacts f = Facts(v->id);
  EXPECT_TRUE(f.found);
  EXPECT_TRUE(f.sensitive);
  EXPECT_FALSE(f.extractable);
  EXPECT_FALSE(f.private_exponent_readable);
}

TEST_F(HsmTest, BlobsInteroperateWithASoftwareKeyOfTheSamePem) {
  auto hsm = ks_->ImportKey("", "prem", "h", Pem("rsa2048"), KeyType::kRsaHsm);
  auto sw = ks_->ImportKey("", "std", "s", Pem("rsa2048"), KeyType::kRsa);
  ASSERT_TRUE(hsm.ok()) << hsm.status().ToString();
  ASSERT_TRUE(sw.ok()) << sw.status().ToString();
  for (auto alg : {WrapAlgorithm::kRsaOaep256, WrapAlgorithm::kRsaOaep}) {
    for (std::string_view label : {"", "disk-7"}) {
      auto from_sw = ks_->WrapKey("", sw->id, dek_, Bytes(label), alg);
      ASSERT_TRUE(from_sw.ok());
      auto a = ks_->UnwrapKey("", hsm->id, *from_sw, Bytes(label), alg);
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      EXPECT_TRUE(crypto::ConstantTimeEquals(a->span(), dek_));
      auto from_hsm = ks_->WrapKey("", hsm->id, dek_, Bytes(label), alg);
      ASSERT_TRUE(from_hsm.ok());
      auto b = ks_->UnwrapKey("", sw->id, *from_hsm, Bytes(label), alg);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      EXPECT_TRUE(crypto::ConstantTimeEquals(b->span(), dek_));
      // A wrong label is refused by the token path too.
      EXPECT_EQ(ks_->UnwrapKey("", hsm->id, *from_sw, Bytes("other"), alg)
                    .status()
                    .kind(),
                ErrorKind::kCorruption);
    }
  }
}

TEST_F(HsmTest, ConcurrentUnwrapsFromFourThreads) {
  auto v = ks_->ImportKey("", "prem", "c", Pem("rsa2048"), KeyType::kRsaHsm);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  auto blob = ks_->WrapKey("", v->id, dek_, Bytes("x"));
  ASSERT_TRUE(blob.ok());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto out = ks_->UnwrapKey("", v->id, *blob, Bytes("x"));
        good += out.ok() && crypto::ConstantTimeEquals(out->span(), dek_);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 80);
}

TEST_F(HsmTest, LifecycleVersionsRotationDisableDeletePurge) {
  auto v1 = ks_->ImportKey("", "prem", "k", Pem("rsa2048"), KeyType::kRsaHsm);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  auto blob1 = ks_->WrapKey("", v1->id, dek_, Bytes("l"));
  // Rotation: a new token object, the old version still unwraps.
  auto v2 = ks_->RotateKey("", "prem", "k");
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ(v2->kty, KeyType::kRsaHsm);
  EXPECT_EQ(v2->bits, 2048);
  EXPECT_NE(v2->public_der, v1->public_der);
  EXPECT_TRUE(Facts(v2->id).found);
  EXPECT_TRUE(ks_->UnwrapKey("", v1->id, *blob1, Bytes("l")).ok());
  ExpectWrapUnwrap(v2->id);
  // Import of a software key as a new version of an HSM key is refused.
  EXPECT_EQ(ks_->ImportKey("", "prem", "k", Pem("rsa2048"), KeyType::kRsa)
                .status()
                .kind(),
            ErrorKind::kInvalidArgument);
  // Disabled: unavailable.
  AttributeUpdate disable;
  disable.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1->id, disable).ok());
  EXPECT_EQ(ks_->UnwrapKey("", v1->id, *blob1, Bytes("l")).status().kind(),
            ErrorKind::kKeyUnavailable);
  // Access policy: an identity without unwrapKey is refused.
  ASSERT_TRUE(ks_->SetAccessPolicy("", "prem", "reader",
                                   static_cast<PermissionSet>(Permission::kGet))
                  .ok());
  auto blob2 = ks_->WrapKey("", v2->id, dek_, {});
  EXPECT_EQ(ks_->UnwrapKey("reader", v2->id, *blob2, {}).status().kind(),
            ErrorKind::kPermissionDenied);
  // Soft delete and recover keep the token objects.
  ASSERT_TRUE(ks_->DeleteKey("", "prem", "k").ok());
  EXPECT_EQ(ks_->UnwrapKey("", v2->id, *blob2, {}).status().kind(),
            ErrorKind::kKeyUnavailable);
  EXPECT_TRUE(Facts(v2->id).found);
  ASSERT_TRUE(ks_->RecoverKey("", "prem", "k").ok());
  EXPECT_TRUE(ks_->UnwrapKey("", v2->id, *blob2, {}).ok());
  // Purge destroys every version's token objects.
  ASSERT_TRUE(ks_->DeleteKey("", "prem", "k").ok());
  ASSERT_TRUE(ks_->PurgeKey("", "prem", "k").ok());
  EXPECT_FALSE(Facts(v1->id).found);
  EXPECT_FALSE(Facts(v2->id).found);
  // Every step is audited.
  auto audit = ks_->ReadAudit("prem", AuditFilter{"k", std::nullopt});
  ASSERT_TRUE(audit.ok());
  size_t unwraps = 0, purges = 0;
  for (const auto& e : *audit) {
    unwraps += e.operation == "unwrapKey";
    purges += e.operation == "key.purge" && e.result == "ok";
  }
  EXPECT_GE(unwraps, 5u);
  EXPECT_EQ(purges, 1u);
}

TEST_F(HsmTest, RotationPolicyRotatesHsmKeys) {
  auto v1 = ks_->ImportKey("", "prem", "k", Pem("rsa2048"), KeyType::kRsaHsm);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  RotationPolicy p;
  p.rotate_after = seconds(60);
  ASSERT_TRUE(ks_->SetRotationPolicy("", "prem", "k", p).ok());
  ks_.Advance(seconds(61));
  auto created = ks_->ApplyRotationPolicies();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_EQ(created->size(), 1u);
  auto v2 = ks_->GetKeyVersion("", (*created)[0]);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->kty, KeyType::kRsaHsm);
  EXPECT_TRUE(Facts(v2->id).found);
  ExpectWrapUnwrap(v2->id);
}

TEST_F(HsmTest, KeysSurviveReopeningTheKeystore) {
  auto v = ks_->CreateKey("", "prem", "k", KeyType::kRsaHsm, 2048);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  auto blob = ks_->WrapKey("", v->id, dek_, Bytes("l"));
  ks_.Reopen();
  auto out = ks_->UnwrapKey("", v->id, *blob, Bytes("l"));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE(crypto::ConstantTimeEquals(out->span(), dek_));
}

// The token going away under a running keystore (here: the module is
// finalized behind its back) is an IOError naming the token and the CKR
// code; the next operation reconnects by itself.
TEST_F(HsmTest, UnreachableTokenIsNamedAndTheNextCallReconnects) {
  auto v = ks_->ImportKey("", "prem", "k", Pem("rsa2048"), KeyType::kRsaHsm);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  auto blob = ks_->WrapKey("", v->id, dek_, Bytes("l"));
  ASSERT_TRUE(ks_->UnwrapKey("", v->id, *blob, Bytes("l")).ok());
  void* module =
      ::dlopen(SoftHsmTokens().token.module.c_str(), RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(module, nullptr);
  auto finalize =
      reinterpret_cast<unsigned long (*)(void*)>(::dlsym(module, "C_Finalize"));
  ASSERT_NE(finalize, nullptr);
  EXPECT_EQ(finalize(nullptr), 0ul);
  auto lost = ks_->UnwrapKey("", v->id, *blob, Bytes("l"));
  EXPECT_EQ(lost.status().kind(), ErrorKind::kIOError);
  EXPECT_EQ(lost.status().message(),
            "PKCS#11 token cmkfs unreachable: C_DecryptInit returned "
            "CKR_CRYPTOKI_NOT_INITIALIZED");
  auto again = ks_->UnwrapKey("", v->id, *blob, Bytes("l"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(crypto::ConstantTimeEquals(again->span(), dek_));
  ::dlclose(module);
}

// Each configuration error fails the HSM operation with one clear line and
// leaves no key behind; software keys keep working.
Status CreateWith(const Config::Pkcs11& cfg) {
  TestKeyStore ks(cfg);
  ks.MakeVault("prem", false, VaultSku::kPremium);
  auto v = ks->CreateKey("", "prem", "k", KeyType::kRsaHsm, 2048);
  EXPECT_EQ(ks->GetKey("", "prem", "k").status().kind(), ErrorKind::kNotFound);
  EXPECT_TRUE(ks->CreateKey("", "prem", "soft", KeyType::kRsa, 2048).ok());
  return v.status();
}

TEST(HsmConfigTest, MissingModule) {
  Config::Pkcs11 cfg = SoftHsmTokens().token;
  cfg.module = "/nonexistent/libnope.so";
  Status s = CreateWith(cfg);
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind(
                "PKCS#11 module /nonexistent/libnope.so cannot be loaded: ", 0),
            0u)
      << s.message();
}

TEST(HsmConfigTest, MissingToken) {
  Config::Pkcs11 cfg = SoftHsmTokens().token;
  cfg.token_label = "absent";
  Status s = CreateWith(cfg);
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("no PKCS#11 token labelled 'absent' in module "
                              "/usr/lib/softhsm/libsofthsm2.so; initialise "
                              "one with softhsm2-util --init-token",
                              0),
            0u)
      << s.message();
}

TEST(HsmConfigTest, WrongPin) {
  Config::Pkcs11 cfg = SoftHsmTokens().other_token;
  cfg.pin_file = SoftHsmTokens().wrong_pin_file;
  Status s = CreateWith(cfg);
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("PKCS#11 login to token cmkfs-other failed: "
                              "wrong PIN (CKR_PIN_INCORRECT)",
                              0),
            0u)
      << s.message();
}

// Issue 14 item 9: a 0644 PIN file was accepted. The PIN file must be
// private and owned by root (or us); the module must not be writable by
// others, since the daemon loads it as root.
TEST(HsmConfigTest, PinFileOthersCanReadIsRefused) {
  Config::Pkcs11 cfg = SoftHsmTokens().token;
  const std::filesystem::path pin = SoftHsmTokens().dir / "shared.pin";
  std::filesystem::copy_file(SoftHsmTokens().token.pin_file, pin,
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(::chmod(pin.c_str(), 0644), 0);
  cfg.pin_file = pin;
  Status s = CreateWith(cfg);
  EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("PKCS#11 PIN file " + pin.string() +
                                  " (owner uid " + std::to_string(::geteuid()) +
                                  ", mode 0644) must be owned by ",
                              0),
            0u)
      << s.message();
  EXPECT_NE(s.message().find("chmod 600 " + pin.string()), std::string::npos)
      << s.message();
  if (::geteuid() == 0) {
    ASSERT_EQ(::chmod(pin.c_str(), 0600), 0);
    ASSERT_EQ(::chown(pin.c_str(), 65534, 65534), 0);
    Status foreign = CreateWith(cfg);
    EXPECT_EQ(foreign.message().rfind("PKCS#11 PIN file " + pin.string() +
                                          " (owner uid 65534, mode 0600) "
                                          "must be owned by root",
                                      0),
              0u)
        << foreign.message();
  }
  std::filesystem::remove(pin);
}

TEST(HsmConfigTest, ModuleOthersCanWriteIsNotLoaded) {
  Config::Pkcs11 cfg = SoftHsmTokens().token;
  const std::filesystem::path module = SoftHsmTokens().dir / "libevil.so";
  std::filesystem::copy_file(std::filesystem::canonical(cfg.module), module,
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(::chmod(module.c_str(), 0666), 0);
  cfg.module = module;
  Status s = CreateWith(cfg);
  EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("PKCS#11 module " + module.string() +
                                  " (owner uid " + std::to_string(::geteuid()) +
                                  ", mode 0666) must be owned by ",
                              0),
            0u)
      << s.message();
  std::filesystem::remove(module);
}

TEST(HsmConfigTest, UnreadablePinFile) {
  Config::Pkcs11 cfg = SoftHsmTokens().token;
  cfg.pin_file = "/nonexistent/hsm.pin";
  Status s = CreateWith(cfg);
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind(
                "PKCS#11 PIN file /nonexistent/hsm.pin cannot be read", 0),
            0u)
      << s.message();
}

}  // namespace
}  // namespace cmkfs::keystore
