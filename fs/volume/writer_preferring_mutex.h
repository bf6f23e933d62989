// A reader-writer lock that lets a waiting writer in ahead of new readers
// (glibc's default prefers readers, which starves a snapshot or a commit
// behind a stream of I/O). Readers must not nest. Annotated for clang's
// -Wthread-safety; the lower-case names make it usable with std::unique_lock
// and std::shared_lock too.
#pragma once

#include <pthread.h>

#include "cmkfs/thread_annotations.h"

namespace cmkfs::fs {

class CAPABILITY("shared_mutex") WriterPreferringMutex {
 public:
  WriterPreferringMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~WriterPreferringMutex() { pthread_rwlock_destroy(&lock_); }
  WriterPreferringMutex(const WriterPreferringMutex&) = delete;
  WriterPreferringMutex& operator=(const WriterPreferringMutex&) = delete;

  void Lock() ACQUIRE() { pthread_rwlock_wrlock(&lock_); }
  void Unlock() RELEASE() { pthread_rwlock_unlock(&lock_); }
  void LockShared() ACQUIRE_SHARED() { pthread_rwlock_rdlock(&lock_); }
  void UnlockShared() RELEASE_SHARED() { pthread_rwlock_unlock(&lock_); }
  void lock() ACQUIRE() { Lock(); }
  void unlock() RELEASE() { Unlock(); }
  void lock_shared() ACQUIRE_SHARED() { LockShared(); }
  void unlock_shared() RELEASE_SHARED() { UnlockShared(); }

 private:
  pthread_rwlock_t lock_;
};

// Holds a WriterPreferringMutex shared, or exclusively, for its scope.
class SCOPED_CAPABILITY SharedGate {
 public:
  explicit SharedGate(WriterPreferringMutex* mu) ACQUIRE_SHARED(mu) : mu_(mu) {
    mu_->LockShared();
  }
  ~SharedGate() RELEASE() { mu_->UnlockShared(); }
  SharedGate(const SharedGate&) = delete;
  SharedGate& operator=(const SharedGate&) = delete;

 private:
  WriterPreferringMutex* const mu_;
};

class SCOPED_CAPABILITY ExclusiveGate {
 public:
  explicit ExclusiveGate(WriterPreferringMutex* mu) ACQUIRE(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~ExclusiveGate() RELEASE() { mu_->Unlock(); }
  ExclusiveGate(const ExclusiveGate&) = delete;
  ExclusiveGate& operator=(const ExclusiveGate&) = delete;

 private:
  WriterPreferringMutex* const mu_;
};

}  // namespace cmkfs::fs
