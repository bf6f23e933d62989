// The extent-map cache stays within its budget whatever the disk size, and
// never drops a dirty (uncommitted) entry.
#include "extent_cache.h"

#include <gtest/gtest.h>

namespace cmkfs::fs {
namespace {

TEST(ExtentCacheTest, CleanEntriesAreBoundedByBudget) {
  ExtentCache cache(1 << 20);  // 1 MiB
  for (uint64_t i = 0; i < 200'000; ++i) {
    cache.InsertClean({1, i}, {i, true});
  }
  EXPECT_LE(cache.size(), (1u << 20) / 100);
  EXPECT_GT(cache.size(), 1000u);
  ExtEntry e;
  EXPECT_TRUE(cache.Get({1, 199'999}, &e));  // most recent kept
  EXPECT_EQ(e.slot, 199'999u);
  EXPECT_FALSE(cache.Get({1, 0}, &e));  // oldest evicted
}

TEST(ExtentCacheTest, DirtyEntriesArePinnedUntilCommitted) {
  ExtentCache cache(0);  // smallest budget
  for (uint64_t i = 0; i < 10'000; ++i) cache.SetDirty({2, i}, {i, true}, 5);
  for (uint64_t i = 0; i < 20'000; ++i) cache.InsertClean({3, i}, {i, true});
  ExtEntry e;
  for (uint64_t i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(cache.Get({2, i}, &e)) << i;
    ASSERT_EQ(e.slot, i);
  }
  // Re-dirtied in a later generation: the older commit does not unpin it.
  cache.SetDirty({2, 7}, {70, true}, 6);
  for (uint64_t i = 0; i < 10'000; ++i) cache.MarkClean({2, i}, 5);
  for (uint64_t i = 0; i < 100'000; ++i)
    cache.InsertClean({3, i + 200'000}, {i, true});
  ASSERT_TRUE(cache.Get({2, 7}, &e));
  EXPECT_EQ(e.slot, 70u);
  EXPECT_LT(cache.size(), 10'000u);
}

TEST(ExtentCacheTest,
     InsertCleanNeverOverwritesAndClearExclusiveIsPerResource) {
  ExtentCache cache(1 << 20);
  cache.SetDirty({1, 1}, {10, true}, 1);
  cache.InsertClean({1, 1}, {99, false});
  cache.InsertClean({2, 1}, {20, true});
  ExtEntry e;
  ASSERT_TRUE(cache.Get({1, 1}, &e));
  EXPECT_EQ(e.slot, 10u);
  cache.ClearExclusive(1);
  ASSERT_TRUE(cache.Get({1, 1}, &e));
  EXPECT_FALSE(e.exclusive);
  ASSERT_TRUE(cache.Get({2, 1}, &e));
  EXPECT_TRUE(e.exclusive);
  cache.DropResource(2);
  EXPECT_FALSE(cache.Get({2, 1}, &e));
  cache.DropResource(1);  // dirty: kept
  EXPECT_TRUE(cache.Get({1, 1}, &e));
}

}  // namespace
}  // namespace cmkfs::fs
