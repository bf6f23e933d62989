#include "cmkfs/mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace cmkfs {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Whether another thread can take `mu` now (try_lock by the holder itself
// would be undefined).
bool FreeForAnotherThread(Mutex* mu) {
  bool free = false;
  std::thread other([&] {
    if (mu->TryLock()) {
      free = true;
      mu->Unlock();
    }
  });
  other.join();
  return free;
}

// A counter bumped by many threads under a Mutex ends at the exact total
// (and TSan sees no race: the wrappers are real locks).
struct Counter {
  Mutex mu;
  int total GUARDED_BY(mu) = 0;
};

TEST(Mutex, SerializesWriters) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        MutexLock lock(&c.mu);
        ++c.total;
      }
    });
  }
  for (auto& t : threads) t.join();
  MutexLock lock(&c.mu);
  EXPECT_EQ(c.total, 40000);
}

TEST(Mutex, TryLockFailsWhileHeld) {
  Mutex mu;
  EXPECT_TRUE(FreeForAnotherThread(&mu));
  MutexLock lock(&mu);
  EXPECT_FALSE(FreeForAnotherThread(&mu));
}

// MutexLock::Unlock lets another thread in; Lock takes the mutex back, and
// the destructor releases only what is held.
TEST(MutexLock, UnlockAndRelockInsideTheScope) {
  Mutex mu;
  {
    MutexLock lock(&mu);
    lock.Unlock();
    EXPECT_TRUE(FreeForAnotherThread(&mu));
    lock.Lock();
    EXPECT_FALSE(FreeForAnotherThread(&mu));
  }
  EXPECT_TRUE(FreeForAnotherThread(&mu));  // released by the destructor
  {
    MutexLock lock(&mu);
    lock.Unlock();
  }  // the destructor releases nothing more (TSan/glibc would object)
  EXPECT_TRUE(FreeForAnotherThread(&mu));
}

// Two readers hold a SharedMutex at once: each waits, holding it, until the
// other has it too. A writer excludes them.
TEST(SharedMutex, ReadersShareWritersExclude) {
  SharedMutex mu;
  std::atomic<int> inside{0};
  std::atomic<bool> both_seen{false};
  auto reader = [&] {
    ReaderLock lock(&mu);
    ++inside;
    const auto deadline = steady_clock::now() + std::chrono::seconds(10);
    while (inside.load() < 2 && steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    if (inside.load() == 2) both_seen = true;
  };
  std::thread a(reader), b(reader);
  a.join();
  b.join();
  EXPECT_TRUE(both_seen);

  std::atomic<bool> reader_done{false};
  std::thread late;
  {
    WriterLock lock(&mu);
    late = std::thread([&] {
      ReaderLock r(&mu);
      reader_done = true;
    });
    std::this_thread::sleep_for(milliseconds(50));
    EXPECT_FALSE(reader_done);
  }
  late.join();
  EXPECT_TRUE(reader_done);
}

struct Flag {
  Mutex mu;
  CondVar cv;
  bool set GUARDED_BY(mu) = false;
  int waiting GUARDED_BY(mu) = 0;
  int woken GUARDED_BY(mu) = 0;
};

TEST(CondVar, SignalWakesAWaiter) {
  Flag f;
  std::thread waker([&] {
    std::this_thread::sleep_for(milliseconds(20));
    {
      MutexLock lock(&f.mu);
      f.set = true;
    }
    f.cv.Signal();
  });
  {
    MutexLock lock(&f.mu);
    const auto deadline = steady_clock::now() + std::chrono::seconds(10);
    while (!f.set) {
      if (!f.cv.WaitUntil(&f.mu, deadline)) break;
    }
    EXPECT_TRUE(f.set);
  }
  waker.join();
}

TEST(CondVar, TimedWaitReturnsFalseAtItsDeadlineHoldingTheLock) {
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  const auto start = steady_clock::now();
  bool woken = true;
  // A spurious wakeup returns true early: wait again until the time is up.
  while (woken && steady_clock::now() - start < milliseconds(30)) {
    woken = cv.WaitFor(&mu, milliseconds(30));
  }
  EXPECT_FALSE(woken);
  EXPECT_GE(steady_clock::now() - start, milliseconds(30));
  EXPECT_FALSE(FreeForAnotherThread(&mu));
}

TEST(CondVar, SignalAllWakesEveryWaiter) {
  Flag f;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] {
      MutexLock lock(&f.mu);
      ++f.waiting;
      const auto deadline = steady_clock::now() + std::chrono::seconds(5);
      while (!f.set) {
        if (!f.cv.WaitUntil(&f.mu, deadline)) return;
      }
      ++f.woken;
    });
  }
  // Every waiter is inside Wait (it counted itself, then released the lock
  // only by waiting) before the one SignalAll.
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    {
      MutexLock lock(&f.mu);
      if (f.waiting == 3 || steady_clock::now() > deadline) {
        f.set = true;
        break;
      }
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  f.cv.SignalAll();
  for (auto& t : waiters) t.join();
  MutexLock lock(&f.mu);
  EXPECT_EQ(f.woken, 3);
}

}  // namespace
}  // namespace cmkfs
