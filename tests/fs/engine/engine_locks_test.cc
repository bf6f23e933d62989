// Control-plane locking: a re-wrap of a DES with many disks, stopped inside
// the keystore, stalls no open, seal or resize of an unrelated resource
// (issue 15, item 6).
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "engine_test_support.h"
#include "support/gated_keystore.h"
#include "test_keys.h"

namespace cmkfs::fs::testing {
namespace {

constexpr int kDesDisks = 8;

class EngineLocksTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    CloseEngine();
    gated_ = std::make_unique<cmkfs::testing::GatedKeyStore>(ks_);
    auto e = OpenEngine(options_, gated_.get(), Stores());
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }
  void TearDown() override {
    if (gated_) gated_->Release();
    EngineTest::TearDown();
  }
  // Waits for `f` at most a minute: a safety net so that a regression fails
  // the test instead of hanging it, not a bound on how fast it must be.
  template <typename T>
  static bool Finishes(std::future<T>& f) {
    return f.wait_for(std::chrono::minutes(1)) == std::future_status::ready;
  }
  std::unique_ptr<cmkfs::testing::GatedKeyStore> gated_;  // after engine_
};

TEST_F(EngineLocksTest, RewrapInProgressDoesNotStallOtherResources) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  for (int i = 0; i < kDesDisks; ++i) {
    MakeDisk("des-disk" + std::to_string(i), 1 << 20, "des1");
  }
  MakeDisk("other", 1 << 20);  // platform key
  auto data = Pattern(64 << 10, 3);
  {
    auto h = OpenDisk("other");
    ASSERT_TRUE(h);
    WriteAll(*h, 0, data);
    ASSERT_OK(h->Sync());
  }
  auto v2 =
      ks_->ImportKey("", V("v1"), "k1", kTestPems[1], keystore::KeyType::kRsa);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();

  // The re-wrap stops in WrapKey of its first disk, holding control_mu_.
  gated_->HoldWraps();
  auto rewrap = std::async(std::launch::async, [&] {
    return engine_->UpdateDes("des1", keystore::KeyId{V("v1"), "k1", ""},
                              std::nullopt);
  });
  gated_->AwaitWaiting(1);

  auto other = std::async(std::launch::async, [&]() -> Status {
    CMKFS_ASSIGN_OR_RETURN(auto h,
                           engine_->Open(ResourceKind::kDisk, "other", true));
    std::vector<uint8_t> back(data.size());
    CMKFS_ASSIGN_OR_RETURN(size_t n, h->Read(0, back));
    if (n != back.size() || back != data) {
      return CorruptionError("other disk reads back different data");
    }
    h.reset();
    CMKFS_RETURN_IF_ERROR(engine_->Resize("other", 2 << 20).status());
    CMKFS_RETURN_IF_ERROR(
        engine_->Seal(ResourceKind::kDisk, "other", "test seal"));
    return engine_->Unseal(ResourceKind::kDisk, "other");
  });
  const bool other_done = Finishes(other);
  // Still stopped: what completed did so while the re-wrap was blocked.
  EXPECT_EQ(gated_->waiting(), 1);
  EXPECT_NE(rewrap.wait_for(std::chrono::seconds(0)),
            std::future_status::ready);
  gated_->Release();
  EXPECT_TRUE(other_done)
      << "open/resize/seal of an unrelated disk waited for the re-wrap";
  ASSERT_TRUE(Finishes(rewrap));
  auto des = rewrap.get();
  ASSERT_TRUE(des.ok()) << des.status().ToString();
  EXPECT_EQ(des->key_id, v2->id);
  ASSERT_OK(other.get());
  for (int i = 0; i < kDesDisks; ++i) {
    ASSERT_OK_AND_ASSIGN(
        auto info,
        engine_->Get(ResourceKind::kDisk, "des-disk" + std::to_string(i)));
    EXPECT_EQ(info.key_id, v2->id) << info.name;
  }
  ASSERT_OK_AND_ASSIGN(auto info, engine_->Get(ResourceKind::kDisk, "other"));
  EXPECT_EQ(info.size, 2u << 20);
  EXPECT_EQ(info.state, ResourceState::kActive);
}

TEST_F(EngineLocksTest, SealWaitsOnlyForTheStepOfItsOwnDisk) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("a", 1 << 20, "des1");
  MakeDisk("b", 1 << 20, "des1");
  ASSERT_TRUE(
      ks_->ImportKey("", V("v1"), "k1", kTestPems[1], keystore::KeyType::kRsa)
          .ok());
  gated_->HoldWraps();
  auto rewrap = std::async(std::launch::async, [&] {
    return engine_->UpdateDes("des1", keystore::KeyId{V("v1"), "k1", ""},
                              std::nullopt);
  });
  gated_->AwaitWaiting(1);  // in the step of "a" (scan order)
  // "b" is the DES's, but its step has not started: sealing it goes ahead,
  // and its step re-reads the record under the hold (still sealed after).
  auto seal_b = std::async(std::launch::async, [&] {
    return engine_->Seal(ResourceKind::kDisk, "b", "test seal");
  });
  const bool sealed = Finishes(seal_b);
  EXPECT_EQ(gated_->waiting(), 1);
  gated_->Release();
  EXPECT_TRUE(sealed) << "seal of a disk waited for another disk's step";
  ASSERT_TRUE(Finishes(rewrap));
  ASSERT_TRUE(rewrap.get().ok());
  ASSERT_OK(seal_b.get());
  ASSERT_OK_AND_ASSIGN(auto b, engine_->Get(ResourceKind::kDisk, "b"));
  EXPECT_EQ(b.state, ResourceState::kSealed);
  EXPECT_EQ(b.seal_reason, "test seal");
  ASSERT_OK_AND_ASSIGN(auto d, engine_->GetDes("des1"));
  EXPECT_EQ(b.key_id, d.key_id);
}

}  // namespace
}  // namespace cmkfs::fs::testing
