// The catalog on its own, over a metadata store of its own (no engine, no
// extents): the re-wrap's per-resource steps, its marker on failure, and
// the DES rules.
#include "catalog.h"

#include <gtest/gtest.h>

#include "engine_test_support.h"
#include "test_keys.h"

namespace cmkfs::fs::testing {
namespace {

class CatalogTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    CloseEngine();
    auto store = OpenLmdbMetaStore(root_ / "catalog-meta", {});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    meta_ = std::move(*store);
    CatalogTables t;
    for (auto [table, name] :
         {std::pair{&t.meta, "meta"}, std::pair{&t.resources, "resources"},
          std::pair{&t.des, "des"}}) {
      auto h = meta_->OpenTable(name);
      ASSERT_TRUE(h.ok()) << h.status().ToString();
      *table = *h;
    }
    catalog_.emplace(options_, ks_, meta_.get(), t, Slots());
  }
  // The catalog's erase slots, in the test's own directory.
  std::unique_ptr<EraseSlotFile> Slots() {
    auto slots = EraseSlotFile::Open(root_ / "catalog-erase-slots");
    EXPECT_TRUE(slots.ok()) << slots.status().ToString();
    return slots.ok() ? std::move(*slots) : nullptr;
  }
  void TearDown() override {
    catalog_.reset();
    meta_.reset();
    EngineTest::TearDown();
  }
  DesRecord NewDes(const std::string& name) {
    DesSpec spec;
    spec.name = name;
    spec.key_id = keystore::KeyId{V("v1"), "k1", ""};
    auto d = catalog_->CreateDes(spec);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    if (!d.ok()) return {};
    Grant("v1", d->identity);
    return *d;
  }
  ResourceRecord NewDisk(const std::string& name, const std::string& des) {
    DiskSpec spec;
    spec.name = name;
    spec.size = 1 << 20;
    spec.des = des;
    auto r = catalog_->CreateDisk(spec);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ResourceRecord{};
  }
  keystore::KeyId NewVersion() {
    auto k = ks_->ImportKey("", V("v1"), "k1", kTestPems[1],
                            keystore::KeyType::kRsa);
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    return k.ok() ? k->id : keystore::KeyId{};
  }
  // Hooks that record each step and check that the DEK is asked for inside
  // its step.
  RewrapHooks Recording() {
    RewrapHooks hooks;
    hooks.hold = [this](ResourceKind, std::string_view name,
                        const std::function<Status()>& step) {
      held_.emplace_back(name);
      if (before_step_) before_step_(name);
      in_step_ = true;
      Status st = step();
      in_step_ = false;
      return st;
    };
    hooks.dek = [this](const ResourceRecord& r) {
      EXPECT_TRUE(in_step_) << r.name;
      deks_.push_back(r.name);
      return catalog_->UnwrapDek(r);
    };
    return hooks;
  }
  std::unique_ptr<MetaStore> meta_;
  std::optional<Catalog> catalog_;
  std::vector<std::string> held_, deks_;
  std::function<void(std::string_view)> before_step_;
  bool in_step_ = false;
};

TEST_F(CatalogTest, RewrapStepsOneResourceAtATimeAndRereadsItsRecord) {
  MakeKey("v1", "k1");
  NewDes("des1");
  NewDisk("a", "des1");
  ResourceRecord b = NewDisk("b", "des1");
  NewDisk("platform-disk", "");
  keystore::KeyId v2 = NewVersion();
  // While "a" is re-wrapped, "b" leaves the DES (as a concurrent change of
  // its record would make it): its step must see that and skip it.
  before_step_ = [&](std::string_view name) {
    if (name != "a") return;
    ResourceRecord moved = b;
    moved.des.clear();
    ASSERT_OK(catalog_->PutResource(moved));
  };
  ASSERT_OK_AND_ASSIGN(
      DesRecord d,
      catalog_->UpdateDes("des1", keystore::KeyId{V("v1"), "k1", ""},
                          std::nullopt, Recording()));
  EXPECT_EQ(held_, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(deks_, (std::vector<std::string>{"a"}));
  EXPECT_EQ(d.key_id, v2.ToString());
  EXPECT_TRUE(d.rotation_target.empty());
  EXPECT_TRUE(d.previous_key_id.empty());
  ASSERT_OK_AND_ASSIGN(auto a,
                       catalog_->LoadResource(ResourceKind::kDisk, "a"));
  EXPECT_EQ(a.key_id, v2.ToString());
  ASSERT_OK(catalog_->UnwrapDek(a).status());
  ASSERT_OK_AND_ASSIGN(auto b2,
                       catalog_->LoadResource(ResourceKind::kDisk, "b"));
  EXPECT_EQ(b2.key_id, b.key_id);
}

TEST_F(CatalogTest, FailedRewrapKeepsTheMarkerAndARetryFinishesIt) {
  keystore::KeyId v1 = MakeKey("v1", "k1");
  NewDes("des1");
  NewDisk("a", "des1");
  NewDisk("b", "des1");
  keystore::KeyId v2 = NewVersion();
  RewrapHooks failing = Recording();
  failing.dek = [this](const ResourceRecord& r) -> Result<crypto::SecretBytes> {
    if (r.name == "a") return KeyUnavailableError("test: a's key is gone");
    return catalog_->UnwrapDek(r);
  };
  auto st = catalog_->UpdateDes("des1", keystore::KeyId{V("v1"), "k1", ""},
                                std::nullopt, failing);
  ASSERT_FALSE(st.ok());
  EXPECT_HAS_SUBSTR(st.status().message(), "test: a's key is gone");
  ASSERT_OK_AND_ASSIGN(DesRecord marked, catalog_->LoadDes("des1"));
  EXPECT_EQ(marked.rotation_target, v2.ToString());
  EXPECT_EQ(marked.previous_key_id, v1.ToString());
  EXPECT_HAS_SUBSTR(marked.rotation_error, "test: a's key is gone");

  // The retry redoes only what is left: "b" was re-wrapped already.
  held_.clear();
  ASSERT_OK_AND_ASSIGN(
      DesRecord d,
      catalog_->UpdateDes("des1", keystore::KeyId{V("v1"), "k1", ""},
                          std::nullopt, Recording()));
  EXPECT_EQ(held_, (std::vector<std::string>{"a"}));
  EXPECT_TRUE(d.rotation_target.empty());
  EXPECT_TRUE(d.rotation_error.empty());
  for (const char* name : {"a", "b"}) {
    ASSERT_OK_AND_ASSIGN(auto r,
                         catalog_->LoadResource(ResourceKind::kDisk, name));
    EXPECT_EQ(r.key_id, v2.ToString()) << name;
  }
}

TEST_F(CatalogTest, DesQuotaIsPerSubscriptionAndRegion) {
  options_.des_quota_per_region = 1;
  catalog_.reset();
  CatalogTables t;
  ASSERT_OK_AND_ASSIGN(t.meta, meta_->OpenTable("meta"));
  ASSERT_OK_AND_ASSIGN(t.resources, meta_->OpenTable("resources"));
  ASSERT_OK_AND_ASSIGN(t.des, meta_->OpenTable("des"));
  catalog_.emplace(options_, ks_, meta_.get(), t, Slots());
  MakeKey("v1", "k1");
  NewDes("des1");
  DesSpec spec;
  spec.name = "des2";
  spec.key_id = keystore::KeyId{V("v1"), "k1", ""};
  auto second = catalog_->CreateDes(spec);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_HAS_SUBSTR(second.status().message(),
                    "disk_encryption_sets_per_region");
  ASSERT_OK_AND_ASSIGN(auto all, catalog_->AllDes());
  EXPECT_EQ(all.size(), 1u);
}

TEST_F(CatalogTest, DeleteDesIsRefusedWhileADiskUsesIt) {
  MakeKey("v1", "k1");
  NewDes("des1");
  NewDisk("a", "des1");
  Status st = catalog_->DeleteDes("des1");
  EXPECT_EQ(st.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_HAS_SUBSTR(st.message(), "disks/a");
  ASSERT_OK_AND_ASSIGN(auto uses, catalog_->KeyUses());
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0].des, "des1");
}

}  // namespace
}  // namespace cmkfs::fs::testing
