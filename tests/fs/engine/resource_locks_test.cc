#include "resource_locks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace cmkfs::fs {
namespace {

TEST(ResourceLocksTest, OtherResourcesAreFreeWhileOneIsHeld) {
  ResourceLocks locks;
  auto a = locks.Lock(ResourceKind::kDisk, "a");
  EXPECT_TRUE(locks.IsHeld(ResourceKind::kDisk, "a"));
  // Same name, other kind, and another disk: taken at once (a wait here
  // would hang the test on this thread's own hold).
  auto snap = locks.Lock(ResourceKind::kSnapshot, "a");
  auto b = locks.Lock(ResourceKind::kDisk, "b");
  EXPECT_TRUE(locks.IsHeld(ResourceKind::kDisk, "b"));
  EXPECT_FALSE(locks.IsHeld(ResourceKind::kImage, "a"));
}

TEST(ResourceLocksTest, SecondHoldOfOneResourceWaitsForTheFirst) {
  ResourceLocks locks;
  std::atomic<bool> released{false};
  std::atomic<bool> got_it_early{false};
  std::optional<ResourceLocks::Hold> first(
      locks.Lock(ResourceKind::kDisk, "a"));
  std::thread second([&] {
    auto h = locks.Lock(ResourceKind::kDisk, "a");
    got_it_early = !released.load();
  });
  released = true;
  first.reset();
  second.join();
  EXPECT_FALSE(got_it_early);
  EXPECT_FALSE(locks.IsHeld(ResourceKind::kDisk, "a"));
}

TEST(ResourceLocksTest, MovedHoldReleasesOnce) {
  ResourceLocks locks;
  {
    auto h = locks.Lock(ResourceKind::kDisk, "a");
    ResourceLocks::Hold moved(std::move(h));
    EXPECT_TRUE(locks.IsHeld(ResourceKind::kDisk, "a"));
  }
  EXPECT_FALSE(locks.IsHeld(ResourceKind::kDisk, "a"));
}

}  // namespace
}  // namespace cmkfs::fs
