// One shared suite for every KeyBackend implementation: the software backend
// and the PKCS#11 backend against real tokens: SoftHSM2 (the CKM_RSA_X_509
// fallback path) and NSS softokn (native CKM_RSA_PKCS_OAEP with SHA-256 and a
// label), each loaded directly and behind `p11-kit server` (remote HSM).
#include "key_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "keystore_test_util.h"
#include "test_tokens.h"

namespace cmkfs::keystore {
namespace {

using testing::Bytes;
using testing::Pem;

struct SoftwareBackendFactory {
  static constexpr const char* kName = "Software";
  // Each backend has its own master key and erase slot file (in a directory
  // that lives as long as the test process).
  static std::unique_ptr<KeyBackend> Create() {
    static testing::TempDir* dir = new testing::TempDir();
    static int n = 0;
    auto master = crypto::RandomSecret(32);
    EXPECT_TRUE(master.ok());
    auto slots =
        EraseSlotFile::Open(dir->path() / ("slots-" + std::to_string(n++)));
    EXPECT_TRUE(slots.ok()) << slots.status().ToString();
    return NewSoftwareKeyBackend(*master, std::move(*slots));
  }
  // A backend that does not hold the keys of the others: another master key.
  static std::unique_ptr<KeyBackend> CreateIsolated() { return Create(); }
};

template <test_tokens::Kind kKind, test_tokens::Transport kTransport>
struct TokenBackendFactory {
  static constexpr bool kNativeOaep = kKind == test_tokens::Kind::kNss;
  static constexpr const char* kName =
      kKind == test_tokens::Kind::kNss
          ? (kTransport == test_tokens::Transport::kDirect ? "NssDirect"
                                                           : "NssP11Kit")
          : (kTransport == test_tokens::Transport::kDirect ? "SoftHsmDirect"
                                                           : "SoftHsmP11Kit");
  static const test_tokens::Token& Token() {
    static const test_tokens::Token* token = [] {
      auto t = test_tokens::Get(kKind, kTransport);
      EXPECT_TRUE(t.ok()) << t.status().ToString();
      return new test_tokens::Token(t.ok() ? *t : test_tokens::Token{});
    }();
    return *token;
  }
  static std::unique_ptr<KeyBackend> Create() {
    return NewPkcs11KeyBackend(Token().config);
  }
  // Another token reached the same way, which does not hold the key.
  static std::unique_ptr<KeyBackend> CreateIsolated() {
    return NewPkcs11KeyBackend(Token().isolated);
  }
};
using SoftHsmDirect = TokenBackendFactory<test_tokens::Kind::kSoftHsm,
                                          test_tokens::Transport::kDirect>;
using NssDirect = TokenBackendFactory<test_tokens::Kind::kNss,
                                      test_tokens::Transport::kDirect>;
using SoftHsmP11Kit = TokenBackendFactory<test_tokens::Kind::kSoftHsm,
                                          test_tokens::Transport::kP11Kit>;
using NssP11Kit = TokenBackendFactory<test_tokens::Kind::kNss,
                                      test_tokens::Transport::kP11Kit>;

template <typename Factory>
class KeyBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = Factory::Create();
    // A fresh version per test: the token outlives a test.
    id_ = "cmk://vault1/keys/k/" + *crypto::RandomHex(16);
  }
  std::unique_ptr<KeyBackend> backend_;
  std::string id_;
  const std::vector<uint8_t> dek_ = std::vector<uint8_t>(64, 0x42);
};

using BackendTypes = ::testing::Types<SoftwareBackendFactory, SoftHsmDirect,
                                      NssDirect, SoftHsmP11Kit, NssP11Kit>;
// Test names carry the backend: KeyBackendTest/NssP11Kit.GenerateWrapUnwrap.
struct FactoryNames {
  template <typename Factory>
  static std::string GetName(int) {
    return Factory::kName;
  }
};
TYPED_TEST_SUITE(KeyBackendTest, BackendTypes, FactoryNames);

TYPED_TEST(KeyBackendTest, GenerateWrapUnwrap) {
  auto key = this->backend_->Generate(2048, this->id_);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->bits, 2048);
  auto pub = crypto::RsaKey::FromPublicDer(key->public_der);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->bits(), 2048);
  for (auto hash : {crypto::OaepHash::kSha256, crypto::OaepHash::kSha1}) {
    auto blob =
        this->backend_->Wrap(*key, this->id_, this->dek_, Bytes("label"), hash);
    ASSERT_TRUE(blob.ok());
    auto out =
        this->backend_->Unwrap(*key, this->id_, *blob, Bytes("label"), hash);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(crypto::ConstantTimeEquals(out->span(), this->dek_));
  }
}

TYPED_TEST(KeyBackendTest, ImportKeepsThePublicKey) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  ASSERT_TRUE(rsa.ok());
  auto key = this->backend_->Import(*rsa, this->id_);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->public_der, *rsa->PublicDer());
  // What the backend wraps, the original private key unwraps.
  auto blob = this->backend_->Wrap(*key, this->id_, this->dek_, {},
                                   crypto::OaepHash::kSha256);
  ASSERT_TRUE(blob.ok());
  EXPECT_TRUE(rsa->Unwrap(*blob, {}, crypto::OaepHash::kSha256).ok());
  // And the other way round.
  auto theirs = rsa->Wrap(this->dek_, {}, crypto::OaepHash::kSha256);
  auto out = this->backend_->Unwrap(*key, this->id_, *theirs, {},
                                    crypto::OaepHash::kSha256);
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(crypto::ConstantTimeEquals(out->span(), this->dek_));
}

TYPED_TEST(KeyBackendTest, ImportRefusesPublicOnlyKey) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto pub = crypto::RsaKey::FromPublicDer(*rsa->PublicDer());
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(this->backend_->Import(*pub, this->id_).status().kind(),
            ErrorKind::kInvalidArgument);
}

TYPED_TEST(KeyBackendTest, MaterialIsBoundToItsKeyId) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto key = this->backend_->Import(*rsa, this->id_);
  ASSERT_TRUE(key.ok());
  auto blob = this->backend_->Wrap(*key, this->id_, this->dek_, {},
                                   crypto::OaepHash::kSha256);
  const std::string other =
      "cmk://vault1/keys/k/ffffffffffffffffffffffffffffffff";
  EXPECT_EQ(
      this->backend_->Unwrap(*key, other, *blob, {}, crypto::OaepHash::kSha256)
          .status()
          .kind(),
      ErrorKind::kCorruption);
}

TYPED_TEST(KeyBackendTest, UnwrapFailuresAreCorruption) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto key = this->backend_->Import(*rsa, this->id_);
  auto blob = this->backend_->Wrap(*key, this->id_, this->dek_, Bytes("a"),
                                   crypto::OaepHash::kSha256);
  ASSERT_TRUE(blob.ok());
  auto tampered = *blob;
  tampered[0] ^= 0x80;
  auto unwrap = [&](std::span<const uint8_t> b, std::string_view label,
                    crypto::OaepHash h) {
    return this->backend_->Unwrap(*key, this->id_, b, Bytes(label), h)
        .status()
        .kind();
  };
  EXPECT_EQ(unwrap(tampered, "a", crypto::OaepHash::kSha256),
            ErrorKind::kCorruption);
  EXPECT_EQ(unwrap(*blob, "b", crypto::OaepHash::kSha256),
            ErrorKind::kCorruption);
  EXPECT_EQ(unwrap(*blob, "a", crypto::OaepHash::kSha1),
            ErrorKind::kCorruption);
}

TYPED_TEST(KeyBackendTest, AnotherInstanceWithoutTheKeyCannotUnwrap) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto key = this->backend_->Import(*rsa, this->id_);
  auto blob = this->backend_->Wrap(*key, this->id_, this->dek_, {},
                                   crypto::OaepHash::kSha256);
  auto other = TypeParam::CreateIsolated();
  EXPECT_EQ(other->Unwrap(*key, this->id_, *blob, {}, crypto::OaepHash::kSha256)
                .status()
                .kind(),
            ErrorKind::kCorruption);
}

TYPED_TEST(KeyBackendTest, DestroyedKeyNoLongerUnwraps) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto key = this->backend_->Import(*rsa, this->id_);
  ASSERT_TRUE(key.ok());
  auto blob = this->backend_->Wrap(*key, this->id_, this->dek_, {},
                                   crypto::OaepHash::kSha256);
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(
      this->backend_
          ->Unwrap(*key, this->id_, *blob, {}, crypto::OaepHash::kSha256)
          .ok());
  EXPECT_TRUE(this->backend_->Destroy(*key, this->id_).ok());
  // The same stored record (a stale copy of it, as LMDB keeps) is useless.
  EXPECT_FALSE(
      this->backend_
          ->Unwrap(*key, this->id_, *blob, {}, crypto::OaepHash::kSha256)
          .ok());
  EXPECT_TRUE(this->backend_->Destroy(*key, this->id_).ok());  // idempotent
}

TYPED_TEST(KeyBackendTest, GeneratedKeyUnwrapsWhatTheSoftwareKeyWraps) {
  auto key = this->backend_->Generate(2048, this->id_);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto pub = crypto::RsaKey::FromPublicDer(key->public_der);
  ASSERT_TRUE(pub.ok());
  for (std::string_view label : {"", "disk-label"}) {
    auto blob = pub->Wrap(this->dek_, Bytes(label), crypto::OaepHash::kSha256);
    ASSERT_TRUE(blob.ok());
    auto out = this->backend_->Unwrap(*key, this->id_, *blob, Bytes(label),
                                      crypto::OaepHash::kSha256);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(crypto::ConstantTimeEquals(out->span(), this->dek_));
  }
}

TYPED_TEST(KeyBackendTest, ConcurrentUnwrapsFromFourThreads) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto key = this->backend_->Import(*rsa, this->id_);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto blob = this->backend_->Wrap(*key, this->id_, this->dek_, Bytes("l"),
                                   crypto::OaepHash::kSha256);
  ASSERT_TRUE(blob.ok());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto out = this->backend_->Unwrap(*key, this->id_, *blob, Bytes("l"),
                                          crypto::OaepHash::kSha256);
        if (out.ok() && crypto::ConstantTimeEquals(out->span(), this->dek_)) {
          ++good;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 100);
}

// What the token keeps about keys the backend creates and imports: private,
// sensitive, not extractable, and, where the token keeps
// CKA_ALLOWED_MECHANISMS, limited to the mechanisms the backend uses. SoftHSM
// 2.6 (no native OAEP-SHA256: the raw fallback) keeps it: {CKM_RSA_PKCS_OAEP,
// CKM_RSA_X_509}. NSS softokn 3.87 does OAEP-SHA256 with a label itself (the
// backend unwraps natively) but refuses the attribute on token objects, so its
// keys are made without it and the token still allows a raw decryption.
template <typename Factory>
class TokenKeyTest : public KeyBackendTest<Factory> {};
using TokenTypes =
    ::testing::Types<SoftHsmDirect, NssDirect, SoftHsmP11Kit, NssP11Kit>;
TYPED_TEST_SUITE(TokenKeyTest, TokenTypes, FactoryNames);

TYPED_TEST(TokenKeyTest, KeysAreSensitiveNonExtractableAndLimited) {
  const std::vector<unsigned long> expected = {0x3, 0x9};  // X_509, OAEP
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  ASSERT_TRUE(rsa.ok());
  const std::string imported = this->id_ + "-imported";
  ASSERT_TRUE(this->backend_->Generate(2048, this->id_).ok());
  ASSERT_TRUE(this->backend_->Import(*rsa, imported).ok());
  for (const std::string& id : {this->id_, imported}) {
    auto f = InspectPkcs11Key(*this->backend_, id);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_TRUE(f->found) << id;
    EXPECT_TRUE(f->on_token) << id;
    EXPECT_TRUE(f->sensitive) << id;
    EXPECT_FALSE(f->extractable) << id;
    EXPECT_FALSE(f->private_exponent_readable) << id;
    EXPECT_EQ(f->unwraps_natively, TypeParam::kNativeOaep) << id;
    EXPECT_TRUE(f->raw_decrypt_allowed) << id;
    if (TypeParam::kNativeOaep) {
      EXPECT_FALSE(f->allowed_mechanisms_set) << id;
    } else {
      EXPECT_TRUE(f->allowed_mechanisms_set) << id;
      std::vector<unsigned long> got = f->allowed_mechanisms;
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, expected) << id;
    }
  }
}

// Bad input: a wrong PIN is one line naming the token and the config key,
// directly and through p11-kit.
TYPED_TEST(TokenKeyTest, WrongPinIsNamed) {
  auto backend = NewPkcs11KeyBackend(TypeParam::Token().wrong_pin);
  Status s = backend->Generate(2048, this->id_).status();
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message(), "PKCS#11 login to token " +
                             TypeParam::Token().config.token_label +
                             " failed: wrong PIN (CKR_PIN_INCORRECT); check "
                             "[pkcs11] pin_file " +
                             TypeParam::Token().wrong_pin.pin_file.string());
}

// Material written before erase slots (sealed under the master key alone)
// still opens, and so does material that starts like the slotted format.
TEST(SoftwareKeyBackendTest, MaterialSealedUnderTheMasterKeyAloneStillOpens) {
  testing::TempDir dir;
  auto master = crypto::RandomSecret(32);
  ASSERT_TRUE(master.ok());
  auto slots = EraseSlotFile::Open(dir.path() / "erase-slots");
  ASSERT_TRUE(slots.ok());
  auto backend = NewSoftwareKeyBackend(*master, std::move(*slots));
  const std::string id = "cmk://vault1/keys/old/0123";
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto stored = StoredPublicPart(*rsa);
  auto der = rsa->PrivateDer();
  ASSERT_TRUE(stored.ok() && der.ok());
  auto legacy = crypto::AeadSeal(*master, der->span(), Bytes(id));
  ASSERT_TRUE(legacy.ok());
  stored->material = *legacy;
  const std::vector<uint8_t> dek(64, 7);
  auto blob = rsa->Wrap(dek, {}, crypto::OaepHash::kSha256);
  auto out = backend->Unwrap(*stored, id, *blob, {}, crypto::OaepHash::kSha256);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE(std::ranges::equal(out->span(), dek));
  EXPECT_TRUE(backend->Destroy(*stored, id).ok());  // nothing it can erase
}

}  // namespace
}  // namespace cmkfs::keystore
