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

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/status.h"

namespace cmkfs::fuse {

struct MountOptions {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0600;  // disk files; snapshots and images get mode & 0444
  bool allow_other = false;
  uint32_t threads = 0;  // max idle FUSE worker threads; 0 = libfuse default
  // Extra comma-separated mount options given with `-o` (e.g. "ro").
  std::vector<std::string> extra_options;
  bool debug = false;  // libfuse request tracing on stderr
};

// One mounted session. Create with Mount(), then call Run() on one thread
// (usually main) until the filesystem is unmounted. Not copyable.
class FuseMount {
 public:
  // Mounts `engine` (which must outlive the FuseMount) at `mountpoint`.
  // InvalidArgument for bad options; IOError when the kernel refuses the
  // mount. The mount is live when this returns; requests are served once
  // Run() starts.
  static Result<std::unique_ptr<FuseMount>> Mount(
      fs::Engine* engine, const std::filesystem::path& mountpoint,
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
