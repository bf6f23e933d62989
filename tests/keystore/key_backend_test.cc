// One shared suite for every KeyBackend implementation: the software backend
// and the PKCS#11 backend against a real SoftHSM2 token.
#include "key_backend.h"

#include <gtest/gtest.h>

#include <thread>

#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::Bytes;
using testing::Pem;

struct SoftwareBackendFactory {
  static std::unique_ptr<KeyBackend> Create() {
    auto master = crypto::RandomSecret(32);
    EXPECT_TRUE(master.ok());
    return NewSoftwareKeyBackend(*master);
  }
  // A backend that does not hold the keys of the others: another master key.
  static std::unique_ptr<KeyBackend> CreateIsolated() { return Create(); }
};

struct Pkcs11BackendFactory {
  static std::unique_ptr<KeyBackend> Create() {
    return NewPkcs11KeyBackend(testing::SoftHsmTokens().token);
  }
  // Another token of the same module.
  static std::unique_ptr<KeyBackend> CreateIsolated() {
    return NewPkcs11KeyBackend(testing::SoftHsmTokens().other_token);
  }
};

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

using BackendTypes =
    ::testing::Types<SoftwareBackendFactory, Pkcs11BackendFactory>;
TYPED_TEST_SUITE(KeyBackendTest, BackendTypes);

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

TYPED_TEST(KeyBackendTest, DestroySucceeds) {
  auto rsa = crypto::RsaKey::FromPrivatePem(Pem("rsa2048"));
  auto key = this->backend_->Import(*rsa, this->id_);
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(this->backend_->Destroy(*key, this->id_).ok());
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

}  // namespace
}  // namespace cmkfs::keystore
