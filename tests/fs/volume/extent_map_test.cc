// The stores below the thin layer: refcounts on clone and delete, freed
// slots reused (no leak), commits that keep pending state on failure, lost
// slots of a truncated pool file.
#include "extent_map.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "cmkfs/record.h"
#include "extent_records.h"
#include "support/fault_io_layer.h"
#include "thin_stores.h"

namespace cmkfs::fs {
namespace {

constexpr uint64_t kExt = kExtentSize;

std::vector<uint8_t> Bytes(size_t n, uint8_t v) {
  return std::vector<uint8_t>(n, v);
}

class ExtentMapTest : public ::testing::Test {
 protected:
  // The committed tables: slot -> refcount, the free slots, rid -> count,
  // and (rid, idx) -> slot.
  struct Tables {
    std::map<uint64_t, uint64_t> ref;
    std::set<uint64_t> free;
    std::map<uint64_t, uint64_t> count;
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> map;
    uint64_t hwm = 0;
  };
  static uint64_t At(Tables& t, uint64_t rid, uint64_t idx) {
    return t.map[std::pair<uint64_t, uint64_t>(rid, idx)];
  }
  Tables Committed() {
    Tables t;
    auto scan = [&](MetaTxn& txn, MetaTable table, auto fn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(table));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
      while (ok) {
        fn(cur->key(), cur->value());
        CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
      }
      return Status::Ok();
    };
    Status st = s_.meta->View([&](MetaTxn& txn) -> Status {
      CMKFS_RETURN_IF_ERROR(
          scan(txn, s_.tables.ref, [&](std::string_view k, std::string_view v) {
            t.ref[*DecodeU64Key(k)] = *DecodeCount(v, "refcount");
          }));
      CMKFS_RETURN_IF_ERROR(
          scan(txn, s_.free_table, [&](std::string_view k, std::string_view) {
            t.free.insert(*DecodeU64Key(k));
          }));
      CMKFS_RETURN_IF_ERROR(scan(
          txn, s_.tables.count, [&](std::string_view k, std::string_view v) {
            t.count[*DecodeU64Key(k)] = *DecodeCount(v, "count");
          }));
      CMKFS_RETURN_IF_ERROR(
          scan(txn, s_.tables.map, [&](std::string_view k, std::string_view v) {
            t.map[{*DecodeU64Key(k.substr(0, 8)), *DecodeU64Key(k.substr(8))}] =
                *DecodeSlot(v);
          }));
      if (auto a = txn.Get(s_.meta_table, "alloc"); a.ok()) {
        t.hwm = *DecodeCount(*a, "alloc");
      }
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return t;
  }
  // Fsck's invariants: every slot below the high-water mark is referenced
  // or free, never both; refcounts and counts match the map.
  void ExpectConsistent() {
    Tables t = Committed();
    std::map<uint64_t, uint64_t> refs;
    std::map<uint64_t, uint64_t> counts;
    for (const auto& [k, slot] : t.map) {
      refs[slot]++;
      counts[k.first]++;
      EXPECT_LT(slot, t.hwm);
    }
    EXPECT_EQ(refs, t.ref);
    EXPECT_EQ(counts, t.count);
    for (uint64_t s = 0; s < t.hwm; ++s) {
      EXPECT_NE(t.ref.contains(s), t.free.contains(s)) << "slot " << s;
    }
  }
  Status Write(Volume& v, uint64_t off, uint64_t n, uint8_t b) {
    return v.Write(off, Bytes(n, b));
  }

  ThinStores s_;
};

TEST_F(ExtentMapTest, CloneSharesSlotsAndDeleteFreesOnlyUnshared) {
  auto disk = s_.Thin(1, 8 * kExt);
  ASSERT_TRUE(Write(*disk, 0, 4 * kExt, 0x11).ok());
  ASSERT_TRUE(s_.map->CommitPending().ok());
  EXPECT_EQ(Committed().count[1], 4u);
  ExpectConsistent();

  ASSERT_TRUE(s_.map->Clone(1, 2, [](MetaTxn&) { return Status::Ok(); }).ok());
  Tables t = Committed();
  EXPECT_EQ(t.count[2], 4u);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(At(t, 1, i), At(t, 2, i));
    EXPECT_EQ(t.ref[At(t, 1, i)], 2u);
  }
  ExpectConsistent();

  // A write to the shared extent copies it: the snapshot keeps the old bytes.
  ASSERT_TRUE(Write(*disk, kExt, kSectorBytes, 0x22).ok());
  ASSERT_TRUE(s_.map->CommitPending().ok());
  t = Committed();
  EXPECT_NE(At(t, 1, 1), At(t, 2, 1));
  EXPECT_EQ(t.ref[At(t, 2, 1)], 1u);
  auto snap = s_.Thin(2, 8 * kExt);
  std::vector<uint8_t> buf(kExt);
  ASSERT_TRUE(snap->Read(kExt, buf, nullptr).ok());
  EXPECT_EQ(buf, Bytes(kExt, 0x11));
  ASSERT_TRUE(disk->Read(kExt, buf, nullptr).ok());
  EXPECT_EQ(buf[0], 0x22);
  EXPECT_EQ(buf[kSectorBytes], 0x11);
  ExpectConsistent();

  // Deleting the disk frees only the slot nobody else maps.
  size_t freed = 0;
  ASSERT_TRUE(s_.map
                  ->Drop(
                      1, [](MetaTxn&) { return Status::Ok(); }, &freed)
                  .ok());
  EXPECT_EQ(freed, 1u);
  t = Committed();
  EXPECT_FALSE(t.count.contains(1));
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(t.ref[At(t, 2, i)], 1u);
  EXPECT_EQ(t.free.size(), 1u);
  ExpectConsistent();

  // And the snapshot's delete frees the rest: nothing is left referenced.
  ASSERT_TRUE(s_.map
                  ->Drop(
                      2, [](MetaTxn&) { return Status::Ok(); }, &freed)
                  .ok());
  EXPECT_EQ(freed, 4u);
  t = Committed();
  EXPECT_TRUE(t.map.empty());
  EXPECT_TRUE(t.ref.empty());
  EXPECT_EQ(t.free.size(), t.hwm);
  ExpectConsistent();
}

TEST_F(ExtentMapTest, FreedSlotsAreReusedNotLeaked) {
  auto disk = s_.Thin(1, 16 * kExt);
  for (int round = 0; round < 4; ++round) {
    ASSERT_TRUE(Write(*disk, 0, 16 * kExt, static_cast<uint8_t>(round)).ok());
    ASSERT_TRUE(disk->Flush().ok());
    ASSERT_TRUE(disk->Zero(0, 16 * kExt, /*unmap=*/true).ok());
    ASSERT_TRUE(disk->Flush().ok());
    ExpectConsistent();
  }
  Tables t = Committed();
  // The first round took 16 slots; later rounds reused them.
  EXPECT_EQ(t.hwm, 16u);
  EXPECT_EQ(t.free.size(), 16u);
  EXPECT_TRUE(t.map.empty());
  // Freed slots were punched: the pool file holds no old data there.
  std::vector<uint8_t> buf(16 * kExt);
  ASSERT_TRUE(s_.file->ReadAt(0, buf).ok());
  EXPECT_EQ(buf, Bytes(16 * kExt, 0));
}

TEST_F(ExtentMapTest, PendingMappingsCountUntilCommitted) {
  auto disk = s_.Thin(7, 4 * kExt);
  ASSERT_TRUE(Write(*disk, 0, 2 * kExt, 1).ok());
  EXPECT_EQ(s_.map->PendingCount(7), 2);
  EXPECT_EQ(s_.map->PendingTotal(), 2);
  EXPECT_TRUE(s_.map->HasPending());
  EXPECT_TRUE(Committed().map.empty());
  ASSERT_TRUE(s_.map->CommitPending().ok());
  EXPECT_EQ(s_.map->PendingCount(7), 0);
  EXPECT_FALSE(s_.map->HasPending());
  EXPECT_EQ(Committed().count[7], 2u);
  // Overwriting an unshared extent changes no metadata.
  ASSERT_TRUE(Write(*disk, 0, kSectorBytes, 2).ok());
  EXPECT_FALSE(s_.map->HasPending());
}

TEST_F(ExtentMapTest, UncommittedSlotsAreNotInTheDurableState) {
  auto disk = s_.Thin(1, 4 * kExt);
  ASSERT_TRUE(Write(*disk, 0, kExt, 1).ok());
  ASSERT_TRUE(disk->Flush().ok());
  ASSERT_TRUE(Write(*disk, kExt, kExt, 2).ok());  // never committed
  // Reopen over the committed state (the batch is gone, as after a crash).
  s_.Open(Committed().hwm);
  disk = s_.Thin(1, 4 * kExt);
  auto run = disk->BlockStatus(kExt, kExt);
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(run->data);
  ExpectConsistent();
  // The slot the lost write took is handed out again.
  ASSERT_TRUE(Write(*disk, 2 * kExt, kExt, 3).ok());
  ASSERT_TRUE(disk->Flush().ok());
  EXPECT_EQ(Committed().hwm, 2u);
  ExpectConsistent();
}

TEST_F(ExtentMapTest, AFlushCommitsOnlyItsOwnDisk) {
  auto a = s_.Thin(1, 4 * kExt);
  auto b = s_.Thin(2, 4 * kExt);
  // b takes slot 0 and a slot 1, both past the committed high-water mark.
  ASSERT_TRUE(Write(*b, 0, kExt, 2).ok());
  ASSERT_TRUE(Write(*a, 0, kExt, 1).ok());
  ASSERT_TRUE(a->Flush().ok());
  Tables t = Committed();
  EXPECT_EQ(At(t, 1, 0), 1u);
  EXPECT_FALSE(t.map.contains({2, 0}))
      << "b's write was committed by a's fsync";
  EXPECT_EQ(s_.map->PendingCount(2), 1);
  EXPECT_EQ(s_.map->PendingCount(1), 0);
  // b's slot lies below the stored high-water mark: it is free there.
  EXPECT_EQ(t.hwm, 2u);
  EXPECT_TRUE(t.free.contains(0));
  ExpectConsistent();
  // Nor is it handed out again while b's mapping is pending.
  ASSERT_TRUE(s_.map->CommitPending(1).ok());
  ASSERT_TRUE(Write(*a, kExt, kExt, 3).ok());
  ASSERT_TRUE(a->Flush().ok());
  EXPECT_EQ(At(t = Committed(), 1, 1), 2u);
  ASSERT_TRUE(b->Flush().ok());
  t = Committed();
  EXPECT_EQ(At(t, 2, 0), 0u);
  EXPECT_FALSE(t.free.contains(0));
  ExpectConsistent();
  std::vector<uint8_t> buf(kExt);
  ASSERT_TRUE(b->Read(0, buf, nullptr).ok());
  EXPECT_EQ(buf, Bytes(kExt, 2));
  ASSERT_TRUE(a->Read(kExt, buf, nullptr).ok());
  EXPECT_EQ(buf, Bytes(kExt, 3));
}

TEST_F(ExtentMapTest, AnotherDisksFsyncLeavesNoSlotToLeakAtACrash) {
  auto a = s_.Thin(1, 4 * kExt);
  auto b = s_.Thin(2, 4 * kExt);
  ASSERT_TRUE(Write(*b, 0, 2 * kExt, 2).ok());
  ASSERT_TRUE(Write(*a, 0, kExt, 1).ok());
  ASSERT_TRUE(a->Flush().ok());
  // Power is cut: b's batch is gone.
  s_.Open(Committed().hwm);
  a = s_.Thin(1, 4 * kExt);
  b = s_.Thin(2, 4 * kExt);
  ExpectConsistent();
  auto run = b->BlockStatus(0, 4 * kExt);
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(run->data);
  std::vector<uint8_t> buf(kExt);
  ASSERT_TRUE(a->Read(0, buf, nullptr).ok());
  EXPECT_EQ(buf, Bytes(kExt, 1));
  // The slots b had taken are reused, not lost.
  ASSERT_TRUE(Write(*b, 0, 2 * kExt, 4).ok());
  ASSERT_TRUE(b->Flush().ok());
  EXPECT_EQ(Committed().hwm, 3u);
  ExpectConsistent();
}

TEST_F(ExtentMapTest, AFailedFsyncOfAnotherDiskLeavesNoSlotToLeakAtACrash) {
  // The pool file through a fault-injecting layer, so a commit can fail.
  auto fault = std::make_shared<FaultInjectingIoLayer>(s_.io);
  auto f = fault->Open(s_.dir / "pool.0");
  ASSERT_TRUE(f.ok());
  s_.file = *f;
  s_.Open(0);
  auto a = s_.Thin(1, 4 * kExt);
  auto b = s_.Thin(2, 4 * kExt);
  ASSERT_TRUE(Write(*b, 0, 2 * kExt, 2).ok());
  ASSERT_TRUE(Write(*a, 0, kExt, 1).ok());
  fault->FailNthWrite(1);  // a's first fsync fails at the pool's fdatasync
  EXPECT_FALSE(a->Flush().ok());
  ASSERT_TRUE(a->Flush().ok());
  // Power is cut: b's batch is gone; the slots it took are free, not lost.
  s_.Open(Committed().hwm);
  a = s_.Thin(1, 4 * kExt);
  b = s_.Thin(2, 4 * kExt);
  ExpectConsistent();
  ASSERT_TRUE(Write(*b, 0, 2 * kExt, 4).ok());
  ASSERT_TRUE(b->Flush().ok());
  EXPECT_EQ(Committed().hwm, 3u);
  ExpectConsistent();
}

TEST_F(ExtentMapTest, SlotsBeyondATruncatedPoolFileReadAsCorruption) {
  auto disk = s_.Thin(1, 4 * kExt);
  ASSERT_TRUE(Write(*disk, 0, 2 * kExt, 1).ok());
  ASSERT_TRUE(disk->Flush().ok());
  // The pool file loses its second slot, then the pool reopens.
  ASSERT_TRUE(s_.file->PunchHole(0, 2 * kExt).ok());
  auto fresh = s_.io->Open(s_.dir / "pool.1");
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE((*fresh)->WriteAt(0, Bytes(kExt, 9)).ok());
  s_.file = *fresh;  // one slot long
  s_.Open(Committed().hwm);
  disk = s_.Thin(1, 4 * kExt);
  EXPECT_FALSE(s_.slots->SlotLost(0));
  EXPECT_TRUE(s_.slots->SlotLost(1));
  std::vector<uint8_t> buf(kExt);
  Status st = disk->Read(kExt, buf, nullptr);
  EXPECT_EQ(st.kind(), ErrorKind::kCorruption) << st.ToString();
  // A full overwrite makes the slot valid again.
  ASSERT_TRUE(Write(*disk, kExt, kExt, 4).ok());
  EXPECT_FALSE(s_.slots->SlotLost(1));
  ASSERT_TRUE(disk->Read(kExt, buf, nullptr).ok());
  EXPECT_EQ(buf, Bytes(kExt, 4));
}

}  // namespace
}  // namespace cmkfs::fs
