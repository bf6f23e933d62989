// End to end with an HSM key: a disk on a DES whose key is an RSA-HSM key in
// a real token works, seals when the key is disabled, and survives rotation
// of the key. Tokens (tests/support/test_tokens.h): SoftHSM2 (raw RSA
// fallback), NSS softokn (native OAEP-SHA256) directly and NSS softokn
// behind `p11-kit server` (a remote HSM).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/watcher.h"
#include "test_tokens.h"

namespace cmkfs::fs {
namespace {

namespace stdfs = std::filesystem;

// Test code only: gtest reports the exception as the test's failure.
template <typename T>
T ValueOr(Result<T> r, const char* what) {
  if (!r.ok()) {
    throw std::runtime_error(std::string(what) + ": " + r.status().ToString());
  }
  return std::move(r).value();
}
#define HSM_ASSERT_OK(expr) ValueOr((expr), #expr)

std::vector<uint8_t> Pattern(uint8_t seed) {
  std::vector<uint8_t> p(64 << 10);
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = static_cast<uint8_t>(i * 13 + seed + (i >> 12));
  }
  return p;
}

using TokenParam = std::pair<test_tokens::Kind, test_tokens::Transport>;

class HsmE2eTest : public ::testing::TestWithParam<TokenParam> {
 protected:
  void SetUp() override {
    std::string tmpl =
        (stdfs::temp_directory_path() / "cmkfs-hsm-e2e-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    // A token private to this test process.
    auto token = test_tokens::Get(GetParam().first, GetParam().second);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = token->config;
    Open();
    keystore::VaultSpec vault;
    vault.name = "vlt";
    vault.sku = keystore::VaultSku::kPremium;
    vault.purge_protection = true;
    ASSERT_TRUE(ks_->CreateVault(vault).ok());
    v1_ = HSM_ASSERT_OK(
        ks_->CreateKey("", "vlt", "k", keystore::KeyType::kRsaHsm, 2048));
    DesSpec des;
    des.name = "des1";
    des.key_id = HSM_ASSERT_OK(keystore::KeyId::Parse("cmk://vlt/keys/k"));
    des.auto_rotate = true;
    DesInfo info = HSM_ASSERT_OK(engine_->CreateDes(des));
    ASSERT_TRUE(
        ks_->SetAccessPolicy(
               "", "vlt", info.identity,
               keystore::Permission::kGet | keystore::Permission::kWrapKey |
                   static_cast<uint32_t>(keystore::Permission::kUnwrapKey))
            .ok());
    DiskSpec disk;
    disk.name = "d1";
    disk.size = 4ull << 20;
    disk.des = "des1";
    HSM_ASSERT_OK(engine_->CreateDisk(disk));
  }

  void TearDown() override {
    engine_.reset();
    ks_.reset();
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
  }

  void Open() {
    keystore::KeyStoreOptions ko;
    ko.dir = dir_ / "vault";
    ko.master_key_file = dir_ / "vault.key";
    ko.pkcs11 = token_;
    ko.hsm_enabled = true;
    ks_ = HSM_ASSERT_OK(keystore::OpenKeyStore(ko));
    EngineOptions eo;
    eo.dir = dir_ / "engine";
    engine_ = HSM_ASSERT_OK(OpenEngine(eo, ks_.get()));
  }

  void Write(DiskHandle& h, uint8_t seed) {
    std::vector<uint8_t> p = Pattern(seed);
    Result<size_t> n = h.Write(8192, p);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
  }
  void ExpectData(DiskHandle& h, uint8_t seed) {
    std::vector<uint8_t> got(64 << 10);
    Result<size_t> n = h.Read(8192, got);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_TRUE(got == Pattern(seed)) << "data differs from what was written";
  }
  // `key_disabled`: the auto-rotating DES cannot resolve a latest version
  // while its only version is disabled, which the poll reports as an error.
  PollReport Poll(KeyWatcher& w, bool key_disabled = false) {
    auto r = w.PollOnce();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    for (const std::string& e : r->errors) {
      if (!key_disabled ||
          e.find("has no enabled version") == std::string::npos) {
        ADD_FAILURE() << "poll: " << e;
      }
    }
    return *r;
  }
  Status SetEnabled(const keystore::KeyId& id, bool enabled) {
    keystore::AttributeUpdate u;
    u.enabled = enabled;
    return ks_->UpdateKeyAttributes("", id, u).status();
  }

  stdfs::path dir_;
  Config::Pkcs11 token_;
  std::unique_ptr<keystore::KeyStore> ks_;
  std::unique_ptr<Engine> engine_;
  keystore::KeyVersionInfo v1_;
};

TEST_P(HsmE2eTest, DiskWorksSealsWhenDisabledAndSurvivesRotation) {
  ASSERT_EQ(ks_->GetKey("", "vlt", "k")->kty, keystore::KeyType::kRsaHsm);
  std::shared_ptr<DiskHandle> h =
      HSM_ASSERT_OK(engine_->Open(ResourceKind::kDisk, "d1", true));
  Write(*h, 1);
  ExpectData(*h, 1);
  auto watcher =
      std::make_unique<KeyWatcher>(engine_.get(), ks_.get(), WatcherOptions{});
  EXPECT_TRUE(Poll(*watcher).sealed.empty());

  // Disabled HSM key: the disk seals, the open handle stops working.
  ASSERT_TRUE(SetEnabled(v1_.id, false).ok());
  EXPECT_EQ(Poll(*watcher, /*key_disabled=*/true).sealed,
            std::vector<std::string>{"disks/d1"});
  std::vector<uint8_t> buf(4096);
  Result<size_t> r = h->Read(8192, buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_EQ(HSM_ASSERT_OK(engine_->Get(ResourceKind::kDisk, "d1")).state,
            ResourceState::kSealed);

  // Enabled again: unsealed, data intact.
  ASSERT_TRUE(SetEnabled(v1_.id, true).ok());
  EXPECT_EQ(Poll(*watcher).unsealed, std::vector<std::string>{"disks/d1"});
  ExpectData(*h, 1);

  // Rotation: the auto-rotating DES moves to the new token key; the disk
  // keeps working, and after that the old version no longer matters.
  keystore::KeyVersionInfo v2 = HSM_ASSERT_OK(ks_->RotateKey("", "vlt", "k"));
  EXPECT_EQ(v2.kty, keystore::KeyType::kRsaHsm);
  EXPECT_EQ(Poll(*watcher).rotated_des, std::vector<std::string>{"des1"});
  EXPECT_EQ(HSM_ASSERT_OK(engine_->Get(ResourceKind::kDisk, "d1")).key_id,
            v2.id);
  ExpectData(*h, 1);
  Write(*h, 2);
  ASSERT_TRUE(SetEnabled(v1_.id, false).ok());
  EXPECT_TRUE(Poll(*watcher).sealed.empty());
  ExpectData(*h, 2);

  // A fresh process view (keystore, token session, engine) opens the disk
  // through the new HSM version.
  h.reset();
  watcher.reset();
  engine_.reset();
  ks_.reset();
  Open();
  std::shared_ptr<DiskHandle> again =
      HSM_ASSERT_OK(engine_->Open(ResourceKind::kDisk, "d1", false));
  ExpectData(*again, 2);
}

INSTANTIATE_TEST_SUITE_P(
    Tokens, HsmE2eTest,
    ::testing::Values(
        TokenParam{test_tokens::Kind::kSoftHsm,
                   test_tokens::Transport::kDirect},
        TokenParam{test_tokens::Kind::kNss, test_tokens::Transport::kDirect},
        TokenParam{test_tokens::Kind::kNss, test_tokens::Transport::kP11Kit}),
    [](const ::testing::TestParamInfo<TokenParam>& info) {
      std::string name = info.param.first == test_tokens::Kind::kNss
                             ? "NssSoftokn"
                             : "SoftHsm2";
      return name + (info.param.second == test_tokens::Transport::kP11Kit
                         ? "BehindP11KitServer"
                         : "Direct");
    });

// The remote HSM's p11-kit server goes away while a disk is open: the open
// disk keeps working (its DEK is in memory), the watcher keeps every state
// (an unreachable token is no verdict on a key), a new open fails naming
// the token, and once the server is back, opens work again.
class RemoteHsmGoneTest : public HsmE2eTest {};

TEST_P(RemoteHsmGoneTest, OpenDisksKeepWorkingNewOpensFailClearly) {
  // As the daemon does: p11-kit-client.so writes to the socket of the server
  // this test kills, which must be EPIPE, not the end of the process.
  signal(SIGPIPE, SIG_IGN);
  DiskSpec disk;
  disk.name = "d2";
  disk.size = 4ull << 20;
  disk.des = "des1";
  HSM_ASSERT_OK(engine_->CreateDisk(disk));
  std::shared_ptr<DiskHandle> h =
      HSM_ASSERT_OK(engine_->Open(ResourceKind::kDisk, "d1", true));
  Write(*h, 3);
  auto watcher =
      std::make_unique<KeyWatcher>(engine_.get(), ks_.get(), WatcherOptions{});
  ASSERT_TRUE(test_tokens::StopServer().ok());

  ExpectData(*h, 3);
  Write(*h, 4);
  ExpectData(*h, 4);
  EXPECT_TRUE(Poll(*watcher).sealed.empty());
  Result<std::shared_ptr<DiskHandle>> d2 =
      engine_->Open(ResourceKind::kDisk, "d2", false);
  ASSERT_FALSE(d2.ok());
  EXPECT_NE(d2.status().message().find("PKCS#11 token NSS Certificate DB "
                                       "unreachable"),
            std::string::npos)
      << d2.status().ToString();
  ExpectData(*h, 4);

  ASSERT_TRUE(test_tokens::StartServer().ok());
  Result<std::shared_ptr<DiskHandle>> again =
      engine_->Open(ResourceKind::kDisk, "d2", false);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(Tokens, RemoteHsmGoneTest,
                         ::testing::Values(TokenParam{
                             test_tokens::Kind::kNss,
                             test_tokens::Transport::kP11Kit}),
                         [](const ::testing::TestParamInfo<TokenParam>&) {
                           return std::string("NssSoftoknBehindP11KitServer");
                         });

}  // namespace
}  // namespace cmkfs::fs
