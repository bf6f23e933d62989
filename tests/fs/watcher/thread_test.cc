// The watcher thread: start/stop, wake, seal and unseal of an open disk
// (latency printed, not bounded: tests/bench measures it), and a key
// disabled by another process. Every wait is on the event, bounded by
// kEventTimeout, far above any latency, so a slow (sanitizer) build passes
// and a watcher that never acts still fails.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <thread>

#include "watcher_fixture.h"

namespace cmkfs::fs::testing {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kEventTimeout = seconds(30);

// Waits until the watcher has finished at least `n` polls.
bool WaitForPolls(KeyWatcher& w, uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
  while (w.stats().polls < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

TEST_F(WatcherTest, StartRejectsAZeroIntervalAndASecondStart) {
  WatcherOptions zero;
  zero.poll_interval = milliseconds(0);
  EXPECT_EQ(MakeWatcher(zero)->Start().kind(), ErrorKind::kInvalidArgument);
  auto w = MakeWatcher();
  CMKFS_ASSERT_OK(w->Start());
  EXPECT_EQ(w->Start().kind(), ErrorKind::kFailedPrecondition);
  w->Stop();
  w->Stop();                    // idempotent
  CMKFS_ASSERT_OK(w->Start());  // restartable
}

// Stop does not wait for the rest of the interval: with an hour's interval
// it returns within the (far shorter) event timeout.
TEST_F(WatcherTest, StopDoesNotWaitForTheInterval) {
  WatcherOptions options;
  options.poll_interval = hours(1);
  auto w = MakeWatcher(options);
  CMKFS_ASSERT_OK(w->Start());
  ASSERT_TRUE(WaitForPolls(*w, 1)) << "the thread never polled";
  auto stopped = std::async(std::launch::async, [&] { w->Stop(); });
  ASSERT_EQ(stopped.wait_for(kEventTimeout), std::future_status::ready)
      << "Stop waited for the poll interval";
  EXPECT_EQ(w->stats().polls, 1u);
}

// With an hour's interval, only Wake can make the second poll happen.
TEST_F(WatcherTest, WakePollsAtOnce) {
  WatcherOptions options;
  options.poll_interval = hours(1);
  auto w = MakeWatcher(options);
  MakeDisk("d1", DiskSku::kPremiumLrs);
  CMKFS_ASSERT_OK(w->Start());
  ASSERT_TRUE(WaitForPolls(*w, 1)) << "the thread never polled";
  CMKFS_ASSERT_OK(SetEnabled(false));
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kActive);
  w->Wake();
  EXPECT_TRUE(WaitForState(ResourceKind::kDisk, "d1", ResourceState::kSealed,
                           kEventTimeout));
  ASSERT_TRUE(WaitForPolls(*w, 2));
  EXPECT_EQ(w->stats().polls, 2u);
  w->Stop();
}

// Each disable cuts I/O on an open handle and seals the disk, each enable
// (and a wake) brings it back with the data intact. The latencies are
// printed; the latency target is checked by the benchmark (docs/watcher.md).
TEST_F(WatcherTest, OpenDiskSealsOnEveryDisableAndComesBack) {
  constexpr int kTrials = 5;
  WatcherOptions options;
  options.poll_interval = seconds(1);
  MakeDisk("d1", DiskSku::kPremiumLrs);
  std::shared_ptr<DiskHandle> h =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", true));
  WritePattern(*h, 7);
  auto w = MakeWatcher(options);
  CMKFS_ASSERT_OK(w->Start());

  std::vector<milliseconds> seal;
  for (int i = 0; i < kTrials; ++i) {
    CMKFS_ASSERT_OK(SetEnabled(false));
    std::optional<milliseconds> s = WaitForReadFailure(*h, kEventTimeout);
    ASSERT_TRUE(s.has_value()) << "trial " << i << ": I/O never failed";
    // The seal publishes its state (it cuts I/O first or last, the
    // engine's choice), then the user sees it.
    EXPECT_TRUE(WaitForState(ResourceKind::kDisk, "d1", ResourceState::kSealed,
                             kEventTimeout));
    seal.push_back(*s);
    CMKFS_ASSERT_OK(SetEnabled(true));
    w->Wake();
    std::optional<milliseconds> u = WaitForState(
        ResourceKind::kDisk, "d1", ResourceState::kActive, kEventTimeout);
    ASSERT_TRUE(u.has_value()) << "trial " << i << ": never unsealed";
    ExpectPattern(*h, 7);
  }
  w->Stop();

  std::sort(seal.begin(), seal.end());
  WatcherStats stats = w->stats();
  std::printf(
      "seal latency over %d trials, poll 1 s: min %lld ms, median %lld ms, "
      "max %lld ms; watcher detection-to-sealed max %.2f ms (not a bound: "
      "see the benchmark)\n",
      kTrials, static_cast<long long>(seal.front().count()),
      static_cast<long long>(seal[seal.size() / 2].count()),
      static_cast<long long>(seal.back().count()),
      static_cast<double>(stats.max_seal_latency.count()) / 1000.0);
  RecordProperty("seal_latency_max_ms", static_cast<int>(seal.back().count()));
  EXPECT_EQ(stats.seals, static_cast<uint64_t>(kTrials));
  EXPECT_EQ(stats.unseals, static_cast<uint64_t>(kTrials));
}

// The key is disabled by another process on the same keystore directory
// (as cmkctl does while the daemon runs).
class TwoProcessTest : public WatcherTest {
 protected:
  // Forked while this process has no other thread: the child may then use
  // the keystore freely. It waits for a key id on a pipe, disables that
  // version through its own KeyStore and reports back.
  void BeforeOpen() override {
    int to_child[2];
    int from_child[2];
    ASSERT_EQ(pipe(to_child), 0);
    ASSERT_EQ(pipe(from_child), 0);
    child_ = fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      close(to_child[1]);
      close(from_child[0]);
      _exit(ChildMain(to_child[0], from_child[1]));
    }
    close(to_child[0]);
    close(from_child[1]);
    to_child_ = to_child[1];
    from_child_ = from_child[0];
  }

  int ChildMain(int in, int out) {
    std::string line;
    char c;
    while (read(in, &c, 1) == 1 && c != '\n') line.push_back(c);
    if (line.empty()) return 0;  // parent gave up
    auto report = [&](const std::string& msg) {
      std::string m = msg + "\n";
      ssize_t n = write(out, m.data(), m.size());
      (void)n;
    };
    Result<keystore::KeyId> id = keystore::KeyId::Parse(line);
    if (!id.ok()) {
      report(id.status().ToString());
      return 1;
    }
    Result<std::unique_ptr<keystore::KeyStore>> ks =
        keystore::OpenKeyStore(KeyStoreOptionsFor());
    if (!ks.ok()) {
      report(ks.status().ToString());
      return 1;
    }
    keystore::AttributeUpdate u;
    u.enabled = false;
    Result<keystore::KeyVersionInfo> r = (*ks)->UpdateKeyAttributes("", *id, u);
    report(r.ok() ? "ok" : r.status().ToString());
    return r.ok() ? 0 : 1;
  }

  void TearDown() override {
    if (to_child_ >= 0) close(to_child_);
    if (from_child_ >= 0) close(from_child_);
    if (child_ > 0) {
      int status = 0;
      waitpid(child_, &status, 0);
    }
    WatcherTest::TearDown();
  }

  pid_t child_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
};

TEST_F(TwoProcessTest, KeyDisabledByAnotherProcessIsSeenOnTheNextPoll) {
  MakeDisk("d1", DiskSku::kPremiumLrs);
  std::shared_ptr<DiskHandle> h =
      CMKFS_VALUE(engine_->Open(ResourceKind::kDisk, "d1", true));
  WritePattern(*h, 8);
  WatcherOptions options;
  options.poll_interval = seconds(1);
  auto w = MakeWatcher(options);
  CMKFS_ASSERT_OK(w->Start());

  const std::string id = key().ToString() + "\n";
  ASSERT_EQ(write(to_child_, id.data(), id.size()),
            static_cast<ssize_t>(id.size()));
  std::string answer;
  char c;
  while (read(from_child_, &c, 1) == 1 && c != '\n') answer.push_back(c);
  ASSERT_EQ(answer, "ok") << "child process failed";

  std::optional<milliseconds> took = WaitForReadFailure(*h, kEventTimeout);
  ASSERT_TRUE(took.has_value()) << "change by another process not seen";
  EXPECT_TRUE(WaitForState(ResourceKind::kDisk, "d1", ResourceState::kSealed,
                           kEventTimeout));
  std::printf("sealed %lld ms after another process disabled the key\n",
              static_cast<long long>(took->count()));

  CMKFS_ASSERT_OK(SetEnabled(true));
  w->Wake();
  EXPECT_TRUE(WaitForState(ResourceKind::kDisk, "d1", ResourceState::kActive,
                           kEventTimeout));
  ExpectPattern(*h, 8);
  w->Stop();
}

}  // namespace
}  // namespace cmkfs::fs::testing
