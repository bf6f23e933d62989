// Sealing cuts off I/O before the sealed state becomes visible.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

class EngineSealTest : public EngineTest {
 protected:
  void SetUp() override {
    fault_ = std::make_shared<FaultInjectingIoLayer>(NewPosixIoLayer());
    io_ = fault_;
    EngineTest::SetUp();
  }
  std::shared_ptr<FaultInjectingIoLayer> fault_;
};

TEST_F(EngineSealTest, NoIoSucceedsOnceTheDiskShowsAsSealed) {
  MakeDisk("d", 1 << 20);
  auto h = OpenDisk("d");
  WriteAll(*h, 0, Pattern(1 << 16, 1));
  ASSERT_OK(h->Sync());

  // A read in flight on a slow device while the seal happens.
  fault_->DelayReads(milliseconds(300));
  std::atomic<bool> read_ok{false};
  Clock::time_point read_done;
  std::thread reader([&] {
    std::vector<uint8_t> buf(4096);
    auto r = h->Read(0, buf);
    read_done = Clock::now();
    read_ok = r.ok();
  });
  std::this_thread::sleep_for(milliseconds(50));
  Status sealed;
  std::thread sealer([&] {
    sealed = engine_->Seal(ResourceKind::kDisk, "d", "key version disabled");
  });
  Clock::time_point seen_sealed{};
  for (auto deadline = Clock::now() + std::chrono::seconds(10);
       Clock::now() < deadline;) {
    auto info = engine_->Get(ResourceKind::kDisk, "d");
    if (info.ok() && info->state == ResourceState::kSealed) {
      seen_sealed = Clock::now();
      break;
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  reader.join();
  sealer.join();
  ASSERT_OK(sealed);
  ASSERT_NE(seen_sealed, Clock::time_point{}) << "never showed as sealed";
  if (read_ok) {
    EXPECT_LE(read_done, seen_sealed)
        << "a read succeeded "
        << std::chrono::duration_cast<milliseconds>(read_done - seen_sealed)
               .count()
        << " ms after the disk showed as sealed";
  }

  fault_->DelayReads(milliseconds(0));
  std::vector<uint8_t> buf(4096);
  auto r = h->Read(0, buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), ErrorKind::kKeyUnavailable);
  auto w = h->Write(0, buf);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_EQ(h->Discard(0, 1 << 16).kind(), ErrorKind::kKeyUnavailable);
}

}  // namespace
}  // namespace cmkfs::fs::testing
