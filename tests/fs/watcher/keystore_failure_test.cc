// A keystore that cannot be read for a moment (its usability check fails as
// a whole) is no reason to seal: every resource keeps its state.
#include "faulty_keystore.h"
#include "watcher_fixture.h"

namespace cmkfs::fs::testing {
namespace {

class KeystoreFailureTest : public WatcherTest {};

TEST_F(KeystoreFailureTest, UnreadableKeystoreKeepsEveryStateAndIsReported) {
  MakeDisk("d1", DiskSku::kPremiumLrs);
  MakeDisk("d2", DiskSku::kPremiumLrs);
  auto handle = CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", true));
  WritePattern(*handle, 4);
  FaultyKeyStore flaky(ks_.get());
  KeyWatcher watcher(engine_.get(), &flaky, WatcherOptions{});
  Poll(watcher);

  flaky.fail_checks = true;
  for (int i = 0; i < 3; ++i) {
    Result<PollReport> r = watcher.PollOnce();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->sealed.empty()) << "sealed on a keystore read failure";
    ASSERT_EQ(r->errors.size(), 1u);
    EXPECT_NE(r->errors[0].find("keystore unreadable"), std::string::npos)
        << r->errors[0];
  }
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kActive);
  ExpectPattern(*handle, 4);
  // A key that became unusable meanwhile is sealed once the keystore reads.
  CMKFS_ASSERT_OK(SetEnabled(false));
  Result<PollReport> blind = watcher.PollOnce();
  ASSERT_TRUE(blind.ok());
  EXPECT_TRUE(blind->sealed.empty());
  flaky.fail_checks = false;
  PollReport seen = Poll(watcher);
  EXPECT_FALSE(seen.sealed.empty());
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kSealed);
}

}  // namespace
}  // namespace cmkfs::fs::testing
