// The extent pool file going wrong underneath the engine: truncated or
// missing (reads fail with Corruption, never return other bytes) and full
// (writes fail with NoSpace, nothing written before is lost).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

constexpr uint64_t kExt = 64 * 1024;

class EnginePoolFileTest : public EngineTest {
 protected:
  std::filesystem::path PoolPath() const {
    return options_.dir / "extents" / "pool.0";
  }
  // Disk "a" with 16 written extents (slots 0..15), synced, engine closed.
  void WriteSixteenExtentsAndClose() {
    MakeDisk("a", 16 * kExt);
    {
      auto h = OpenDisk("a");
      WriteAll(*h, 0, Pattern(16 * kExt, 7));
      ASSERT_OK(h->Sync());
    }
    CloseEngine();
    ASSERT_EQ(std::filesystem::file_size(PoolPath()), 16 * kExt);
  }
  void ExpectCorruption(const Result<size_t>& r, const std::string& what) {
    ASSERT_FALSE(r.ok()) << what << " read back " << *r
                         << " bytes of a lost extent";
    EXPECT_EQ(r.status().kind(), ErrorKind::kCorruption)
        << what << ": " << r.status().ToString();
    EXPECT_HAS_SUBSTR(r.status().message(), "pool file");
  }
  std::vector<std::string> FsckProblems() {
    auto r = engine_->Fsck();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->problems : std::vector<std::string>{};
  }
};

TEST_F(EnginePoolFileTest, TruncatedPoolFileFailsReadsOfLostExtents) {
  WriteSixteenExtentsAndClose();
  ASSERT_EQ(::truncate(PoolPath().c_str(), 8 * kExt), 0);
  Reopen();
  auto h = OpenDisk("a");
  // The first half is intact.
  auto want = Pattern(16 * kExt, 7);
  auto head = ReadAll(*h, 0, 8 * kExt);
  EXPECT_TRUE(std::equal(head.begin(), head.end(), want.begin()));
  // Aligned, multi-extent, unaligned and whole-disk reads of the lost half.
  std::vector<uint8_t> buf(16 * kExt);
  ExpectCorruption(h->Read(0, buf), "whole disk");
  ExpectCorruption(h->Read(12 * kExt, {buf.data(), kExt}), "aligned extent");
  ExpectCorruption(h->Read(12 * kExt + 100, {buf.data(), 300}), "unaligned");
  // A partial write must not merge new bytes into zeros read from a hole.
  auto w = h->Write(13 * kExt + 10, std::vector<uint8_t>(100, 1));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().kind(), ErrorKind::kCorruption);
  auto problems = FsckProblems();
  EXPECT_EQ(problems.size(), 8u);
  if (!problems.empty()) EXPECT_HAS_SUBSTR(problems[0], "pool file");
}

TEST_F(EnginePoolFileTest, LostExtentsStayLostWhenThePoolFileGrowsAgain) {
  WriteSixteenExtentsAndClose();
  ASSERT_EQ(::truncate(PoolPath().c_str(), 8 * kExt), 0);
  Reopen();
  // New slots come after the old allocation mark and regrow the file past
  // the lost range, which becomes a hole that reads as zeros.
  MakeDisk("b", 4 * kExt);
  {
    auto b = OpenDisk("b");
    WriteAll(*b, 0, Pattern(4 * kExt, 9));
    ASSERT_OK(b->Sync());
  }
  ASSERT_GT(std::filesystem::file_size(PoolPath()), 16 * kExt);
  auto h = OpenDisk("a");
  std::vector<uint8_t> buf(kExt);
  ExpectCorruption(h->Read(15 * kExt, buf), "lost extent after regrowth");
  // Overwriting a lost extent in full gives it valid data again.
  WriteAll(*h, 15 * kExt, Pattern(kExt, 3));
  EXPECT_EQ(ReadAll(*h, 15 * kExt, kExt), Pattern(kExt, 3));
  ExpectCorruption(h->Read(14 * kExt, buf), "neighbour still lost");
}

TEST_F(EnginePoolFileTest, MissingPoolFileFailsReadsAndFsck) {
  WriteSixteenExtentsAndClose();
  std::filesystem::remove(PoolPath());
  Reopen();
  auto h = OpenDisk("a");
  std::vector<uint8_t> buf(kExt);
  ExpectCorruption(h->Read(0, buf), "first extent");
  ExpectCorruption(h->Read(5 * kExt + 7, {buf.data(), 10}), "unaligned");
  EXPECT_EQ(FsckProblems().size(), 16u);
  // Unwritten disks still work.
  MakeDisk("fresh", 2 * kExt);
  auto f = OpenDisk("fresh");
  WriteAll(*f, 0, Pattern(2 * kExt, 5));
  EXPECT_EQ(ReadAll(*f, 0, 2 * kExt), Pattern(2 * kExt, 5));
}

TEST_F(EnginePoolFileTest, FullBackingFilesystemRefusesNewExtentsOnly) {
  MakeDisk("a", 8 * kExt);
  {
    auto h = OpenDisk("a");
    WriteAll(*h, 0, Pattern(2 * kExt, 1));
    ASSERT_OK(h->Sync());
  }
  CloseEngine();
  // A reserve larger than any filesystem: it is full from the engine's view.
  options_.backing_reserve_bytes = 1ull << 62;
  Reopen();
  {
    auto h = OpenDisk("a");
    auto w = h->Write(4 * kExt, Pattern(kExt, 2));
    ASSERT_FALSE(w.ok()) << "a new extent was allocated on a full filesystem";
    EXPECT_EQ(w.status().kind(), ErrorKind::kNoSpace) << w.status().ToString();
    EXPECT_HAS_SUBSTR(w.status().message(), "full");
    // Extents that exist are rewritten in place; metadata still commits.
    WriteAll(*h, kExt, Pattern(kExt, 3));
    ASSERT_OK(h->Sync());
    EXPECT_EQ(ReadAll(*h, 0, kExt), Pattern(kExt, 1));
    EXPECT_EQ(ReadAll(*h, kExt, kExt), Pattern(kExt, 3));
    EXPECT_TRUE(IsZero(ReadAll(*h, 4 * kExt, kExt)));
  }
  auto snap = engine_->CreateSnapshot("s", "a");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_TRUE(FsckProblems().empty());
  CloseEngine();
  options_.backing_reserve_bytes = 0;
  Reopen();
  auto h = OpenDisk("a");
  WriteAll(*h, 4 * kExt, Pattern(kExt, 2));
  ASSERT_OK(h->Sync());
  EXPECT_EQ(ReadAll(*h, 4 * kExt, kExt), Pattern(kExt, 2));
  EXPECT_EQ(ReadAll(*h, kExt, kExt), Pattern(kExt, 3));
}

TEST_F(EnginePoolFileTest, NoSpaceFromThePoolReachesTheCallerAsNoSpace) {
  auto fault = std::make_shared<FaultInjectingIoLayer>(NewPosixIoLayer());
  CloseEngine();
  io_ = fault;
  Reopen();
  MakeDisk("a", 8 * kExt);
  auto h = OpenDisk("a");
  WriteAll(*h, 0, Pattern(2 * kExt, 1));
  ASSERT_OK(h->Sync());
  fault->FailWithNoSpace(true);
  fault->FailNthWrite(1);  // the pool write of the new extent
  auto w = h->Write(3 * kExt, Pattern(kExt, 2));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().kind(), ErrorKind::kNoSpace) << w.status().ToString();
  WriteAll(*h, 4 * kExt, Pattern(kExt, 4));
  fault->FailNthWrite(1);  // the data sync of the commit
  Status st = h->Sync();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.kind(), ErrorKind::kNoSpace) << st.ToString();
  // Nothing acknowledged is lost: the retry commits the pending extent.
  ASSERT_OK(h->Sync());
  EXPECT_TRUE(FsckProblems().empty());
  h.reset();
  Reopen();
  h = OpenDisk("a");
  EXPECT_EQ(ReadAll(*h, 0, 2 * kExt), Pattern(2 * kExt, 1));
  EXPECT_TRUE(IsZero(ReadAll(*h, 3 * kExt, kExt)));
  EXPECT_EQ(ReadAll(*h, 4 * kExt, kExt), Pattern(kExt, 4));
}

}  // namespace
}  // namespace cmkfs::fs::testing
