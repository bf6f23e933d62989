// Fsck on its own: CheckMetadata over hand-made tables, no engine.
#include "fsck.h"

#include <gtest/gtest.h>

#include "cmkfs/record.h"
#include "engine_test_support.h"
#include "records.h"

namespace cmkfs::fs::testing {
namespace {

class FsckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("cmkfs-fsck-test");
    ASSERT_FALSE(dir_.empty());
    auto store = OpenLmdbMetaStore(dir_ / "meta", {});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    meta_ = std::move(*store);
    for (auto [table, name] :
         {std::pair{&t_.meta, "meta"}, std::pair{&t_.resources, "resources"},
          std::pair{&t_.extmap, "extmap"}, std::pair{&t_.refcount, "refcount"},
          std::pair{&t_.free, "free"}, std::pair{&t_.counts, "counts"}}) {
      auto h = meta_->OpenTable(name);
      ASSERT_TRUE(h.ok()) << h.status().ToString();
      *table = *h;
    }
    pool_.size = 3 * kExtentSize;
    pool_.path = "pool.0";
    // A consistent state: disk d (rid 1, two extents) maps extent 0 to
    // slot 0; slot 1 is free; three slots allocated.
    ASSERT_OK(meta_->Update([&](MetaTxn& txn) -> Status {
      ResourceRecord r;
      r.rid = 1;
      r.name = "d";
      r.size = 2 * kExtentSize;
      r.key_id = "cmk://v/keys/k/1";
      CMKFS_RETURN_IF_ERROR(txn.Put(t_.resources, ResourceKey(r.kind, r.name),
                                    EncodeResource(r)));
      CMKFS_RETURN_IF_ERROR(txn.Put(t_.meta, "alloc", EncodeCount(3)));
      CMKFS_RETURN_IF_ERROR(txn.Put(t_.extmap, MapKey(1, 0), EncodeSlot(0)));
      CMKFS_RETURN_IF_ERROR(
          txn.Put(t_.refcount, EncodeSlot(0), EncodeCount(1)));
      CMKFS_RETURN_IF_ERROR(txn.Put(t_.free, EncodeSlot(1), ""));
      CMKFS_RETURN_IF_ERROR(txn.Put(t_.free, EncodeSlot(2), ""));
      return txn.Put(t_.counts, EncodeU64Key(1), EncodeCount(1));
    }));
  }
  void TearDown() override {
    meta_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  FsckReport Check() {
    std::optional<FsckReport> rep;
    Status st = meta_->View([&](MetaTxn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(rep, CheckMetadata(txn, t_, pool_));
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return rep.value_or(FsckReport{});
  }
  std::string Problems(const FsckReport& rep) {
    std::string all;
    for (const auto& p : rep.problems) all += p + "\n";
    return all;
  }

  std::filesystem::path dir_;
  std::unique_ptr<MetaStore> meta_;
  FsckTables t_;
  FsckPool pool_;
};

TEST_F(FsckTest, ConsistentTablesAreClean) {
  FsckReport rep = Check();
  EXPECT_TRUE(rep.clean()) << Problems(rep);
  EXPECT_EQ(rep.resources_checked, 1u);
  EXPECT_EQ(rep.extents_checked, 1u);
}

TEST_F(FsckTest, ReportsLeakedSlotAndCountMismatch) {
  ASSERT_OK(meta_->Update([&](MetaTxn& txn) -> Status {
    CMKFS_RETURN_IF_ERROR(txn.Delete(t_.free, EncodeSlot(2)));
    return txn.Put(t_.counts, EncodeU64Key(1), EncodeCount(2));
  }));
  FsckReport rep = Check();
  std::string all = Problems(rep);
  EXPECT_EQ(rep.problems.size(), 2u) << all;
  EXPECT_HAS_SUBSTR(all,
                    "leaked slot 2: neither referenced nor on the free list");
  EXPECT_HAS_SUBSTR(all, "disks/d: extent count records 2 but the map holds 1");
}

TEST_F(FsckTest, ReportsDataMissingFromThePool) {
  pool_.slot_lost = [](uint64_t slot) { return slot == 0; };
  FsckReport rep = Check();
  ASSERT_EQ(rep.problems.size(), 1u) << Problems(rep);
  EXPECT_HAS_SUBSTR(rep.problems[0],
                    "disks/d extent 0 maps slot 0 whose data was missing");
  pool_.slot_lost = nullptr;
  pool_.size = 0;
  rep = Check();
  ASSERT_EQ(rep.problems.size(), 1u) << Problems(rep);
  EXPECT_HAS_SUBSTR(rep.problems[0], "beyond the end of the extent pool file");
}

}  // namespace
}  // namespace cmkfs::fs::testing
