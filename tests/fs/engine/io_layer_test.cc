// One shared suite for every IoLayer implementation (POSIX files, memory,
// and the fault-injecting wrapper in its pass-through state), plus the
// fault-injection behaviour itself.
#include "cmkfs/io_layer.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

struct PosixFactory {
  static std::shared_ptr<IoLayer> Make() { return NewPosixIoLayer(); }
};
struct PosixDirectFactory {
  static std::shared_ptr<IoLayer> Make() {
    return NewPosixIoLayer({.direct = true});
  }
};
struct MemoryFactory {
  static std::shared_ptr<IoLayer> Make() { return NewMemoryIoLayer(); }
};
struct FaultOverMemoryFactory {
  static std::shared_ptr<IoLayer> Make() {
    return std::make_shared<FaultInjectingIoLayer>(NewMemoryIoLayer());
  }
};

template <typename Factory>
class IoLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("cmkfs-io-test");
    layer_ = Factory::Make();
    auto f = layer_->Open(dir_ / "pool.0");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    file_ = *f;
  }
  void TearDown() override {
    file_.reset();
    layer_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::vector<uint8_t> Read(uint64_t off, size_t n) {
    std::vector<uint8_t> v(n, 0xAA);
    EXPECT_TRUE(file_->ReadAt(off, v).ok());
    return v;
  }
  std::filesystem::path dir_;
  std::shared_ptr<IoLayer> layer_;
  std::shared_ptr<IoFile> file_;
};

using Layers = ::testing::Types<PosixFactory, PosixDirectFactory, MemoryFactory,
                                FaultOverMemoryFactory>;
TYPED_TEST_SUITE(IoLayerTest, Layers);

TYPED_TEST(IoLayerTest, NewFileIsEmptyAndReadsZeros) {
  ASSERT_OK_AND_ASSIGN(uint64_t size, this->file_->Size());
  EXPECT_EQ(size, 0u);
  EXPECT_TRUE(IsZero(this->Read(12345, 100000)));
}

TYPED_TEST(IoLayerTest, WriteReadRoundTripAcrossChunksAndGrowsSize) {
  auto data = Pattern(200000, 1);
  ASSERT_OK(this->file_->WriteAt(65000, data));
  EXPECT_EQ(this->Read(65000, data.size()), data);
  ASSERT_OK_AND_ASSIGN(uint64_t size, this->file_->Size());
  EXPECT_EQ(size, 65000u + data.size());
  EXPECT_TRUE(IsZero(this->Read(0, 65000)));
  // Past the end reads zeros.
  EXPECT_TRUE(IsZero(this->Read(size, 5000)));
  ASSERT_OK(this->file_->DataSync());
}

TYPED_TEST(IoLayerTest, PunchHoleZeroesAndKeepsSize) {
  auto data = Pattern(4 * 65536, 2);
  ASSERT_OK(this->file_->WriteAt(0, data));
  ASSERT_OK(this->file_->PunchHole(65536, 2 * 65536));
  ASSERT_OK(this->file_->PunchHole(100, 50));  // partial
  auto got = this->Read(0, data.size());
  auto want = data;
  std::fill(want.begin() + 65536, want.begin() + 3 * 65536, 0);
  std::fill(want.begin() + 100, want.begin() + 150, 0);
  EXPECT_EQ(got, want);
  ASSERT_OK_AND_ASSIGN(uint64_t size, this->file_->Size());
  EXPECT_EQ(size, data.size());
}

TYPED_TEST(IoLayerTest, ReopenSeesTheSameFile) {
  auto data = Pattern(5000, 3);
  ASSERT_OK(this->file_->WriteAt(10, data));
  ASSERT_OK(this->file_->DataSync());
  ASSERT_OK_AND_ASSIGN(auto again, this->layer_->Open(this->dir_ / "pool.0"));
  std::vector<uint8_t> got(data.size());
  ASSERT_OK(again->ReadAt(10, got));
  EXPECT_EQ(got, data);
}

TYPED_TEST(IoLayerTest, ConcurrentDisjointWrites) {
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto d = Pattern(4096, t * 1000 + i);
        EXPECT_TRUE(this->file_->WriteAt((i * 4 + t) * 4096ull, d).ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(this->Read((i * 4 + t) * 4096ull, 4096),
                Pattern(4096, t * 1000 + i));
    }
  }
}

// backing_io = "direct": what the host's page cache holds of the pool.
class PosixDirectIoTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("cmkfs-direct-io-test"); }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // Pages of the first `bytes` of `path` in the page cache (mincore).
  static size_t CachedPages(const std::filesystem::path& path, size_t bytes) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    if (fd < 0) return 0;
    void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(map, MAP_FAILED) << std::strerror(errno);
    if (map == MAP_FAILED) return 0;
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> vec((bytes + page - 1) / page);
    EXPECT_EQ(::mincore(map, bytes, vec.data()), 0) << std::strerror(errno);
    ::munmap(map, bytes);
    size_t n = 0;
    for (unsigned char v : vec) n += v & 1;
    return n;
  }
  // Writes 8 MiB in 1 MiB pieces on 4 KiB boundaries, half of them from
  // memory that is not 4 KiB-aligned, syncs and reads it all back.
  void WriteSyncRead(IoFile& f) {
    std::vector<uint8_t> storage(kBytes + 1);
    for (uint64_t off = 0; off < kBytes; off += kPiece) {
      auto d = Pattern(kPiece, static_cast<int>(off / kPiece));
      uint8_t* at = storage.data() + off + ((off / kPiece) % 2);
      std::memcpy(at, d.data(), kPiece);
      ASSERT_OK(f.WriteAt(off, {at, kPiece}));
    }
    ASSERT_OK(f.DataSync());
    for (uint64_t off = 0; off < kBytes; off += kPiece) {
      std::vector<uint8_t> got(kPiece + 1);
      std::span<uint8_t> into(got.data() + 1, kPiece);  // misaligned
      ASSERT_OK(f.ReadAt(off, into));
      ASSERT_TRUE(
          std::equal(into.begin(), into.end(),
                     Pattern(kPiece, static_cast<int>(off / kPiece)).begin()))
          << "at " << off;
    }
  }
  static constexpr size_t kPiece = 1 << 20;
  static constexpr size_t kBytes = 8 * kPiece;
  std::filesystem::path dir_;
};

TEST_F(PosixDirectIoTest, PoolDataDoesNotEnterTheHostPageCache) {
  const auto path = dir_ / "pool.0";
  {
    ASSERT_OK_AND_ASSIGN(auto f, NewPosixIoLayer({.direct = true})->Open(path));
    WriteSyncRead(*f);
  }
  EXPECT_EQ(CachedPages(path, kBytes), 0u)
      << "direct backing I/O left pool pages in the host's page cache";
}

TEST_F(PosixDirectIoTest, BufferedBackingIoDoesCacheIt) {
  // The control: the same transfers through the buffered layer stay cached.
  const auto path = dir_ / "pool.0";
  {
    ASSERT_OK_AND_ASSIGN(auto f, NewPosixIoLayer()->Open(path));
    WriteSyncRead(*f);
  }
  EXPECT_GT(CachedPages(path, kBytes), kBytes / 4096 / 2);
}

TEST_F(PosixDirectIoTest, MisalignedRangesStayCoherentWithDirectOnes) {
  ASSERT_OK_AND_ASSIGN(auto f,
                       NewPosixIoLayer({.direct = true})->Open(dir_ / "p"));
  auto base = Pattern(3 * 4096, 1);
  ASSERT_OK(f->WriteAt(0, base));  // direct
  auto small = Pattern(100, 2);
  ASSERT_OK(f->WriteAt(4096 + 10, small));  // buffered descriptor
  std::vector<uint8_t> got(3 * 4096);
  ASSERT_OK(f->ReadAt(0, got));  // direct: sees the buffered bytes
  auto want = base;
  std::copy(small.begin(), small.end(), want.begin() + 4096 + 10);
  EXPECT_EQ(got, want);
  auto over = Pattern(4096, 3);
  ASSERT_OK(f->WriteAt(4096, over));  // direct, over the cached page
  std::vector<uint8_t> part(100);
  ASSERT_OK(f->ReadAt(4096 + 10, part));  // buffered: sees the direct bytes
  EXPECT_TRUE(std::equal(part.begin(), part.end(), over.begin() + 10));
}

TEST_F(PosixDirectIoTest, FilesystemWithoutODirectIsAClearError) {
  // ramfs has no O_DIRECT (tmpfs has, since Linux 6.6).
  const auto mnt = dir_ / "ramfs";
  std::filesystem::create_directory(mnt);
  ASSERT_EQ(::mount("ramfs", mnt.c_str(), "ramfs", 0, nullptr), 0)
      << "cannot mount a ramfs to test on (needs root): "
      << std::strerror(errno);
  auto f = NewPosixIoLayer({.direct = true})->Open(mnt / "pool.0");
  ::umount2(mnt.c_str(), MNT_DETACH);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(f.status().message().find("does not support O_DIRECT"),
            std::string::npos)
      << f.status().ToString();
  EXPECT_NE(f.status().message().find("backing_io = \"buffered\""),
            std::string::npos)
      << f.status().ToString();
  // The buffered layer works there.
  ASSERT_EQ(::mount("ramfs", mnt.c_str(), "ramfs", 0, nullptr), 0);
  EXPECT_TRUE(NewPosixIoLayer()->Open(mnt / "pool.0").ok());
  ::umount2(mnt.c_str(), MNT_DETACH);
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  std::shared_ptr<IoLayer> base_ = NewMemoryIoLayer();
  std::shared_ptr<FaultInjectingIoLayer> fault_ =
      std::make_shared<FaultInjectingIoLayer>(base_);
};

TEST_F(FaultInjectionTest, CrashDropsUnsyncedWritesAndPunchesKeepsSynced) {
  ASSERT_OK_AND_ASSIGN(auto f, fault_->Open("/p"));
  auto a = Pattern(8192, 1), b = Pattern(4096, 2), c = Pattern(4096, 3);
  ASSERT_OK(f->WriteAt(0, a));
  ASSERT_OK(f->DataSync());
  ASSERT_OK(f->WriteAt(4096, b));   // overwrites synced data
  ASSERT_OK(f->WriteAt(65536, c));  // new data
  ASSERT_OK(f->PunchHole(0, 4096));
  EXPECT_EQ(fault_->unsynced_writes(), 3u);
  fault_->Crash();
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(f->ReadAt(0, buf).kind(), ErrorKind::kIOError);
  EXPECT_EQ(f->WriteAt(0, buf).kind(), ErrorKind::kIOError);
  fault_->Recover();
  std::vector<uint8_t> got(8192);
  ASSERT_OK(f->ReadAt(0, got));
  EXPECT_EQ(got, a);
  ASSERT_OK(f->ReadAt(65536, buf));
  EXPECT_TRUE(IsZero(buf));
}

TEST_F(FaultInjectionTest, FailNthWriteFailsExactlyThatWrite) {
  ASSERT_OK_AND_ASSIGN(auto f, fault_->Open("/p"));
  std::vector<uint8_t> d(10, 1);
  fault_->FailNthWrite(3);
  EXPECT_TRUE(f->WriteAt(0, d).ok());
  EXPECT_TRUE(f->WriteAt(0, d).ok());
  EXPECT_EQ(f->WriteAt(0, d).kind(), ErrorKind::kIOError);
  EXPECT_TRUE(f->WriteAt(0, d).ok());
  EXPECT_EQ(fault_->failed_writes(), 1u);
}

TEST_F(FaultInjectionTest, RandomFailuresAreSeededAndRoughlyAtTheRate) {
  ASSERT_OK_AND_ASSIGN(auto f, fault_->Open("/p"));
  std::vector<uint8_t> d(10, 1);
  fault_->FailWritesRandomly(0.25, 7);
  int failed = 0;
  for (int i = 0; i < 400; ++i) failed += !f->WriteAt(0, d).ok();
  EXPECT_GT(failed, 50);
  EXPECT_LT(failed, 150);
}

}  // namespace
}  // namespace cmkfs::fs::testing
