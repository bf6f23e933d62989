// Compiled by check_thread_safety.cmake: as is it must compile cleanly with
// -Wthread-safety -Werror; with CMKFS_PROBE_UNLOCKED_READ it reads a guarded
// member without its lock and must be rejected. Proves the analysis is on
// and sees through cmkfs/mutex.h.
#include "cmkfs/mutex.h"

namespace {

class Counter {
 public:
  void Add(int n) EXCLUDES(mu_) {
    cmkfs::MutexLock lock(&mu_);
    AddLocked(n);
  }
  int Get() EXCLUDES(mu_) {
#ifdef CMKFS_PROBE_UNLOCKED_READ
    return value_;
#else
    cmkfs::MutexLock lock(&mu_);
    return value_;
#endif
  }

 private:
  void AddLocked(int n) REQUIRES(mu_) { value_ += n; }

  cmkfs::Mutex mu_;
  int value_ GUARDED_BY(mu_) = 0;
};

}  // namespace

int main() {
  Counter c;
  c.Add(1);
  return c.Get() == 1 ? 0 : 1;
}
