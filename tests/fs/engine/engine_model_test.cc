// Randomized model test: random writes, discards, snapshots, clones,
// deletes and reopens against an in-memory model of every resource. Every
// snapshot's content is checked; at the end fsck is clean and deleting
// everything frees every extent. CMKFS_LONG_TESTS=1 runs longer.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

constexpr uint64_t kExt = 64 * 1024;

class EngineModelTest : public EngineTest,
                        public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) io_ = NewMemoryIoLayer();
    options_.cache_bytes = 16 << 10;  // tiny: exercise eviction
    EngineTest::SetUp();
  }
};

INSTANTIATE_TEST_SUITE_P(Pools, EngineModelTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "Memory" : "Posix";
                         });

TEST_P(EngineModelTest, RandomOperationsMatchModel) {
  const bool long_run = std::getenv("CMKFS_LONG_TESTS") != nullptr;
  const int ops = long_run ? 6000 : 600;
  std::mt19937_64 rng(GetParam() ? 777 : 778);
  std::map<std::string, std::vector<uint8_t>> disks, snaps;
  std::map<std::string, std::shared_ptr<DiskHandle>> open;
  int next = 0;
  auto handle = [&](const std::string& d) {
    auto& h = open[d];
    if (!h) h = OpenDisk(d);
    return h;
  };
  auto pick = [&](auto& m) {
    auto it = m.begin();
    std::advance(it, rng() % m.size());
    return it->first;
  };
  auto check = [&](ResourceKind kind, const std::string& name,
                   const std::vector<uint8_t>& want) {
    std::shared_ptr<DiskHandle> h;
    if (kind == ResourceKind::kDisk) {
      h = handle(name);
    } else {
      auto r = engine_->Open(kind, name, false);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      h = *r;
    }
    ASSERT_EQ(h->size(), want.size());
    auto got = ReadAll(*h, 0, want.size());
    ASSERT_TRUE(got == want) << ResourceKindName(kind) << " " << name;
  };
  for (int i = 0; i < ops; ++i) {
    int op = rng() % 100;
    if (disks.empty() || op < 3) {
      std::string n = "d" + std::to_string(next++);
      uint64_t size = (1 + rng() % 24) * kExt - (rng() % 2) * 4096;
      MakeDisk(n, size);
      disks[n] = std::vector<uint8_t>(size, 0);
    } else if (op < 55) {
      std::string d = pick(disks);
      auto& m = disks[d];
      uint64_t off = rng() % m.size();
      uint64_t len = 1 + rng() % std::min<uint64_t>(m.size() - off, 3 * kExt);
      auto data = Pattern(len, i);
      WriteAll(*handle(d), off, data);
      std::copy(data.begin(), data.end(), m.begin() + off);
    } else if (op < 63) {
      std::string d = pick(disks);
      auto& m = disks[d];
      uint64_t off = rng() % m.size();
      uint64_t len = 1 + rng() % std::min<uint64_t>(m.size() - off, 4 * kExt);
      if (rng() % 2) {
        ASSERT_OK(handle(d)->Discard(off, len));
      } else {
        ASSERT_OK(handle(d)->ZeroRange(off, len));
      }
      std::fill(m.begin() + off, m.begin() + off + len, 0);
    } else if (op < 70) {
      std::string d = pick(disks);
      std::string n = "s" + std::to_string(next++);
      ASSERT_TRUE(engine_->CreateSnapshot(n, d).ok());
      snaps[n] = disks[d];
    } else if (op < 74 && !snaps.empty()) {
      std::string s = pick(snaps);
      std::string n = "c" + std::to_string(next++);
      DiskSpec spec;
      spec.name = n;
      spec.source = "snapshots/" + s;
      uint64_t grow = (rng() % 3) * 4096;
      spec.size = snaps[s].size() + grow;
      ASSERT_TRUE(engine_->CreateDisk(spec).ok());
      disks[n] = snaps[s];
      disks[n].resize(spec.size, 0);
    } else if (op < 78 && !snaps.empty()) {
      std::string s = pick(snaps);
      check(ResourceKind::kSnapshot, s, snaps[s]);
      ASSERT_OK(engine_->Delete(ResourceKind::kSnapshot, s));
      snaps.erase(s);
    } else if (op < 81 && disks.size() > 1) {
      std::string d = pick(disks);
      open.erase(d);
      ASSERT_OK(engine_->Delete(ResourceKind::kDisk, d));
      disks.erase(d);
    } else if (op < 83) {
      std::string d = pick(disks);
      uint64_t grow = (1 + rng() % 4) * 4096;
      ASSERT_TRUE(engine_->Resize(d, disks[d].size() + grow).ok());
      disks[d].resize(disks[d].size() + grow, 0);
    } else if (op < 85) {
      open.clear();
      Reopen();
    } else if (op < 88) {
      ASSERT_OK(engine_->Flush());
    } else {
      std::string d = pick(disks);
      auto& m = disks[d];
      uint64_t off = rng() % m.size();
      uint64_t len = 1 + rng() % std::min<uint64_t>(m.size() - off, 3 * kExt);
      auto got = ReadAll(*handle(d), off, len);
      ASSERT_TRUE(std::equal(got.begin(), got.end(), m.begin() + off))
          << "disk " << d << " op " << i;
    }
    if (HasFatalFailure()) return;
  }
  for (const auto& [n, m] : disks) check(ResourceKind::kDisk, n, m);
  for (const auto& [n, m] : snaps) check(ResourceKind::kSnapshot, n, m);
  open.clear();
  ASSERT_OK_AND_ASSIGN(auto rep, engine_->Fsck());
  for (const auto& p : rep.problems) ADD_FAILURE() << "fsck: " << p;
  for (const auto& [n, m] : snaps)
    ASSERT_OK(engine_->Delete(ResourceKind::kSnapshot, n));
  for (const auto& [n, m] : disks)
    ASSERT_OK(engine_->Delete(ResourceKind::kDisk, n));
  ASSERT_OK_AND_ASSIGN(auto stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 0u);
  ASSERT_OK_AND_ASSIGN(rep, engine_->Fsck());
  for (const auto& p : rep.problems)
    ADD_FAILURE() << "fsck after delete: " << p;
}

}  // namespace
}  // namespace cmkfs::fs::testing
