// Clang thread-safety annotations (https://clang.llvm.org/docs/
// ThreadSafetyAnalysis.html). Under clang with -Wthread-safety
// (CMKFS_THREAD_SAFETY=ON, the CI part `tsa`) the compiler checks that every
// GUARDED_BY member is touched only with its lock held and every REQUIRES
// function is called only with it; on GCC every macro expands to nothing.
//
// Use them with the annotated lock types of cmkfs/mutex.h: std::mutex carries
// no annotations in libstdc++, so the analysis cannot see it.
#pragma once

#if defined(__clang__)
#define CMKFS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define CMKFS_THREAD_ANNOTATION(x)
#endif

// A class that is a lock ("mutex", "shared_mutex": the name in diagnostics).
#ifndef CAPABILITY
#define CAPABILITY(x) CMKFS_THREAD_ANNOTATION(capability(x))
#endif

// An RAII class that holds a capability for its lifetime.
#ifndef SCOPED_CAPABILITY
#define SCOPED_CAPABILITY CMKFS_THREAD_ANNOTATION(scoped_lockable)
#endif

// A member that may be read or written only while holding `x` (reads need at
// least a shared hold).
#ifndef GUARDED_BY
#define GUARDED_BY(x) CMKFS_THREAD_ANNOTATION(guarded_by(x))
#endif

// A pointer member whose pointee is guarded by `x` (the pointer is not).
#ifndef PT_GUARDED_BY
#define PT_GUARDED_BY(x) CMKFS_THREAD_ANNOTATION(pt_guarded_by(x))
#endif

// Lock order: this lock is taken after (before) the named ones when nested.
// Checked with -Wthread-safety-beta only; the order is also written down in
// docs/architecture.md (Locks).
#ifndef ACQUIRED_AFTER
#define ACQUIRED_AFTER(...) CMKFS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#endif
#ifndef ACQUIRED_BEFORE
#define ACQUIRED_BEFORE(...) \
  CMKFS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#endif

// The caller must hold the capabilities (exclusively / at least shared).
#ifndef REQUIRES
#define REQUIRES(...) CMKFS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#endif
#ifndef REQUIRES_SHARED
#define REQUIRES_SHARED(...) \
  CMKFS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#endif

// The function takes (releases) the capabilities and returns holding them
// (not holding them). Without arguments on a member: the object itself.
#ifndef ACQUIRE
#define ACQUIRE(...) CMKFS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#endif
#ifndef ACQUIRE_SHARED
#define ACQUIRE_SHARED(...) \
  CMKFS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#endif
#ifndef RELEASE
#define RELEASE(...) CMKFS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#endif
#ifndef RELEASE_SHARED
#define RELEASE_SHARED(...) \
  CMKFS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#endif
// Releases a hold of either kind (a scoped lock's destructor).
#ifndef RELEASE_GENERIC
#define RELEASE_GENERIC(...) \
  CMKFS_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#endif

// Takes the capability when it returns `ok` (the first argument).
#ifndef TRY_ACQUIRE
#define TRY_ACQUIRE(...) \
  CMKFS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#endif

// The caller must not hold the capabilities (the function takes them).
#ifndef EXCLUDES
#define EXCLUDES(...) CMKFS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#endif

// Tells the analysis the capability is held from here on (a run-time claim,
// for code it cannot follow).
#ifndef ASSERT_CAPABILITY
#define ASSERT_CAPABILITY(x) CMKFS_THREAD_ANNOTATION(assert_capability(x))
#endif
#ifndef ASSERT_SHARED_CAPABILITY
#define ASSERT_SHARED_CAPABILITY(x) \
  CMKFS_THREAD_ANNOTATION(assert_shared_capability(x))
#endif

// The function returns a reference to the capability `x`.
#ifndef RETURN_CAPABILITY
#define RETURN_CAPABILITY(x) CMKFS_THREAD_ANNOTATION(lock_returned(x))
#endif

// Turns the analysis off for one function. Every use says why in a comment.
#ifndef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS \
  CMKFS_THREAD_ANNOTATION(no_thread_safety_analysis)
#endif
