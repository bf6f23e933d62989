// Data path of the engine, run against both the on-disk and the in-memory
// extent pool: thin provisioning, unaligned I/O, discard, holes, ciphertext,
// snapshots and clones, deletes with shared extents, import and export.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

constexpr uint64_t kExt = 64 * 1024;

class EngineDataTest : public EngineTest,
                       public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) io_ = NewMemoryIoLayer();
    EngineTest::SetUp();
  }
  std::vector<uint8_t> PoolBytes() {
    std::shared_ptr<IoLayer> io = io_ ? io_ : NewPosixIoLayer();
    auto f = io->Open(options_.dir / "extents" / "pool.0");
    EXPECT_TRUE(f.ok());
    auto size = (*f)->Size();
    std::vector<uint8_t> out(*size);
    EXPECT_TRUE((*f)->ReadAt(0, out).ok());
    return out;
  }
  uint64_t Allocated(const std::string& disk) {
    auto i = engine_->Get(ResourceKind::kDisk, disk);
    EXPECT_TRUE(i.ok());
    return i.ok() ? i->allocated_bytes : 0;
  }
  void ExpectFsckClean() {
    auto r = engine_->Fsck();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& p : r->problems) ADD_FAILURE() << "fsck: " << p;
  }
};

INSTANTIATE_TEST_SUITE_P(Pools, EngineDataTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "Memory" : "Posix";
                         });

TEST_P(EngineDataTest, ThinProvisioningAllocatesOnFirstWriteOnly) {
  MakeDisk("d", 64 << 20);
  auto h = OpenDisk("d");
  EXPECT_EQ(Allocated("d"), 0u);
  EXPECT_TRUE(IsZero(ReadAll(*h, 0, 1 << 20)));
  EXPECT_TRUE(IsZero(ReadAll(*h, (64 << 20) - 8192, 8192)));
  EXPECT_EQ(Allocated("d"), 0u);
  WriteAll(*h, 1 << 20, Pattern(4096, 1));
  EXPECT_EQ(Allocated("d"), kExt);
  WriteAll(*h, (1 << 20) + 8192, Pattern(4096, 2));
  EXPECT_EQ(Allocated("d"), kExt);
  WriteAll(*h, 3 * kExt - 100, Pattern(200, 3));  // straddles two extents
  EXPECT_EQ(Allocated("d"), 3 * kExt);
  ASSERT_OK(engine_->Flush());
  EXPECT_EQ(Allocated("d"), 3 * kExt);
  ASSERT_OK_AND_ASSIGN(auto stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 3 * kExt);
  // Unwritten parts of an allocated extent read as zeros.
  auto ext = ReadAll(*h, 1 << 20, kExt);
  EXPECT_TRUE(
      std::equal(ext.begin(), ext.begin() + 4096, Pattern(4096, 1).begin()));
  EXPECT_TRUE(IsZero({ext.begin() + 4096, ext.begin() + 8192}));
  EXPECT_TRUE(IsZero({ext.begin() + 12288, ext.end()}));
}

TEST_P(EngineDataTest, UnalignedWritesAndReadsMatchAModel) {
  const uint64_t size = 1 << 20;
  MakeDisk("d", size);
  auto h = OpenDisk("d");
  std::vector<uint8_t> model(size, 0);
  std::mt19937_64 rng(42);
  for (int i = 0; i < 200; ++i) {
    uint64_t off = rng() % size;
    uint64_t len = 1 + rng() % std::min<uint64_t>(size - off, 3 * kExt);
    auto data = Pattern(len, i);
    WriteAll(*h, off, data);
    std::copy(data.begin(), data.end(), model.begin() + off);
    uint64_t roff = rng() % size;
    uint64_t rlen = 1 + rng() % std::min<uint64_t>(size - roff, 2 * kExt);
    auto got = ReadAll(*h, roff, rlen);
    ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + roff))
        << "read " << roff << "+" << rlen << " after write " << off << "+"
        << len;
  }
  ASSERT_OK(h->Sync());
  h.reset();
  Reopen();
  h = OpenDisk("d");
  EXPECT_EQ(ReadAll(*h, 0, size), model);
}

// Large sector-aligned reads span many extents whose slots are consecutive,
// scattered, shared with a snapshot, or absent (holes), and may start and end
// inside an extent.
TEST_P(EngineDataTest, LargeAlignedReadsMatchAModelAcrossSlotLayouts) {
  const uint64_t extents = 80;  // more than one 32-extent read batch
  const uint64_t size = extents * kExt;
  MakeDisk("d", size);
  auto h = OpenDisk("d");
  std::vector<uint8_t> model(size, 0);
  std::mt19937_64 rng(7);
  // Sequential run (consecutive slots), then extents written in a shuffled
  // order (scattered slots), leaving every fifth extent a hole.
  for (uint64_t i = 0; i < 20; ++i) {
    auto data = Pattern(kExt, 1000 + i);
    WriteAll(*h, i * kExt, data);
    std::copy(data.begin(), data.end(), model.begin() + i * kExt);
  }
  std::vector<uint64_t> order;
  for (uint64_t i = 20; i < extents; ++i) {
    if (i % 5 != 0) order.push_back(i);
  }
  std::shuffle(order.begin(), order.end(), rng);
  for (uint64_t i : order) {
    uint64_t off = i * kExt + (i % 3) * 4096;
    auto data = Pattern(kExt - (i % 3) * 4096, 2000 + i);
    WriteAll(*h, off, data);
    std::copy(data.begin(), data.end(), model.begin() + off);
  }
  auto check = [&](const char* phase) {
    EXPECT_EQ(ReadAll(*h, 0, size), model) << phase;
    for (int i = 0; i < 40; ++i) {
      uint64_t off = rng() % (size / 4096) * 4096;
      uint64_t len = (1 + rng() % ((size - off) / 4096)) * 4096;
      auto got = ReadAll(*h, off, len);
      ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + off))
          << phase << ": read " << off << "+" << len;
    }
  };
  check("before snapshot");
  ASSERT_OK(engine_->CreateSnapshot("s", "d").status());
  const std::vector<uint8_t> at_snapshot = model;
  // Copy-on-write moves some extents to new slots.
  for (uint64_t i = 3; i < extents; i += 7) {
    auto data = Pattern(8192, 3000 + i);
    WriteAll(*h, i * kExt + 4096, data);
    std::copy(data.begin(), data.end(), model.begin() + i * kExt + 4096);
  }
  check("after copy-on-write");
  {
    ASSERT_OK_AND_ASSIGN(auto snap,
                         engine_->Open(ResourceKind::kSnapshot, "s", false));
    EXPECT_EQ(ReadAll(*snap, 0, size), at_snapshot);
  }
  ASSERT_OK(h->Sync());
  h.reset();
  Reopen();
  h = OpenDisk("d");
  check("after reopen");
}

// Large reads running while sectors are overwritten in place and copied on
// write (a snapshot in the middle) never see a torn or misplaced sector:
// every 4 KiB sector read is all zeros or one whole version of that sector.
TEST_P(EngineDataTest, LargeReadsDuringWritesSeeWholeSectors) {
  const uint64_t sectors = 64 * kExt / 4096;
  MakeDisk("d", sectors * 4096);
  auto h = OpenDisk("d");
  auto sector_data = [](uint64_t sector, uint64_t version) {
    std::vector<uint8_t> d(4096);
    for (size_t w = 0; w < 4096; w += 8) {
      uint64_t v = sector << 32 | version;
      std::memcpy(d.data() + w, &v, 8);
    }
    return d;
  };
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      while (!stop.load()) {
        uint64_t first = rng() % sectors;
        uint64_t count = 1 + rng() % (sectors - first);
        std::vector<uint8_t> buf(count * 4096);
        auto n = h->Read(first * 4096, buf);
        if (!n.ok() || *n != buf.size()) {
          ++bad;
          return;
        }
        for (uint64_t i = 0; i < count; ++i) {
          const uint8_t* p = buf.data() + i * 4096;
          uint64_t v0;
          std::memcpy(&v0, p, 8);
          bool zero = v0 == 0;
          if (!zero && (v0 >> 32) != first + i) ++bad;
          for (size_t w = 8; w < 4096; w += 8) {
            uint64_t v;
            std::memcpy(&v, p + w, 8);
            if (v != v0) {
              ++bad;
              break;
            }
          }
        }
      }
    });
  }
  std::mt19937_64 rng(99);
  for (uint64_t version = 1; version <= 600; ++version) {
    uint64_t s = rng() % sectors;
    WriteAll(*h, s * 4096, sector_data(s, version));
    if (version == 300) {
      auto snap = engine_->CreateSnapshot("s", "d");
      EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_P(EngineDataTest, ReadAndWriteBounds) {
  MakeDisk("d", 3 * 4096);
  auto h = OpenDisk("d");
  std::vector<uint8_t> buf(8192);
  auto w = h->Write(8192, buf);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().kind(), ErrorKind::kOutOfRange);
  ASSERT_OK_AND_ASSIGN(size_t n, h->Read(8192, buf));
  EXPECT_EQ(n, 4096u);
  ASSERT_OK_AND_ASSIGN(n, h->Read(3 * 4096, buf));
  EXPECT_EQ(n, 0u);
  auto ro = OpenDisk("d", false);
  EXPECT_EQ(ro->Write(0, buf).status().kind(), ErrorKind::kReadOnly);
}

TEST_P(EngineDataTest, DiscardFreesWholeExtentsAndZeroesPartialOnes) {
  MakeDisk("d", 1 << 20);
  auto h = OpenDisk("d");
  WriteAll(*h, 0, Pattern(1 << 20, 7));
  EXPECT_EQ(Allocated("d"), 1u << 20);
  // Extents 2..5 are whole inside; 1 and 6 are partial.
  ASSERT_OK(h->Discard(kExt + 4096, 5 * kExt));
  EXPECT_EQ(Allocated("d"), (16 - 4) * kExt);
  auto got = ReadAll(*h, 0, 1 << 20);
  auto want = Pattern(1 << 20, 7);
  std::fill(want.begin() + kExt + 4096, want.begin() + 6 * kExt + 4096, 0);
  EXPECT_EQ(got, want);
  ASSERT_OK(h->ZeroRange(0, 1 << 20));
  EXPECT_EQ(Allocated("d"), 0u);
  EXPECT_TRUE(IsZero(ReadAll(*h, 0, 1 << 20)));
  ASSERT_OK(engine_->Flush());
  ASSERT_OK_AND_ASSIGN(auto stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 0u);
  ExpectFsckClean();
  // Freed slots are reused.
  WriteAll(*h, 0, Pattern(4 * kExt, 8));
  ASSERT_OK(engine_->Flush());
  EXPECT_EQ(PoolBytes().size(), 16 * kExt);
  ExpectFsckClean();
}

TEST_P(EngineDataTest, SeekDataAndSeekHole) {
  const uint64_t size = 40 * kExt + 8192;  // last extent partial
  MakeDisk("d", size);
  auto h = OpenDisk("d");
  EXPECT_EQ(h->SeekData(0).status().kind(), ErrorKind::kNotFound);
  ASSERT_OK_AND_ASSIGN(uint64_t hole, h->SeekHole(100));
  EXPECT_EQ(hole, 100u);
  WriteAll(*h, 10 * kExt + 5, Pattern(10, 1));
  WriteAll(*h, 11 * kExt, Pattern(kExt, 2));
  ASSERT_OK(h->Sync());
  WriteAll(*h, 30 * kExt, Pattern(4096, 3));  // pending, not committed
  ASSERT_OK_AND_ASSIGN(uint64_t data, h->SeekData(0));
  EXPECT_EQ(data, 10 * kExt);
  ASSERT_OK_AND_ASSIGN(hole, h->SeekHole(data));
  EXPECT_EQ(hole, 12 * kExt);
  ASSERT_OK_AND_ASSIGN(data, h->SeekData(12 * kExt));
  EXPECT_EQ(data, 30 * kExt);
  ASSERT_OK_AND_ASSIGN(data, h->SeekData(11 * kExt + 77));
  EXPECT_EQ(data, 11 * kExt + 77);
  EXPECT_EQ(h->SeekData(31 * kExt).status().kind(), ErrorKind::kNotFound);
  WriteAll(*h, size - 4096, Pattern(4096, 4));
  ASSERT_OK_AND_ASSIGN(hole, h->SeekHole(40 * kExt));
  EXPECT_EQ(hole, size);
  EXPECT_EQ(h->SeekHole(size).status().kind(), ErrorKind::kNotFound);
  ASSERT_OK(h->Discard(30 * kExt, kExt));
  ASSERT_OK_AND_ASSIGN(data, h->SeekData(12 * kExt));
  EXPECT_EQ(data, 40 * kExt);
}

TEST_P(EngineDataTest, PoolHoldsOnlyCiphertext) {
  MakeDisk("d", 4 << 20);
  auto h = OpenDisk("d");
  std::string marker = "CMKFS-PLAINTEXT-MARKER-0123456789";
  std::vector<uint8_t> sector(4096);
  for (size_t i = 0; i < sector.size(); ++i)
    sector[i] = marker[i % marker.size()];
  // The same plaintext sector at many offsets, aligned and not.
  for (uint64_t off : {uint64_t{0}, uint64_t{4096}, uint64_t{kExt},
                       uint64_t{3 * kExt + 100}, uint64_t{2 << 20}}) {
    WriteAll(*h, off, sector);
  }
  ASSERT_OK(h->Sync());
  auto pool = PoolBytes();
  ASSERT_GE(pool.size(), 4 * kExt);
  std::string_view hay(reinterpret_cast<const char*>(pool.data()), pool.size());
  EXPECT_EQ(hay.find(marker.substr(0, 16)), std::string_view::npos);
  // XTS tweak: equal plaintext sectors at different offsets differ.
  std::vector<std::vector<uint8_t>> seen;
  for (size_t at = 0; at + 4096 <= pool.size(); at += 4096) {
    std::vector<uint8_t> s(pool.begin() + at, pool.begin() + at + 4096);
    if (IsZero(s)) continue;
    for (const auto& prev : seen) EXPECT_NE(prev, s);
    seen.push_back(std::move(s));
  }
  EXPECT_EQ(ReadAll(*h, kExt, 4096), sector);
}

TEST_P(EngineDataTest, SnapshotIsPointInTimeAndClonesAreIndependent) {
  MakeDisk("d", 1 << 20);
  auto h = OpenDisk("d");
  auto a = Pattern(1 << 20, 1);
  WriteAll(*h, 0, a);
  ASSERT_OK_AND_ASSIGN(auto snap, engine_->CreateSnapshot("s", "d"));
  EXPECT_EQ(snap.allocated_bytes, 1u << 20);
  auto b = Pattern(100000, 2);
  WriteAll(*h, 5000, b);
  ASSERT_OK_AND_ASSIGN(auto sh,
                       engine_->Open(ResourceKind::kSnapshot, "s", false));
  EXPECT_EQ(ReadAll(*sh, 0, 1 << 20), a);
  auto d_now = a;
  std::copy(b.begin(), b.end(), d_now.begin() + 5000);
  EXPECT_EQ(ReadAll(*h, 0, 1 << 20), d_now);

  DiskSpec spec;
  spec.name = "clone";
  spec.source = "snapshots/s";
  spec.size = 2 << 20;  // may grow
  ASSERT_OK_AND_ASSIGN(auto ci, engine_->CreateDisk(spec));
  EXPECT_EQ(ci.size, 2u << 20);
  auto ch = OpenDisk("clone");
  auto c = Pattern(3 * kExt, 3);
  WriteAll(*ch, 7, c);
  WriteAll(*ch, (2 << 20) - 4096, Pattern(4096, 4));
  auto clone_now = a;
  clone_now.resize(2 << 20, 0);
  std::copy(c.begin(), c.end(), clone_now.begin() + 7);
  auto tail = Pattern(4096, 4);
  std::copy(tail.begin(), tail.end(), clone_now.end() - 4096);
  EXPECT_EQ(ReadAll(*ch, 0, 2 << 20), clone_now);
  EXPECT_EQ(ReadAll(*sh, 0, 1 << 20), a);
  EXPECT_EQ(ReadAll(*h, 0, 1 << 20), d_now);
  ASSERT_OK_AND_ASSIGN(auto img, engine_->CreateImage("img", "d"));
  EXPECT_EQ(img.source, "disks/d");
  ASSERT_OK_AND_ASSIGN(auto ih,
                       engine_->Open(ResourceKind::kImage, "img", false));
  EXPECT_EQ(ReadAll(*ih, 0, 1 << 20), d_now);
  ExpectFsckClean();
}

// Waits (bounded) until every writer has acknowledged more than `floor[t]`
// writes; false on timeout or when a writer stopped on an error.
template <int N>
bool WaitForProgress(const std::atomic<uint64_t> (&acked)[N],
                     const uint64_t (&floor)[N],
                     const std::atomic<bool>& failed) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int t = 0; t < N; ++t) {
    while (acked[t].load() <= floor[t]) {
      if (failed.load() || std::chrono::steady_clock::now() > deadline)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return true;
}

TEST_P(EngineDataTest, SnapshotUnderConcurrentWritersIsPointInTime) {
  constexpr int kThreads = 4;
  MakeDisk("d", kThreads * kExt);
  auto h = OpenDisk("d");
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::string write_error;
  auto errors = [&] {  // writers may still run: read under the lock
    std::lock_guard lk(error_mu);
    return write_error;
  };
  std::atomic<uint64_t> acked[kThreads];
  std::atomic<uint64_t> started[kThreads];
  for (int t = 0; t < kThreads; ++t) {
    acked[t] = 0;
    started[t] = 0;
  }
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::vector<uint8_t> sector(4096);
      for (uint64_t seq = 1; !stop.load(); ++seq) {
        for (size_t i = 0; i < 4096; i += 8) std::memcpy(&sector[i], &seq, 8);
        started[t].store(seq);
        // Alternate in-place and a second sector of the same extent.
        for (uint64_t off : {t * kExt + (seq % 2) * 4096, t * kExt}) {
          Result<size_t> w = h->Write(off, sector);
          if (!w.ok() || *w != sector.size()) {
            std::lock_guard lk(error_mu);
            write_error = "writer " + std::to_string(t) + " at " +
                          std::to_string(off) + ": " +
                          (w.ok() ? "short write" : w.status().ToString());
            failed = true;
            return;
          }
        }
        acked[t].store(seq);
      }
    });
  }
  auto stop_writers = [&] {
    stop = true;
    for (auto& w : writers) w.join();
    writers.clear();
  };
  // A failed ASSERT returns with the writers still running: join them.
  struct Joiner {
    decltype(stop_writers)& f;
    ~Joiner() { f(); }
  } joiner{stop_writers};
  for (int round = 0; round < 5; ++round) {
    // Every writer acknowledged writes before the snapshot...
    uint64_t previous[kThreads];
    for (int t = 0; t < kThreads; ++t) previous[t] = acked[t].load();
    if (!WaitForProgress(acked, previous, failed)) {
      FAIL() << "writers made no progress before snapshot round " << round
             << ": " << errors();
    }
    uint64_t before[kThreads], after[kThreads];
    for (int t = 0; t < kThreads; ++t) before[t] = acked[t].load();
    std::string name = "s" + std::to_string(round);
    Status snap = engine_->CreateSnapshot(name, "d").status();
    for (int t = 0; t < kThreads; ++t) after[t] = started[t].load();
    ASSERT_TRUE(snap.ok()) << snap.ToString();
    // ...and after it: the snapshot was taken while they were writing.
    if (!WaitForProgress(acked, after, failed)) {
      FAIL() << "writers made no progress after snapshot round " << round
             << ": " << errors();
    }
    ASSERT_OK_AND_ASSIGN(auto sh,
                         engine_->Open(ResourceKind::kSnapshot, name, false));
    for (int t = 0; t < kThreads; ++t) {
      auto s = ReadAll(*sh, t * kExt, 4096);
      uint64_t v;
      std::memcpy(&v, s.data(), 8);
      for (size_t i = 0; i < 4096; i += 8) {
        uint64_t w;
        std::memcpy(&w, &s[i], 8);
        if (w != v) {
          stop_writers();
          auto f = engine_->Fsck();
          for (auto& p : f->problems) ADD_FAILURE() << p;
          auto dd = ReadAll(*h, t * kExt, 4096);
          uint64_t dv;
          std::memcpy(&dv, dd.data(), 8);
          FAIL() << "torn sector in snapshot round " << round << " thread " << t
                 << " at word " << i << " first " << v << " disk now " << dv
                 << " acked " << acked[t].load();
        }
      }
      EXPECT_GE(v, before[t]) << "acknowledged write missing from snapshot";
      EXPECT_LE(v, after[t]) << "write started after the snapshot is in it";
    }
  }
  stop_writers();
  EXPECT_FALSE(failed.load()) << errors();
  h.reset();
  ExpectFsckClean();
}

TEST_P(EngineDataTest, DeletingSourceKeepsClonesAndFreesLastReference) {
  MakeDisk("d", 1 << 20);
  auto h = OpenDisk("d");
  auto a = Pattern(1 << 20, 11);
  WriteAll(*h, 0, a);
  ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  WriteAll(*h, 0, Pattern(2 * kExt, 12));  // CoW two extents
  h.reset();
  ASSERT_OK(engine_->Flush());
  ASSERT_OK_AND_ASSIGN(auto stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 18 * kExt);
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "d"));
  ASSERT_OK_AND_ASSIGN(stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 16 * kExt);
  DiskSpec spec;
  spec.name = "c";
  spec.source = "s";
  ASSERT_TRUE(engine_->CreateDisk(spec).ok());
  ASSERT_OK(engine_->Delete(ResourceKind::kSnapshot, "s"));
  auto ch = OpenDisk("c");
  EXPECT_EQ(ReadAll(*ch, 0, 1 << 20), a);
  ch.reset();
  ExpectFsckClean();
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "c"));
  ASSERT_OK_AND_ASSIGN(stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 0u);
  ExpectFsckClean();
}

TEST_P(EngineDataTest, ImportExportRoundTripSkipsZerosAndHoles) {
  auto src = root_ / "in.raw";
  const uint64_t size = 8 << 20;
  auto d1 = Pattern(100000, 21);
  auto d2 = Pattern(3 * kExt, 22);
  {
    int fd = ::open(src.c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, size - 1000), 0);  // not sector aligned
    ASSERT_EQ(::pwrite(fd, d1.data(), d1.size(), 12345), (ssize_t)d1.size());
    std::vector<uint8_t> zeros(4 * kExt, 0);  // written zeros: skipped too
    ASSERT_EQ(::pwrite(fd, zeros.data(), zeros.size(), 2 << 20),
              (ssize_t)zeros.size());
    ASSERT_EQ(::pwrite(fd, d2.data(), d2.size(), 5 << 20), (ssize_t)d2.size());
    ::close(fd);
  }
  DiskSpec spec;
  spec.name = "imp";
  uint64_t last_done = 0;
  Progress p;
  p.on_progress = [&](uint64_t done, uint64_t total) {
    EXPECT_LE(done, total);
    last_done = done;
  };
  ASSERT_OK_AND_ASSIGN(auto info, engine_->ImportDisk(spec, src, p));
  EXPECT_EQ(info.size, size - 1000 + (4096 - (size - 1000) % 4096) % 4096);
  EXPECT_EQ(last_done, size - 1000);
  EXPECT_EQ(info.allocated_bytes, (2 + 3) * kExt);
  auto out = root_ / "out.raw";
  ASSERT_OK(engine_->Export(ResourceKind::kDisk, "imp", out, {}));
  auto slurp = [](const std::filesystem::path& p) {
    std::vector<char> v(std::filesystem::file_size(p));
    std::ifstream f(p, std::ios::binary);
    f.read(v.data(), v.size());
    return v;
  };
  std::vector<char> va = slurp(src), vb = slurp(out);
  ASSERT_EQ(vb.size(), info.size);
  va.resize(vb.size(), 0);
  EXPECT_TRUE(va == vb);
  struct stat st {};
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_LT(uint64_t(st.st_blocks) * 512, 2u << 20) << "export is not sparse";
  EXPECT_EQ(engine_->Export(ResourceKind::kDisk, "imp", out, {}).kind(),
            ErrorKind::kAlreadyExists);
}

TEST_P(EngineDataTest, ImportCancelLeavesNoDisk) {
  auto src = root_ / "in.raw";
  {
    auto data = Pattern(4 << 20, 5);
    std::ofstream f(src, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data.data()), data.size());
  }
  std::atomic<bool> cancel{false};
  Progress p;
  p.cancel = &cancel;
  p.on_progress = [&](uint64_t, uint64_t) { cancel = true; };
  DiskSpec spec;
  spec.name = "imp";
  auto r = engine_->ImportDisk(spec, src, p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), ErrorKind::kCancelled);
  EXPECT_EQ(engine_->Get(ResourceKind::kDisk, "imp").status().kind(),
            ErrorKind::kNotFound);
  ASSERT_OK(engine_->Flush());
  ASSERT_OK_AND_ASSIGN(auto stats, engine_->Stats());
  EXPECT_EQ(stats.allocated_bytes, 0u);
  ExpectFsckClean();
}

TEST_P(EngineDataTest, ReopenKeepsDataAndMetadata) {
  MakeDisk("d", 2 << 20);
  auto h = OpenDisk("d");
  auto a = Pattern(2 << 20, 31);
  WriteAll(*h, 0, a);
  ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  WriteAll(*h, 100, Pattern(5000, 32));
  h.reset();
  Reopen();
  ASSERT_OK_AND_ASSIGN(auto sh,
                       engine_->Open(ResourceKind::kSnapshot, "s", false));
  EXPECT_EQ(ReadAll(*sh, 0, 2 << 20), a);
  h = OpenDisk("d");
  auto want = a;
  auto p = Pattern(5000, 32);
  std::copy(p.begin(), p.end(), want.begin() + 100);
  EXPECT_EQ(ReadAll(*h, 0, 2 << 20), want);
  ExpectFsckClean();
}

}  // namespace
}  // namespace cmkfs::fs::testing
