// Auto-rotation of disk encryption sets and the rotation-policy timer.
#include <atomic>
#include <cstdio>
#include <thread>

#include "faulty_keystore.h"
#include "watcher_fixture.h"

namespace cmkfs::fs::testing {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

class RotationTest : public WatcherTest {
 protected:
  void SetUp() override {
    WatcherTest::SetUp();
    if (HasFatalFailure()) return;
    auto_des_ = MakeDes("auto", /*auto_rotate=*/true);
    MakeDisk("d1", DiskSku::kPremiumLrs, "auto");
    MakeDisk("fixed", DiskSku::kPremiumLrs, "des1");
    handle_ = CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", true));
    WritePattern(*handle_, 3);
  }
  void TearDown() override {
    handle_.reset();
    WatcherTest::TearDown();
  }

  keystore::KeyId DiskKey(const std::string& name) {
    return CMKFS_VALUE(engine_->Get(ResourceKind::kDisk, name)).key_id;
  }

  DesInfo auto_des_;
  std::shared_ptr<DiskHandle> handle_;
};

TEST_F(RotationTest, AutoRotatingDesPicksUpANewLatestVersion) {
  auto watcher = MakeWatcher();
  PollReport first = Poll(*watcher);
  EXPECT_TRUE(first.rotated_des.empty());
  EXPECT_EQ(DiskKey("d1"), key());

  keystore::KeyVersionInfo v2 = CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  ASSERT_NE(v2.id.version, key().version);
  const TimePoint before = Now();
  PollReport r = Poll(*watcher);
  EXPECT_EQ(r.rotated_des, std::vector<std::string>{"auto"});

  EXPECT_EQ(DiskKey("d1"), v2.id);
  DesInfo des = CMKFS_VALUE(engine_->GetDes("auto"));
  EXPECT_EQ(des.key_id, v2.id);
  ASSERT_TRUE(des.last_rotation.has_value());
  EXPECT_GE(*des.last_rotation, before);
  EXPECT_EQ(des.rotation_error, "");
  // Without auto-rotation the DES keeps the version it names.
  EXPECT_EQ(DiskKey("fixed"), key());
  EXPECT_EQ(CMKFS_VALUE(engine_->GetDes("des1")).key_id, key());

  // No I/O error and the data is intact, on the open handle and a new one.
  ExpectPattern(*handle_, 3);
  WritePattern(*handle_, 4);
  std::shared_ptr<DiskHandle> fresh =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", false));
  ExpectPattern(*fresh, 4);
  EXPECT_EQ(watcher->stats().rotations, 1u);

  // A second poll has nothing to do, and the watcher's own reads and audit
  // entries do not count as keystore changes (or it would re-check forever).
  PollReport second = Poll(*watcher);
  EXPECT_TRUE(second.rotated_des.empty());
  EXPECT_EQ(Poll(*watcher).change_counter, second.change_counter);
}

TEST_F(RotationTest, OldVersionDisabledAfterRotationSealsOnlyNonRotatingDisks) {
  auto watcher = MakeWatcher();
  Poll(*watcher);
  CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  Poll(*watcher);
  CMKFS_ASSERT_OK(SetEnabled(false));  // the first version
  PollReport r = Poll(*watcher);
  EXPECT_EQ(r.sealed, std::vector<std::string>{"disks/fixed"});
  ExpectPattern(*handle_, 3);
}

TEST_F(RotationTest, DisabledNewVersionSealsAndIsNotRotatedBack) {
  auto watcher = MakeWatcher();
  Poll(*watcher);
  keystore::KeyVersionInfo v2 = CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  EXPECT_EQ(Poll(*watcher).rotated_des, std::vector<std::string>{"auto"});
  keystore::AttributeUpdate off;
  off.enabled = false;
  CMKFS_VALUE(ks_->UpdateKeyAttributes("", v2.id, off));
  // The latest enabled version is now the first one again: no way back.
  PollReport r = Poll(*watcher);
  EXPECT_TRUE(r.rotated_des.empty());
  EXPECT_EQ(r.sealed, std::vector<std::string>{"disks/d1"});
  EXPECT_EQ(CMKFS_VALUE(engine_->GetDes("auto")).key_id, v2.id);
  keystore::AttributeUpdate on;
  on.enabled = true;
  CMKFS_VALUE(ks_->UpdateKeyAttributes("", v2.id, on));
  EXPECT_EQ(Poll(*watcher).unsealed, std::vector<std::string>{"disks/d1"});
  ExpectPattern(*handle_, 3);
}

// The thread picks the new version up (on the keystore change) while I/O
// keeps working. How fast is the benchmark's business, not this test's.
TEST_F(RotationTest, ThreadPicksUpRotationWhileIoContinues) {
  WatcherOptions options;
  options.poll_interval = milliseconds(100);
  options.auto_rotation_window = seconds(2);
  auto watcher = MakeWatcher(options);
  CMKFS_ASSERT_OK(watcher->Start());
  keystore::KeyVersionInfo v2 = CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  const auto start = std::chrono::steady_clock::now();
  while (DiskKey("d1") != v2.id &&
         std::chrono::steady_clock::now() - start < seconds(30)) {
    ExpectPattern(*handle_, 3);  // I/O keeps working during rotation
    std::this_thread::sleep_for(milliseconds(10));
  }
  const auto took = std::chrono::duration_cast<milliseconds>(
      std::chrono::steady_clock::now() - start);
  watcher->Stop();
  EXPECT_EQ(DiskKey("d1"), v2.id) << "not picked up within 30 s";
  std::printf("auto-rotation picked up after %lld ms (window %lld ms)\n",
              static_cast<long long>(took.count()),
              static_cast<long long>(options.auto_rotation_window.count()));
  ExpectPattern(*handle_, 3);
}

// Without a keystore change or a DES edit the watcher does not look for a
// new version on every poll, only every max(poll interval, window / 4): that
// re-check is what catches a change it missed. Stepped on a test clock.
TEST_F(RotationTest, MissedChangeIsPickedUpByThePeriodicRecheck) {
  FaultyKeyStore missed(ks_.get());
  std::atomic<int64_t> timer_ms{0};
  WatcherOptions options;
  options.poll_interval = seconds(1);
  options.auto_rotation_window = seconds(40);  // re-check every 10 s
  options.timer_clock = [&] {
    return std::chrono::steady_clock::time_point(milliseconds(timer_ms.load()));
  };
  KeyWatcher watcher(engine_.get(), &missed, options);
  EXPECT_TRUE(Poll(watcher).rotated_des.empty());
  // The change counter stops moving: the rotation below goes unnoticed.
  missed.frozen_counter = CMKFS_VALUE(ks_->ChangeCounter());
  keystore::KeyVersionInfo v2 = CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  timer_ms = 9999;
  EXPECT_TRUE(Poll(watcher).rotated_des.empty()) << "re-checked before due";
  EXPECT_EQ(DiskKey("d1"), key());
  timer_ms = 10000;
  EXPECT_EQ(Poll(watcher).rotated_des, std::vector<std::string>{"auto"});
  EXPECT_EQ(DiskKey("d1"), v2.id);
  ExpectPattern(*handle_, 3);

  // With a poll interval longer than a quarter window, the interval rules.
  KeyWatcher slow_watcher(engine_.get(), &missed, [&] {
    WatcherOptions o = options;
    o.poll_interval = seconds(30);
    return o;
  }());
  timer_ms = 0;
  Poll(slow_watcher);
  keystore::KeyVersionInfo v3 = CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  timer_ms = 29999;
  EXPECT_TRUE(Poll(slow_watcher).rotated_des.empty()) << "re-checked early";
  timer_ms = 30000;
  EXPECT_EQ(Poll(slow_watcher).rotated_des, std::vector<std::string>{"auto"});
  EXPECT_EQ(DiskKey("d1"), v3.id);
  ExpectPattern(*handle_, 3);
}

TEST_F(RotationTest, RotationPolicyIsAppliedOnTheTimerAndPickedUp) {
  keystore::RotationPolicy policy;
  policy.rotate_after = std::chrono::duration_cast<milliseconds>(hours(24));
  CMKFS_ASSERT_OK(ks_->SetRotationPolicy("", "vlt", "k", policy));
  std::atomic<int64_t> timer_ms{0};
  WatcherOptions options;
  options.rotation_policy_interval = hours(1);
  options.timer_clock = [&] {
    return std::chrono::steady_clock::time_point(milliseconds(timer_ms.load()));
  };
  auto watcher = MakeWatcher(options);
  PollReport first = Poll(*watcher);
  EXPECT_TRUE(first.policy_rotations.empty()) << "rotated before it was due";

  clock_offset_seconds_ = 2 * 24 * 3600;
  // Not due yet on the watcher's timer: nothing happens.
  timer_ms = 3599999;
  EXPECT_TRUE(Poll(*watcher).policy_rotations.empty());

  timer_ms = 3600000;
  PollReport r = Poll(*watcher);
  ASSERT_EQ(r.policy_rotations.size(), 1u);
  EXPECT_EQ(r.policy_rotations[0].name, "k");
  // The same poll moves the auto-rotating DES to the new version.
  EXPECT_EQ(r.rotated_des, std::vector<std::string>{"auto"});
  EXPECT_EQ(DiskKey("d1"), r.policy_rotations[0]);
  ExpectPattern(*handle_, 3);
}

TEST_F(RotationTest, LostGetPermissionIsARotationErrorNotASeal) {
  auto watcher = MakeWatcher();
  Poll(*watcher);
  CMKFS_ASSERT_OK(
      Grant(auto_des_.identity,
            keystore::Permission::kWrapKey | keystore::Permission::kUnwrapKey));
  CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  Result<PollReport> r = watcher->PollOnce();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->rotated_des.empty());
  EXPECT_TRUE(r->sealed.empty());
  EXPECT_EQ(r->errors.size(), 1u);
  WatcherStats stats = watcher->stats();
  ASSERT_EQ(stats.rotation_errors.count("auto"), 1u);
  EXPECT_NE(stats.rotation_errors["auto"].find("auto"), std::string::npos);
  ExpectPattern(*handle_, 3);
}

TEST_F(RotationTest, FailedRewrapIsShownOnTheDesUntilARotationSucceeds) {
  auto watcher = MakeWatcher();
  Poll(*watcher);
  // Without wrapKey the identity still unwraps (no seal) but cannot re-wrap.
  CMKFS_ASSERT_OK(
      Grant(auto_des_.identity,
            keystore::Permission::kGet | keystore::Permission::kUnwrapKey));
  keystore::KeyVersionInfo v2 = CMKFS_VALUE(ks_->RotateKey("", "vlt", "k"));
  Result<PollReport> r = watcher->PollOnce();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->rotated_des.empty());
  EXPECT_TRUE(r->sealed.empty());
  DesInfo des = CMKFS_VALUE(engine_->GetDes("auto"));
  EXPECT_NE(des.rotation_error.find("auto-rotation"), std::string::npos)
      << "rotation_error: '" << des.rotation_error << "'";
  EXPECT_NE(des.rotation_error.find("wrapKey"), std::string::npos)
      << "rotation_error: '" << des.rotation_error << "'";
  EXPECT_EQ(DiskKey("d1"), key());
  // Granted again: the next poll rotates and the error is gone.
  CMKFS_ASSERT_OK(
      Grant(auto_des_.identity,
            keystore::Permission::kGet | keystore::Permission::kWrapKey |
                static_cast<uint32_t>(keystore::Permission::kUnwrapKey)));
  PollReport ok = Poll(*watcher);
  EXPECT_EQ(ok.rotated_des, std::vector<std::string>{"auto"});
  des = CMKFS_VALUE(engine_->GetDes("auto"));
  EXPECT_EQ(des.rotation_error, "");
  EXPECT_EQ(DiskKey("d1"), v2.id);
  ExpectPattern(*handle_, 3);
}

}  // namespace
}  // namespace cmkfs::fs::testing
