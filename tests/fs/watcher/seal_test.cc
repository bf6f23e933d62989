// Every trigger of issue 6 seals a customer-key disk on the next poll, and
// its reversal unseals it with I/O working again on the same open handle.
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "watcher_fixture.h"

namespace cmkfs::fs::testing {
namespace {

using keystore::Permission;
using std::chrono::hours;

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class SealTest : public WatcherTest {
 protected:
  void SetUp() override {
    WatcherTest::SetUp();
    if (HasFatalFailure()) return;
    MakeDisk("d1", DiskSku::kPremiumLrs);
    handle_ = CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", true));
    WritePattern(*handle_, 1);
    watcher_ = MakeWatcher();
    PollReport first = Poll(*watcher_);
    EXPECT_TRUE(first.sealed.empty());
  }
  void TearDown() override {
    handle_.reset();
    watcher_.reset();
    WatcherTest::TearDown();
  }

  // The disk is sealed: I/O on the open handle and new opens fail with
  // KeyUnavailable, Get() says sealed with a reason naming `why`.
  void ExpectSealed(const std::string& why) {
    std::vector<uint8_t> buf(4096);
    Result<size_t> r = handle_->Read(8192, buf);
    ASSERT_FALSE(r.ok()) << "read on an open handle of a sealed disk worked";
    EXPECT_EQ(r.status().kind(), ErrorKind::kKeyUnavailable)
        << r.status().ToString();
    Result<size_t> w = handle_->Write(0, buf);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.status().kind(), ErrorKind::kKeyUnavailable);
    Result<std::shared_ptr<DiskHandle>> reopen =
        engine_->Open(ResourceKind::kDisk, "d1", true);
    ASSERT_FALSE(reopen.ok()) << "a sealed disk could be opened";
    EXPECT_EQ(reopen.status().kind(), ErrorKind::kKeyUnavailable);
    ResourceInfo info = CMKFS_VALUE(engine_->Get(ResourceKind::kDisk, "d1"));
    EXPECT_EQ(info.state, ResourceState::kSealed);
    EXPECT_NE(info.seal_reason.find(why), std::string::npos)
        << "seal reason: " << info.seal_reason;
    EXPECT_NE(info.seal_reason.find(key().ToString()), std::string::npos)
        << "seal reason: " << info.seal_reason;
  }

  void ExpectUnsealedAndWorking() {
    ResourceInfo info = CMKFS_VALUE(engine_->Get(ResourceKind::kDisk, "d1"));
    EXPECT_EQ(info.state, ResourceState::kActive);
    EXPECT_EQ(info.seal_reason, "");
    ExpectPattern(*handle_, 1);
    WritePattern(*handle_, 2);
    ExpectPattern(*handle_, 2);
    std::shared_ptr<DiskHandle> again =
        CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", false));
    ExpectPattern(*again, 2);
  }

  void SealThenUnseal(const std::function<Status()>& take_away,
                      const std::function<Status()>& give_back,
                      const std::string& why) {
    CMKFS_ASSERT_OK(take_away());
    PollReport sealed = Poll(*watcher_);
    EXPECT_EQ(sealed.sealed, std::vector<std::string>{"disks/d1"});
    ExpectSealed(why);
    // A lasting condition seals once, not once per poll.
    PollReport again = Poll(*watcher_);
    EXPECT_TRUE(again.sealed.empty());
    EXPECT_EQ(watcher_->stats().seals, 1u);

    CMKFS_ASSERT_OK(give_back());
    PollReport unsealed = Poll(*watcher_);
    EXPECT_EQ(unsealed.unsealed, std::vector<std::string>{"disks/d1"});
    ExpectUnsealedAndWorking();
    EXPECT_EQ(watcher_->stats().unseals, 1u);
  }

  std::shared_ptr<DiskHandle> handle_;
  std::unique_ptr<KeyWatcher> watcher_;
};

TEST_F(SealTest, DisabledKeyVersionSealsAndReEnablingUnseals) {
  SealThenUnseal([&] { return SetEnabled(false); },
                 [&] { return SetEnabled(true); }, "disabled");
  EXPECT_TRUE(AuditHas("disk.seal", "disks/d1"));
  EXPECT_TRUE(AuditHas("disk.unseal", "disks/d1"));
}

TEST_F(SealTest, AuditEntryNamesDesIdentityAndVersionedKey) {
  CMKFS_ASSERT_OK(SetEnabled(false));
  Poll(*watcher_);
  std::vector<keystore::AuditEntry> entries =
      CMKFS_VALUE(ks_->ReadAudit("vlt", keystore::AuditFilter{}));
  auto it = std::find_if(entries.begin(), entries.end(), [](const auto& e) {
    return e.operation == "disk.seal";
  });
  ASSERT_NE(it, entries.end()) << "no disk.seal entry in the vault's audit";
  EXPECT_EQ(it->identity, des_.identity);
  EXPECT_EQ(it->key_id, key().ToString());
  EXPECT_NE(it->result.find("disabled"), std::string::npos) << it->result;
}

TEST_F(SealTest, DeletedKeySealsAndRecoveringUnseals) {
  SealThenUnseal([&] { return ks_->DeleteKey("", "vlt", "k"); },
                 [&] { return ks_->RecoverKey("", "vlt", "k"); }, "deleted");
}

TEST_F(SealTest, ExpiredKeySealsAndClearingExpiryUnseals) {
  auto set_expires = [&](std::optional<TimePoint> t) {
    keystore::AttributeUpdate u;
    u.expires = t;
    return ks_->UpdateKeyAttributes("", key(), u).status();
  };
  SealThenUnseal([&] { return set_expires(Now() - hours(1)); },
                 [&] { return set_expires(std::nullopt); }, "expired");
}

// Time alone, with nothing written to the keystore (its change counter does
// not move), on the keystore's clock (the fixture's test clock).
TEST_F(SealTest, ExpiryReachedByTheClockAloneSeals) {
  keystore::AttributeUpdate u;
  u.expires = Now() + hours(1);
  CMKFS_VALUE(ks_->UpdateKeyAttributes("", key(), u));
  PollReport before = Poll(*watcher_);
  EXPECT_TRUE(before.sealed.empty()) << "sealed before the expiry";
  ExpectPattern(*handle_, 1);
  clock_offset_seconds_ = 2 * 3600;
  PollReport after = Poll(*watcher_);
  EXPECT_EQ(after.change_counter, before.change_counter)
      << "the keystore was written to";
  EXPECT_EQ(after.sealed, std::vector<std::string>{"disks/d1"});
  ExpectSealed("expired");
}

TEST_F(SealTest, NotBeforeReachedByTheClockAloneUnseals) {
  keystore::AttributeUpdate u;
  u.not_before = Now() + hours(1);
  CMKFS_VALUE(ks_->UpdateKeyAttributes("", key(), u));
  PollReport before = Poll(*watcher_);
  EXPECT_EQ(before.sealed, std::vector<std::string>{"disks/d1"});
  ExpectSealed("not yet valid");
  clock_offset_seconds_ = 2 * 3600;
  PollReport after = Poll(*watcher_);
  EXPECT_EQ(after.change_counter, before.change_counter)
      << "the keystore was written to";
  EXPECT_EQ(after.unsealed, std::vector<std::string>{"disks/d1"});
  ExpectUnsealedAndWorking();
}

TEST_F(SealTest, NotYetValidKeySealsAndClearingNotBeforeUnseals) {
  auto set_not_before = [&](std::optional<TimePoint> t) {
    keystore::AttributeUpdate u;
    u.not_before = t;
    return ks_->UpdateKeyAttributes("", key(), u).status();
  };
  SealThenUnseal([&] { return set_not_before(Now() + hours(1)); },
                 [&] { return set_not_before(std::nullopt); }, "not yet valid");
}

TEST_F(SealTest, IdentityLosingUnwrapKeySealsAndRegainingUnseals) {
  SealThenUnseal(
      [&] {
        return Grant(des_.identity, Permission::kGet | Permission::kWrapKey);
      },
      [&] {
        return Grant(des_.identity,
                     Permission::kGet | Permission::kWrapKey |
                         static_cast<uint32_t>(Permission::kUnwrapKey));
      },
      "unwrapKey");
}

TEST_F(SealTest, DeletedAccessPolicySealsAndNewPolicyUnseals) {
  SealThenUnseal(
      [&] { return ks_->DeleteAccessPolicy("", "vlt", des_.identity); },
      [&] {
        return Grant(des_.identity,
                     Permission::kGet | Permission::kWrapKey |
                         static_cast<uint32_t>(Permission::kUnwrapKey));
      },
      "unwrapKey");
}

TEST_F(SealTest, PlatformKeyDiskAndOtherKeysStayActive) {
  DiskSpec platform;
  platform.name = "plain";
  platform.size = kDiskSize;
  CMKFS_VALUE(engine_->CreateDisk(platform));
  CMKFS_VALUE(
      ks_->CreateKey("", "vlt", "other", keystore::KeyType::kRsa, 2048));
  MakeDes("des2", false, "other");
  MakeDisk("d2", DiskSku::kPremiumLrs, "des2");

  CMKFS_ASSERT_OK(SetEnabled(false));
  PollReport r = Poll(*watcher_);
  EXPECT_EQ(r.sealed, std::vector<std::string>{"disks/d1"});
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "plain"), ResourceState::kActive);
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d2"), ResourceState::kActive);
  std::shared_ptr<DiskHandle> h =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d2", true));
  WritePattern(*h, 9);
  ExpectPattern(*h, 9);
}

TEST_F(SealTest, SnapshotsAndImagesOfTheKeyBecomeUnreadable) {
  CMKFS_ASSERT_OK(handle_->Sync());
  CMKFS_VALUE(engine_->CreateSnapshot("s1", "d1"));
  CMKFS_VALUE(engine_->CreateImage("i1", "snapshots/s1"));
  std::shared_ptr<DiskHandle> snap =
      CMKFS_VALUE(engine_->Open(ResourceKind::kSnapshot, "s1", false));
  ExpectPattern(*snap, 1);

  CMKFS_ASSERT_OK(SetEnabled(false));
  PollReport r = Poll(*watcher_);
  EXPECT_TRUE(Contains(r.sealed, "disks/d1"));
  EXPECT_TRUE(Contains(r.sealed, "snapshots/s1"));
  EXPECT_TRUE(Contains(r.sealed, "images/i1"));
  std::vector<uint8_t> buf(4096);
  Result<size_t> read = snap->Read(8192, buf);
  ASSERT_FALSE(read.ok()) << "snapshot still readable after its key went";
  EXPECT_EQ(read.status().kind(), ErrorKind::kKeyUnavailable);
  for (auto [kind, name] : {std::pair{ResourceKind::kSnapshot, "s1"},
                            std::pair{ResourceKind::kImage, "i1"}}) {
    Result<std::shared_ptr<DiskHandle>> h = engine_->Open(kind, name, false);
    ASSERT_FALSE(h.ok()) << name << " opened while sealed";
    EXPECT_EQ(h.status().kind(), ErrorKind::kKeyUnavailable);
    EXPECT_EQ(StateOf(kind, name), ResourceState::kSealed);
  }
  EXPECT_TRUE(AuditHas("snapshot.seal", "snapshots/s1"));
  EXPECT_TRUE(AuditHas("image.seal", "images/i1"));

  CMKFS_ASSERT_OK(SetEnabled(true));
  PollReport back = Poll(*watcher_);
  EXPECT_EQ(back.unsealed.size(), 3u);
  ExpectPattern(*snap, 1);
  std::shared_ptr<DiskHandle> image =
      CMKFS_VALUE(engine_->Open(ResourceKind::kImage, "i1", false));
  ExpectPattern(*image, 1);
}

TEST_F(SealTest, UltraDiskKeepsWorkingWhileOpenAndCannotReopenAfterClose) {
  MakeDisk("ultra", DiskSku::kUltraSsdLrs);
  std::shared_ptr<DiskHandle> u =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "ultra", true));
  WritePattern(*u, 5);

  CMKFS_ASSERT_OK(SetEnabled(false));
  Poll(*watcher_);
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kSealed);
  // The VM keeps running on its open disk.
  ExpectPattern(*u, 5);
  WritePattern(*u, 6);
  ExpectPattern(*u, 6);
  // Later polls must not cut it off either.
  Poll(*watcher_);
  ExpectPattern(*u, 6);

  u.reset();  // the VM is deallocated
  Poll(*watcher_);
  Result<std::shared_ptr<DiskHandle>> reopen =
      engine_->Open(ResourceKind::kDisk, "ultra", true);
  ASSERT_FALSE(reopen.ok()) << "ultra disk reopened after its key went";
  EXPECT_EQ(reopen.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "ultra"), ResourceState::kSealed);

  CMKFS_ASSERT_OK(SetEnabled(true));
  Poll(*watcher_);
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "ultra"), ResourceState::kActive);
  u = CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "ultra", true));
  ExpectPattern(*u, 6);
}

// Several handles (a VM with its disk open twice, say): none is cut off,
// closing one keeps the others, no new handle is given out while sealed, and
// a key restored while they are still open just unseals.
TEST_F(SealTest, UltraDiskWithSeveralHandlesAndTheKeyRestoredWhileOpen) {
  MakeDisk("ultra", DiskSku::kUltraSsdLrs);
  std::shared_ptr<DiskHandle> u1 =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "ultra", true));
  std::shared_ptr<DiskHandle> u2 =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "ultra", false));
  WritePattern(*u1, 5);
  ExpectPattern(*u2, 5);

  CMKFS_ASSERT_OK(SetEnabled(false));
  PollReport sealed = Poll(*watcher_);
  EXPECT_TRUE(Contains(sealed.sealed, "disks/ultra"));
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "ultra"), ResourceState::kSealed);
  WritePattern(*u1, 6);
  ExpectPattern(*u2, 6);
  Result<std::shared_ptr<DiskHandle>> third =
      engine_->Open(ResourceKind::kDisk, "ultra", false);
  ASSERT_FALSE(third.ok()) << "a new handle on a sealed ultra disk";
  EXPECT_EQ(third.status().kind(), ErrorKind::kKeyUnavailable);

  u1.reset();  // not the last handle: the other keeps working
  Poll(*watcher_);
  ExpectPattern(*u2, 6);

  CMKFS_ASSERT_OK(SetEnabled(true));  // restored while u2 is still open
  PollReport unsealed = Poll(*watcher_);
  EXPECT_TRUE(Contains(unsealed.unsealed, "disks/ultra"));
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "ultra"), ResourceState::kActive);
  ExpectPattern(*u2, 6);
  u1 = CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "ultra", true));
  WritePattern(*u1, 7);
  ExpectPattern(*u2, 7);
  u1.reset();
  u2.reset();
  std::shared_ptr<DiskHandle> fresh =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "ultra", false));
  ExpectPattern(*fresh, 7);
}

TEST_F(SealTest, DeletedSealedDiskIsForgotten) {
  MakeDisk("gone", DiskSku::kStandardLrs);
  CMKFS_ASSERT_OK(SetEnabled(false));
  PollReport r = Poll(*watcher_);
  EXPECT_TRUE(Contains(r.sealed, "disks/gone"));
  CMKFS_ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "gone"));
  CMKFS_ASSERT_OK(SetEnabled(true));
  PollReport back = Poll(*watcher_);
  EXPECT_EQ(back.unsealed, std::vector<std::string>{"disks/d1"});
}

TEST_F(SealTest, SealedStateSurvivesRestartAndUnsealsAfterIt) {
  CMKFS_ASSERT_OK(SetEnabled(false));
  Poll(*watcher_);
  handle_.reset();
  watcher_.reset();
  CloseStores();
  OpenStores();
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kSealed);
  CMKFS_ASSERT_OK(SetEnabled(true));
  watcher_ = MakeWatcher();
  PollReport r = Poll(*watcher_);
  EXPECT_EQ(r.unsealed, std::vector<std::string>{"disks/d1"});
  handle_ = CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", false));
  ExpectPattern(*handle_, 1);
}

TEST_F(SealTest, EachSealIsLoggedOnceWithItsReason) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(sink);
  CMKFS_ASSERT_OK(SetEnabled(false));
  PollReport r = Poll(*watcher_);
  logger->sinks().pop_back();
  ASSERT_EQ(r.sealed, std::vector<std::string>{"disks/d1"});
  int lines = 0;
  for (const std::string& line : sink->last_formatted()) {
    if (line.find("sealed") != std::string::npos &&
        line.find("d1") != std::string::npos) {
      ++lines;
      EXPECT_NE(line.find("disabled"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(lines, 1) << "the seal of d1 was logged " << lines << " times";
}

}  // namespace
}  // namespace cmkfs::fs::testing
