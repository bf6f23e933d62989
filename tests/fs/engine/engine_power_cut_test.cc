// Power cuts at every sync point of a write + fsync, a snapshot, a delete, a
// DEK re-wrap and a resize. The pool runs on the fault-injecting I/O layer
// (unsynced writes and punches are lost) and the metadata on LMDB behind the
// fault-injecting store (transactions committed since the last Sync are
// lost, or kept: written back before the cut). A dry run counts the sync
// points; then, from a fresh state directory each time, power is cut at
// each one in turn and once more after the operation returned. After the
// restart: every acknowledged write reads back, nothing else reads as
// anything but its old or new bytes, the operation happened or not as a
// whole, and fsck is clean (no leaked or doubly used slot).
#include <gtest/gtest.h>

#include <functional>
#include <optional>

#include "cmkfs/meta_store.h"
#include "engine_test_support.h"
#include "support/power_cut.h"
#include "test_keys.h"

namespace cmkfs::fs::testing {
namespace {

constexpr uint64_t kExt = 64 * 1024;
constexpr uint64_t kDiskSize = 16 * kExt;

struct Scenario {
  // Builds the state before the operation, synced.
  std::function<void()> prepare;
  // The operation; OK means acknowledged.
  std::function<Status()> act;
  // After the restart; `acknowledged`: act returned OK before the cut.
  std::function<void(bool acknowledged)> check;
};

class EnginePowerCutTest : public EngineTest {
 protected:
  void SetUp() override {
    options_.commit_interval = std::chrono::hours(1);  // commits on demand
    open_meta_ = [this](const std::filesystem::path& dir)
        -> Result<std::shared_ptr<MetaStore>> {
      if (!meta_) {
        LmdbMetaStoreOptions mo;
        mo.sync_on_commit = false;  // as the engine opens it
        CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<MetaStore> base,
                               OpenLmdbMetaStore(dir, mo));
        meta_ = std::make_shared<FaultInjectingMetaStore>(std::move(base));
        power_ = std::make_unique<PowerCut>(pool_, meta_);
      }
      return std::shared_ptr<MetaStore>(meta_);
    };
    NewStores();
    EngineTest::SetUp();
  }
  void TearDown() override {
    h_.reset();
    h2_.reset();
    engine_.reset();
    power_.reset();
    meta_.reset();
    EngineTest::TearDown();
  }
  void NewStores() {
    pool_ = std::make_shared<FaultInjectingIoLayer>(NewPosixIoLayer());
    io_ = pool_;
  }
  // An empty state directory on new fault layers.
  void StartFresh() {
    h_.reset();
    h2_.reset();
    engine_.reset();
    power_.reset();
    meta_.reset();
    std::error_code ec;
    std::filesystem::remove_all(options_.dir, ec);
    NewStores();
    Reopen();
  }
  void RestartAfterCut() {
    h_.reset();
    h2_.reset();
    engine_.reset();  // its last commit fails: the power is off
    ASSERT_OK(power_->Restore());
    Reopen();
  }
  void ExpectFsckClean(const std::string& where) {
    auto r = engine_->Fsck();
    ASSERT_TRUE(r.ok()) << where << ": " << r.status().ToString();
    for (const auto& p : r->problems) ADD_FAILURE() << where << ": fsck: " << p;
  }
  // Every 4 KiB sector of `got` equals the same sector of `old` or `now`.
  static bool SectorsOldOrNew(const std::vector<uint8_t>& got,
                              const std::vector<uint8_t>& old,
                              const std::vector<uint8_t>& now) {
    if (got.size() != old.size() || got.size() != now.size()) return false;
    for (size_t s = 0; s < got.size(); s += 4096) {
      auto g = got.begin() + s;
      if (!std::equal(g, g + 4096, old.begin() + s) &&
          !std::equal(g, g + 4096, now.begin() + s)) {
        return false;
      }
    }
    return true;
  }
  std::vector<uint8_t> ReadDisk(ResourceKind kind, const std::string& name,
                                uint64_t size = kDiskSize) {
    auto h = engine_->Open(kind, name, false);
    EXPECT_TRUE(h.ok()) << name << ": " << h.status().ToString();
    if (!h.ok()) return {};
    return ReadAll(**h, 0, size);
  }
  bool Exists(ResourceKind kind, const std::string& name) {
    auto r = engine_->Get(kind, name);
    EXPECT_TRUE(r.ok() || r.status().kind() == ErrorKind::kNotFound)
        << r.status().ToString();
    return r.ok();
  }

  // Dry run, then a cut at each sync point (and after the operation), with
  // unsynced metadata commits lost and, separately, kept.
  void RunAtEverySyncPoint(const Scenario& sc) {
    StartFresh();
    sc.prepare();
    power_->Arm(0);
    ASSERT_OK(sc.act());
    const std::vector<std::string> points = power_->points();
    ASSERT_FALSE(points.empty()) << "the operation reached no sync point";
    std::string order;
    for (const auto& p : points) order += " " + p;
    RecordProperty("sync_points", order);
    for (bool keep : {false, true}) {
      for (size_t cut = 1; cut <= points.size() + 1; ++cut) {
        const std::string where =
            "cut at sync point " + std::to_string(cut) + " of " +
            std::to_string(points.size()) + " (" + order.substr(1) + ")" +
            (keep ? ", unsynced metadata kept" : ", unsynced metadata lost");
        SCOPED_TRACE(where);
        StartFresh();
        sc.prepare();
        if (HasFatalFailure()) return;
        power_->Arm(cut <= points.size() ? cut : 0, keep);
        Status st = sc.act();
        if (cut > points.size()) {
          ASSERT_OK(st);
          power_->CutNow(keep);
        } else {
          EXPECT_FALSE(st.ok()) << "acknowledged although power was cut";
        }
        ASSERT_TRUE(power_->cut());
        RestartAfterCut();
        if (HasFatalFailure()) return;
        sc.check(st.ok());
        ExpectFsckClean(where);
        if (HasFatalFailure()) return;
      }
    }
  }

  std::shared_ptr<FaultInjectingIoLayer> pool_;
  std::shared_ptr<FaultInjectingMetaStore> meta_;
  std::unique_ptr<PowerCut> power_;
  std::shared_ptr<DiskHandle> h_;
  std::shared_ptr<DiskHandle> h2_;  // a second open disk, where one is used
};

TEST_F(EnginePowerCutTest, WriteAndFsync) {
  // Before (old) and after (now) writes of every kind: an in-place
  // overwrite, a copy-on-write of an extent shared with a snapshot, a first
  // write and a discard.
  struct {
    std::vector<uint8_t> old = std::vector<uint8_t>(kDiskSize, 0);
    std::vector<uint8_t> now;
  } w;
  auto base = Pattern(4 * kExt, 1);
  std::copy(base.begin(), base.end(), w.old.begin());
  w.now = w.old;
  auto in_place = Pattern(4096, 2);
  auto cow = Pattern(kExt / 2, 3);
  auto fresh = Pattern(kExt + 8192, 4);
  std::copy(in_place.begin(), in_place.end(), w.now.begin() + kExt + 4096);
  std::copy(cow.begin(), cow.end(), w.now.begin() + 2 * kExt);
  std::fill(w.now.begin() + 3 * kExt, w.now.begin() + 4 * kExt, 0);
  std::copy(fresh.begin(), fresh.end(), w.now.begin() + 6 * kExt);
  Scenario sc;
  sc.prepare = [&] {
    MakeDisk("d", kDiskSize);
    h_ = OpenDisk("d");
    ASSERT_TRUE(h_);
    WriteAll(*h_, 0, base);
    ASSERT_OK(h_->Sync());
    ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  };
  sc.act = [&]() -> Status {
    for (auto [off, data] :
         {std::pair{kExt + 4096, &in_place}, std::pair{2 * kExt, &cow},
          std::pair{6 * kExt, &fresh}}) {
      CMKFS_RETURN_IF_ERROR(h_->Write(off, *data).status());
    }
    CMKFS_RETURN_IF_ERROR(h_->Discard(3 * kExt, kExt));
    return h_->Sync();
  };
  sc.check = [&](bool acknowledged) {
    auto got = ReadDisk(ResourceKind::kDisk, "d");
    if (acknowledged) {
      EXPECT_EQ(got, w.now) << "an fsync-acknowledged write is lost";
    } else {
      EXPECT_TRUE(SectorsOldOrNew(got, w.old, w.now))
          << "a sector reads as neither its old nor its new bytes";
    }
    EXPECT_EQ(ReadDisk(ResourceKind::kSnapshot, "s"), w.old)
        << "the snapshot changed";
  };
  RunAtEverySyncPoint(sc);
}

TEST_F(EnginePowerCutTest, FsyncOfOneDiskWhileAnotherWrites) {
  // Disk "b" takes slots first and never fsyncs; "a" writes after it and
  // fsyncs. a's fsync must make a's writes durable, leave b's uncommitted
  // and leak none of the slots b took (fsck checks every slot).
  auto a_data = Pattern(3 * kExt, 9);
  auto b_data = Pattern(2 * kExt + 4096, 10);
  std::vector<uint8_t> a_now(kDiskSize, 0), b_now(kDiskSize, 0);
  const std::vector<uint8_t> zeros(kDiskSize, 0);
  std::copy(a_data.begin(), a_data.end(), a_now.begin() + kExt);
  std::copy(b_data.begin(), b_data.end(), b_now.begin());
  Scenario sc;
  sc.prepare = [&] {
    MakeDisk("a", kDiskSize);
    MakeDisk("b", kDiskSize);
    ASSERT_OK(engine_->Flush());
    h_ = OpenDisk("a");
    h2_ = OpenDisk("b");
    ASSERT_TRUE(h_ && h2_);
    WriteAll(*h2_, 0, b_data);
  };
  sc.act = [&]() -> Status {
    CMKFS_RETURN_IF_ERROR(h_->Write(kExt, a_data).status());
    return h_->Sync();
  };
  sc.check = [&](bool acknowledged) {
    auto got = ReadDisk(ResourceKind::kDisk, "a");
    if (acknowledged) {
      EXPECT_EQ(got, a_now) << "an fsync-acknowledged write is lost";
    } else {
      EXPECT_TRUE(SectorsOldOrNew(got, zeros, a_now));
    }
    EXPECT_TRUE(
        SectorsOldOrNew(ReadDisk(ResourceKind::kDisk, "b"), zeros, b_now))
        << "b reads as neither its old nor its new bytes";
  };
  RunAtEverySyncPoint(sc);
}

TEST_F(EnginePowerCutTest, Snapshot) {
  auto synced = Pattern(4 * kExt, 5);
  // Written, not fsynced: in place over extent 3, first writes of 4 and 5.
  auto pending = Pattern(3 * kExt, 6);
  std::vector<uint8_t> old(kDiskSize, 0), now;
  std::copy(synced.begin(), synced.end(), old.begin());
  now = old;
  std::copy(pending.begin(), pending.end(), now.begin() + 3 * kExt);
  Scenario sc;
  sc.prepare = [&] {
    MakeDisk("d", kDiskSize);
    h_ = OpenDisk("d");
    ASSERT_TRUE(h_);
    WriteAll(*h_, 0, synced);
    ASSERT_OK(h_->Sync());
    WriteAll(*h_, 3 * kExt, pending);
  };
  // A snapshot contains every write acknowledged before it (these are, to
  // the snapshot: it commits them first).
  sc.act = [&]() -> Status {
    return engine_->CreateSnapshot("s", "d").status();
  };
  sc.check = [&](bool acknowledged) {
    auto disk = ReadDisk(ResourceKind::kDisk, "d");
    EXPECT_TRUE(SectorsOldOrNew(disk, old, now));
    bool exists = Exists(ResourceKind::kSnapshot, "s");
    if (acknowledged) {
      ASSERT_TRUE(exists) << "an acknowledged snapshot is gone";
      EXPECT_EQ(disk, now);
    }
    if (exists) {
      EXPECT_EQ(ReadDisk(ResourceKind::kSnapshot, "s"), disk)
          << "the snapshot differs from its disk";
    }
  };
  RunAtEverySyncPoint(sc);
}

TEST_F(EnginePowerCutTest, Delete) {
  auto shared = Pattern(4 * kExt, 7);
  auto own = Pattern(2 * kExt, 8);  // the disk's own, after the snapshot
  std::vector<uint8_t> snap(kDiskSize, 0), disk;
  std::copy(shared.begin(), shared.end(), snap.begin());
  disk = snap;
  std::copy(own.begin(), own.end(), disk.begin() + 3 * kExt);
  Scenario sc;
  sc.prepare = [&] {
    MakeDisk("d", kDiskSize);
    auto h = OpenDisk("d");
    ASSERT_TRUE(h);
    WriteAll(*h, 0, shared);
    ASSERT_OK(h->Sync());
    ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
    WriteAll(*h, 3 * kExt, own);
    ASSERT_OK(h->Sync());
  };
  sc.act = [&]() -> Status {
    return engine_->Delete(ResourceKind::kDisk, "d");
  };
  sc.check = [&](bool acknowledged) {
    bool exists = Exists(ResourceKind::kDisk, "d");
    if (acknowledged) {
      EXPECT_FALSE(exists) << "an acknowledged delete undone";
    }
    if (exists) {
      EXPECT_EQ(ReadDisk(ResourceKind::kDisk, "d"), disk);
    }
    EXPECT_EQ(ReadDisk(ResourceKind::kSnapshot, "s"), snap);
    // Slots freed by the delete are reusable: a new disk of the same size
    // fits and reads back.
    MakeDisk("n", kDiskSize);
    auto h = OpenDisk("n");
    ASSERT_TRUE(h);
    auto fill = Pattern(kDiskSize, 9);
    WriteAll(*h, 0, fill);
    ASSERT_OK(h->Sync());
    EXPECT_EQ(ReadAll(*h, 0, kDiskSize), fill);
  };
  RunAtEverySyncPoint(sc);
}

TEST_F(EnginePowerCutTest, DekRewrap) {
  auto data = Pattern(3 * kExt, 10);
  std::vector<uint8_t> expect(kDiskSize, 0);
  std::copy(data.begin(), data.end(), expect.begin());
  keystore::KeyId v1, v2;
  Scenario sc;
  sc.prepare = [&] {
    v1 = MakeKey("v", "k");
    MakeDes("des", "v", "k");
    for (const char* name : {"d1", "d2"}) {
      MakeDisk(name, kDiskSize, "des");
      auto h = OpenDisk(name);
      ASSERT_TRUE(h);
      WriteAll(*h, 0, data);
      ASSERT_OK(h->Sync());
    }
    h_ = OpenDisk("d1");  // re-wrapped from memory, d2 by unwrapping
    auto k =
        ks_->ImportKey("", V("v"), "k", kTestPems[1], keystore::KeyType::kRsa);
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    v2 = k->id;
  };
  sc.act = [&]() -> Status {
    return engine_
        ->UpdateDes("des", keystore::KeyId{V("v"), "k", ""}, std::nullopt)
        .status();
  };
  sc.check = [&](bool acknowledged) {
    // A rotation cut half-way resumes at open.
    ASSERT_OK_AND_ASSIGN(DesInfo des, engine_->GetDes("des"));
    if (acknowledged) {
      EXPECT_EQ(des.key_id, v2);
    }
    for (const char* name : {"d1", "d2"}) {
      ASSERT_OK_AND_ASSIGN(ResourceInfo info,
                           engine_->Get(ResourceKind::kDisk, name));
      EXPECT_TRUE(info.key_id == v1 || info.key_id == v2)
          << name << " is wrapped by " << info.key_id.ToString();
      EXPECT_EQ(info.key_id, des.key_id)
          << name << ": the re-wrap did not finish at open";
      EXPECT_EQ(ReadDisk(ResourceKind::kDisk, name), expect) << name;
    }
  };
  RunAtEverySyncPoint(sc);
}

TEST_F(EnginePowerCutTest, Resize) {
  auto data = Pattern(kDiskSize, 11);
  Scenario sc;
  sc.prepare = [&] {
    MakeDisk("d", kDiskSize);
    h_ = OpenDisk("d");
    ASSERT_TRUE(h_);
    WriteAll(*h_, 0, data);
    ASSERT_OK(h_->Sync());
  };
  sc.act = [&]() -> Status {
    return engine_->Resize("d", 2 * kDiskSize).status();
  };
  sc.check = [&](bool acknowledged) {
    ASSERT_OK_AND_ASSIGN(ResourceInfo info,
                         engine_->Get(ResourceKind::kDisk, "d"));
    if (acknowledged) {
      EXPECT_EQ(info.size, 2 * kDiskSize);
    }
    EXPECT_TRUE(info.size == kDiskSize || info.size == 2 * kDiskSize)
        << info.size;
    auto got = ReadDisk(ResourceKind::kDisk, "d", info.size);
    ASSERT_EQ(got.size(), info.size);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), got.begin()));
    EXPECT_TRUE(std::all_of(got.begin() + kDiskSize, got.end(),
                            [](uint8_t b) { return b == 0; }));
  };
  RunAtEverySyncPoint(sc);
}

}  // namespace
}  // namespace cmkfs::fs::testing
