// The LMDB MetaStore, and the fault-injecting wrapper the power-cut tests
// run it behind (tests/support/fault_meta_store.h).
#include "cmkfs/meta_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/fault_meta_store.h"

namespace cmkfs {
namespace {

namespace fs = std::filesystem;

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cmkfs-meta-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = fs::path(tmpl) / "meta";
  }
  void TearDown() override {
    fault_.reset();
    store_.reset();
    fs::remove_all(dir_.parent_path());
  }
  void Open(bool sync_on_commit = false) {
    LmdbMetaStoreOptions o;
    o.sync_on_commit = sync_on_commit;
    auto s = OpenLmdbMetaStore(dir_, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    auto t = store_->OpenTable("t");
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    table_ = *t;
  }
  Status Put(MetaStore& s, const std::string& k, const std::string& v) {
    return s.Update([&](MetaTxn& txn) { return txn.Put(table_, k, v); });
  }
  // "absent", or the value.
  std::string Get(MetaStore& s, const std::string& k) {
    std::string out;
    Status st = s.View([&](MetaTxn& txn) -> Status {
      auto v = txn.Get(table_, k);
      if (!v.ok()) return v.status();
      out = std::string(*v);
      return Status::Ok();
    });
    if (st.kind() == ErrorKind::kNotFound) return "absent";
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }
  // Keys from `from` while they start with `prefix`.
  std::vector<std::string> ScanPrefix(MetaStore& s, const std::string& from,
                                      const std::string& prefix) {
    std::vector<std::string> keys;
    Status st = s.View([&](MetaTxn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(table_));
      CMKFS_ASSIGN_OR_RETURN(bool ok, cur->Seek(from));
      while (ok && cur->key().starts_with(prefix)) {
        keys.emplace_back(cur->key());
        CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
      }
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return keys;
  }

  fs::path dir_;
  std::shared_ptr<MetaStore> store_;
  std::shared_ptr<FaultInjectingMetaStore> fault_;
  MetaTable table_ = 0;
};

TEST_F(MetaStoreTest, PutGetDeleteScanAndCount) {
  Open();
  for (const char* k : {"a1", "a2", "b1", "a3"}) {
    ASSERT_TRUE(Put(*store_, k, std::string("v-") + k).ok());
  }
  EXPECT_EQ(Get(*store_, "a2"), "v-a2");
  EXPECT_EQ(Get(*store_, "zz"), "absent");
  EXPECT_EQ(ScanPrefix(*store_, "a", "a"),
            (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(ScanPrefix(*store_, "a2", "a"),
            (std::vector<std::string>{"a2", "a3"}));
  EXPECT_EQ(ScanPrefix(*store_, "", ""),
            (std::vector<std::string>{"a1", "a2", "a3", "b1"}));
  ASSERT_TRUE(store_
                  ->Update([&](MetaTxn& txn) -> Status {
                    CMKFS_RETURN_IF_ERROR(txn.Delete(table_, "a2"));
                    EXPECT_EQ(txn.Delete(table_, "a2").kind(),
                              ErrorKind::kNotFound);
                    CMKFS_ASSIGN_OR_RETURN(uint64_t n, txn.Count(table_));
                    EXPECT_EQ(n, 3u);  // the transaction's own view
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(Get(*store_, "a2"), "absent");
  // A failing function aborts its transaction.
  Status st = store_->Update([&](MetaTxn& txn) -> Status {
    CMKFS_RETURN_IF_ERROR(txn.Put(table_, "c", "x"));
    return InvalidArgumentError("no");
  });
  EXPECT_EQ(st.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(Get(*store_, "c"), "absent");
}

TEST_F(MetaStoreTest, ReadTransactionsRefuseWritesAndEndedOnesEverything) {
  Open();
  ASSERT_TRUE(Put(*store_, "k", "v").ok());
  auto r = store_->BeginRead();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)->read_only());
  EXPECT_EQ((*r)->Put(table_, "k", "w").kind(), ErrorKind::kFailedPrecondition);
  auto w = store_->BeginWrite();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Put(table_, "k", "w").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ((*w)->Get(table_, "k").status().kind(),
            ErrorKind::kFailedPrecondition);
  // The older snapshot still sees the old value.
  auto old = (*r)->Get(table_, "k");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(*old, "v");
  r->reset();
  EXPECT_EQ(Get(*store_, "k"), "w");
}

TEST_F(MetaStoreTest, SyncedDataSurvivesAReopen) {
  Open();
  ASSERT_TRUE(Put(*store_, "k", "v").ok());
  ASSERT_TRUE(store_->Sync().ok());
  store_.reset();
  Open();
  EXPECT_EQ(Get(*store_, "k"), "v");
}

TEST_F(MetaStoreTest, PowerCutDropsCommitsSinceTheLastSync) {
  Open();
  fault_ = std::make_shared<FaultInjectingMetaStore>(store_);
  ASSERT_TRUE(Put(*fault_, "kept", "1").ok());
  ASSERT_TRUE(Put(*fault_, "changed", "old").ok());
  ASSERT_TRUE(Put(*fault_, "deleted", "x").ok());
  int hooks = 0;
  fault_->SetSyncHook([&] { ++hooks; });
  ASSERT_TRUE(fault_->Sync().ok());
  EXPECT_EQ(hooks, 1);
  ASSERT_TRUE(Put(*fault_, "changed", "new").ok());
  ASSERT_TRUE(Put(*fault_, "changed", "newer").ok());
  ASSERT_TRUE(Put(*fault_, "added", "y").ok());
  ASSERT_TRUE(
      fault_
          ->Update([&](MetaTxn& txn) { return txn.Delete(table_, "deleted"); })
          .ok());
  EXPECT_EQ(fault_->unsynced_commits(), 4u);
  EXPECT_EQ(Get(*fault_, "changed"), "newer");  // visible before the cut
  fault_->Crash();
  EXPECT_EQ(fault_->Sync().kind(), ErrorKind::kIOError);
  EXPECT_EQ(Put(*fault_, "late", "z").kind(), ErrorKind::kIOError);
  EXPECT_EQ(fault_->BeginRead().status().kind(), ErrorKind::kIOError);
  ASSERT_TRUE(fault_->Recover().ok());
  EXPECT_EQ(Get(*fault_, "kept"), "1");
  EXPECT_EQ(Get(*fault_, "changed"), "old");
  EXPECT_EQ(Get(*fault_, "deleted"), "x");
  EXPECT_EQ(Get(*fault_, "added"), "absent");
  EXPECT_EQ(Get(*fault_, "late"), "absent");
  // The rollback itself is durable in the real store below.
  fault_.reset();
  store_.reset();
  Open();
  EXPECT_EQ(Get(*store_, "changed"), "old");
  EXPECT_EQ(Get(*store_, "added"), "absent");
}

TEST_F(MetaStoreTest, PowerCutMayKeepUnsyncedCommits) {
  Open();
  fault_ = std::make_shared<FaultInjectingMetaStore>(store_);
  ASSERT_TRUE(Put(*fault_, "k", "old").ok());
  ASSERT_TRUE(fault_->Sync().ok());
  ASSERT_TRUE(Put(*fault_, "k", "new").ok());
  fault_->Crash(/*keep_unsynced=*/true);
  EXPECT_EQ(Put(*fault_, "k", "lost").kind(), ErrorKind::kIOError);
  ASSERT_TRUE(fault_->Recover().ok());
  EXPECT_EQ(Get(*fault_, "k"), "new");
}

}  // namespace
}  // namespace cmkfs
