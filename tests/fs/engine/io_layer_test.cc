// One shared suite for every IoLayer implementation (POSIX files, memory,
// and the fault-injecting wrapper in its pass-through state), plus the
// fault-injection behaviour itself.
#include "cmkfs/io_layer.h"

#include <gtest/gtest.h>

#include <thread>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

struct PosixFactory {
  static std::shared_ptr<IoLayer> Make() { return NewPosixIoLayer(); }
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

using Layers =
    ::testing::Types<PosixFactory, MemoryFactory, FaultOverMemoryFactory>;
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
