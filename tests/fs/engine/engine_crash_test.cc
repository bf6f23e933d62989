// Crash safety with the fault-injecting I/O layer, fsck on injected
// metadata damage.
#include <gtest/gtest.h>

#include <optional>
#include <random>

#include "cmkfs/lmdb.h"
#include "cmkfs/record.h"
#include "engine_test_support.h"
#include "records.h"

namespace cmkfs::fs::testing {
namespace {

constexpr uint64_t kExt = 64 * 1024;

class EngineCrashTest : public EngineTest {
 protected:
  void SetUp() override {
    fault_ = std::make_shared<FaultInjectingIoLayer>(NewPosixIoLayer());
    io_ = fault_;
    options_.commit_interval = std::chrono::hours(1);  // commits only on demand
    EngineTest::SetUp();
  }
  // Power loss: unsynced pool writes vanish, the engine dies without
  // committing anything more.
  void CrashAndRestart() {
    fault_->Crash();
    CloseEngine();
    fault_->Recover();
    Reopen();
  }
  void ExpectFsckClean() {
    auto r = engine_->Fsck();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& p : r->problems) ADD_FAILURE() << "fsck: " << p;
  }
  std::shared_ptr<FaultInjectingIoLayer> fault_;
};

TEST_F(EngineCrashTest, SyncedDataSurvivesAndUnsyncedChangesVanishCleanly) {
  MakeDisk("d", 2 << 20);
  auto h = OpenDisk("d");
  auto a = Pattern(4 * kExt, 1);
  WriteAll(*h, 0, a);
  auto e = Pattern(kExt, 2);
  WriteAll(*h, 8 * kExt, e);
  ASSERT_OK(h->Sync());
  ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  WriteAll(*h, 8 * kExt, Pattern(kExt, 6));  // CoW (shared with s)
  ASSERT_OK(engine_->Delete(ResourceKind::kSnapshot, "s"));
  WriteAll(*h, 8 * kExt + 4096, Pattern(4096, 7));  // in place
  WriteAll(*h, kExt + 100, Pattern(70000, 3));  // CoW of exclusive: in place
  WriteAll(*h, 20 * kExt, Pattern(kExt, 4));    // new extent
  ASSERT_OK(h->Discard(2 * kExt, kExt));        // unmap, uncommitted
  h.reset();
  CrashAndRestart();
  h = OpenDisk("d");
  EXPECT_EQ(ReadAll(*h, 0, 4 * kExt), a);
  EXPECT_TRUE(IsZero(ReadAll(*h, 20 * kExt, kExt)));
  // The committed CoW of extent 8 survives; the later unsynced in-place
  // write to its second sector may or may not have reached the disk.
  auto first = Pattern(kExt, 6);
  EXPECT_EQ(ReadAll(*h, 8 * kExt, 4096),
            std::vector<uint8_t>(first.begin(), first.begin() + 4096));
  h.reset();
  ExpectFsckClean();
}

TEST_F(EngineCrashTest, RandomWriteFailuresKeepMetadataConsistent) {
  const uint64_t size = 32 * kExt;
  const uint64_t blocks = size / 4096;
  MakeDisk("d", size);
  auto h = OpenDisk("d");
  std::vector<uint8_t> model(size, 0), synced(size, 0);
  std::vector<bool> unknown(blocks, false), synced_unknown(blocks, false);
  std::vector<bool> dirty(blocks, false);
  std::mt19937_64 rng(123);
  fault_->FailWritesRandomly(0.08, 99);
  int snaps = 0;
  int ops = std::getenv("CMKFS_LONG_TESTS") ? 3000 : 400;
  for (int i = 0; i < ops; ++i) {
    int op = rng() % 10;
    uint64_t off = rng() % size;
    uint64_t len = 1 + rng() % std::min<uint64_t>(size - off, 3 * kExt);
    if (op < 6) {
      auto d = Pattern(len, i);
      auto r = h->Write(off, d);
      for (uint64_t b = off / 4096; b <= (off + len - 1) / 4096; ++b)
        dirty[b] = true;
      if (r.ok()) {
        std::copy(d.begin(), d.end(), model.begin() + off);
        for (uint64_t b = off / 4096; b <= (off + len - 1) / 4096; ++b) {
          if (b * 4096 >= off && (b + 1) * 4096 <= off + len)
            unknown[b] = false;
        }
      } else {
        for (uint64_t b = off / 4096; b <= (off + len - 1) / 4096; ++b)
          unknown[b] = true;
      }
    } else if (op == 6) {
      Status st = h->Discard(off, len);
      for (uint64_t b = off / 4096; b <= (off + len - 1) / 4096; ++b)
        dirty[b] = true;
      if (st.ok()) {
        std::fill(model.begin() + off, model.begin() + off + len, 0);
        for (uint64_t b = off / 4096; b <= (off + len - 1) / 4096; ++b) {
          if (b * 4096 >= off && (b + 1) * 4096 <= off + len)
            unknown[b] = false;
        }
      } else {
        for (uint64_t b = off / 4096; b <= (off + len - 1) / 4096; ++b)
          unknown[b] = true;
      }
    } else if (op == 7) {
      if (engine_->CreateSnapshot("s" + std::to_string(snaps), "d").ok())
        ++snaps;
    } else {
      if (h->Sync().ok()) {
        synced = model;
        synced_unknown = unknown;
        std::fill(dirty.begin(), dirty.end(), false);
      }
    }
  }
  EXPECT_GT(fault_->failed_writes(), 0u);
  h.reset();
  CrashAndRestart();
  ExpectFsckClean();
  h = OpenDisk("d");
  auto got = ReadAll(*h, 0, size);
  uint64_t checked = 0;
  for (uint64_t b = 0; b < blocks; ++b) {
    if (dirty[b] || synced_unknown[b]) continue;
    ++checked;
    ASSERT_TRUE(std::equal(got.begin() + b * 4096, got.begin() + (b + 1) * 4096,
                           synced.begin() + b * 4096))
        << "block " << b << " lost synced data";
  }
  EXPECT_GT(checked, 0u);
  // Deleting everything returns every extent.
  h.reset();
  for (int s = 0; s < snaps; ++s) {
    ASSERT_OK(
        engine_->Delete(ResourceKind::kSnapshot, "s" + std::to_string(s)));
  }
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "d"));
  ASSERT_OK_AND_ASSIGN(auto stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 0u);
  ExpectFsckClean();
}

TEST_F(EngineCrashTest, FsckReportsInjectedLeaksAndDanglingEntries) {
  MakeDisk("d", 1 << 20);
  {
    auto h = OpenDisk("d");
    WriteAll(*h, 0, Pattern(4 * kExt, 1));
    WriteAll(*h, 8 * kExt, Pattern(2 * kExt, 2));
  }
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "d"));  // 6 free slots
  MakeDisk("e", 1 << 20);
  {
    auto h = OpenDisk("e");
    WriteAll(*h, 0, Pattern(kExt, 3));  // takes one free slot
  }
  ExpectFsckClean();
  CloseEngine();
  {
    lmdb::EnvOptions eo;
    ASSERT_OK_AND_ASSIGN(auto env, lmdb::Env::Open(options_.dir / "meta", eo));
    ASSERT_OK_AND_ASSIGN(auto free_db, env->OpenDb("free"));
    ASSERT_OK_AND_ASSIGN(auto ref_db, env->OpenDb("refcount"));
    ASSERT_OK_AND_ASSIGN(auto map_db, env->OpenDb("extmap"));
    ASSERT_OK(env->Update([&](lmdb::Txn& txn) -> Status {
      std::vector<uint64_t> free_slots;
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.OpenCursor(free_db));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur.First());
      while (ok) {
        CMKFS_ASSIGN_OR_RETURN(uint64_t s, DecodeU64Key(cur.key()));
        free_slots.push_back(s);
        CMKFS_ASSIGN_OR_RETURN(ok, cur.Next());
      }
      if (free_slots.size() < 3) return CorruptionError("expected free slots");
      // Leak 1: a slot neither free nor referenced.
      CMKFS_RETURN_IF_ERROR(txn.Delete(free_db, EncodeSlot(free_slots[0])));
      // Leak 2: a refcount nobody references (and still on the free list).
      CMKFS_RETURN_IF_ERROR(
          txn.Put(ref_db, EncodeSlot(free_slots[1]), EncodeCount(1)));
      // Dangling map entry of a resource that does not exist.
      return txn.Put(map_db, MapKey(999, 0), EncodeSlot(free_slots[2]));
    }));
  }
  Reopen();
  ASSERT_OK_AND_ASSIGN(auto rep, engine_->Fsck());
  EXPECT_FALSE(rep.clean());
  std::string all;
  for (const auto& p : rep.problems) all += p + "\n";
  EXPECT_HAS_SUBSTR(all, "neither referenced nor on the free list");
  EXPECT_HAS_SUBSTR(all, "but no extent map references it");
  EXPECT_HAS_SUBSTR(all, "dangling extent map entry: resource id 999");
  EXPECT_HAS_SUBSTR(all, "is referenced but on the free list");
  EXPECT_EQ(rep.resources_checked, 1u);
}

}  // namespace
}  // namespace cmkfs::fs::testing
