// The FUSE edge of cmkfs: presents the engine's disks, snapshots and images
// as regular files under MOUNTPOINT/{disks,snapshots,images}/NAME. This is the
// only module that includes libfuse (low-level API), and the only place where
// a Status becomes an errno (cmkfs::ToErrno).
//
// errno choices (docs/daemon.md):
//   sealed resource (key unavailable)  EIO
//   write to a snapshot or image       EROFS
//   write at or past the end           EFBIG (a write crossing the end is
//   short) unaligned O_DIRECT read/write      EINVAL (512-byte offset and
//   length) truncate, chmod, chown, create, unlink, rename, mkdir, setxattr
//   EPERM fallocate growing the file         EFBIG; unknown modes EOPNOTSUPP
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/status.h"

namespace cmkfs::fuse {

// The I/O requests the adapter serves, as reported to an IoObserver. kFlush
// is every DiskHandle::Sync (fsync, fdatasync, close after writes); kDiscard
// every punch-hole or zero-range fallocate.
enum class IoOp { kRead, kWrite, kFlush, kDiscard };

// Receives the I/O of one resource. Record is called on the FUSE worker
// threads, concurrently, once per request that reached the engine, with the
// bytes transferred (the length for kDiscard, 0 for kFlush), the time the
// daemon spent on it and whether it succeeded. It must not block or lock.
class IoSink {
 public:
  virtual ~IoSink() = default;
  virtual void Record(IoOp op, uint64_t bytes, std::chrono::nanoseconds latency,
                      bool ok) = 0;
};

// The daemon's metrics. SinkFor is called once per successful open (not per
// I/O, so it may lock) and returns the sink of that resource, owned by the
// observer and valid as long as the observer; nullptr: not observed.
// Thread-safe.
class IoObserver {
 public:
  virtual ~IoObserver() = default;
  virtual IoSink* SinkFor(fs::ResourceKind kind, std::string_view name) = 0;
};

struct MountOptions {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0600;  // disk files; snapshots and images get mode & 0444
  bool allow_other = false;
  uint32_t threads = 0;  // most FUSE worker threads at once; 0 = 10
  // Extra comma-separated mount options given with `-o` (e.g. "ro").
  std::vector<std::string> extra_options;
  bool debug = false;                 // libfuse request tracing on stderr
  IoObserver* io_observer = nullptr;  // must outlive the mount; may be null
};

// One mounted session. Create with Mount(), then call Run() on one thread
// (usually main) until the filesystem is unmounted. Not copyable.
class FuseMount {
 public:
  // Mounts the resources of `engine` (which must outlive the FuseMount) at
  // `mountpoint`.
  // InvalidArgument for bad options; IOError when the kernel refuses the
  // mount. The mount is live when this returns; requests are served once
  // Run() starts.
  static Result<std::unique_ptr<FuseMount>> Mount(
      fs::ResourceView* engine, const std::filesystem::path& mountpoint,
      const MountOptions& options);

  virtual ~FuseMount() = default;

  // Serves requests with a multithreaded loop until the filesystem is
  // unmounted (fusermount3 -u, umount) or SIGTERM/SIGINT/SIGHUP arrives
  // (handlers installed for the duration; the calling thread unblocks those
  // signals). Returns OK after a clean end of the loop. Call once.
  virtual Status Run() = 0;

  // Unmounts (if still mounted) and releases the session. Idempotent; called
  // by the destructor. Must not run concurrently with Run().
  virtual void Unmount() = 0;

  // Asks Run() to return soon (thread-safe, not async-signal-safe).
  virtual void RequestExit() = 0;
};

}  // namespace cmkfs::fuse
