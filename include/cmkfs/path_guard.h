// Trust checks for the state directory and the files cmkfs reads as root
// (docs/threat-model.md, "The state directory"). Every check returns one
// line naming the path, its owner and mode, and what is accepted.
//
// The rule is sshd's for authorized_keys: a directory holding secrets, and
// every ancestor of it, is owned by root or by the running (effective) uid and
// is not writable by group or others. One exception: an ancestor owned by
// root with the sticky bit (/tmp, /var/tmp) may be world-writable, since
// nobody else can rename or remove what is in it. Everything inside the state
// directory is owned by the running uid, not writable by group or others, and
// is a regular file, a directory or a socket, never a symbolic link.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs::path_guard {

// What an entry's mode may allow beyond its owner.
enum class Access {
  kNoGroupOtherWrite,  // e.g. 0644 is fine (directories, LMDB files, sockets)
  kOwnerOnly,          // no group/other bits at all (key, PIN, passphrase)
};

// `path` (resolved to its real path) and every ancestor up to "/" are owned by
// root or the euid and not group/other writable, except root-owned sticky
// directories. PermissionDenied otherwise, NotFound if `path` is missing.
Status CheckAncestors(const std::filesystem::path& path);

// One entry as lstat/fstat saw it: owned by the euid, not a symbolic link,
// a regular file, directory or socket, and its mode within `access`.
Status CheckEntry(const struct stat& st, const std::filesystem::path& path,
                  Access access = Access::kNoGroupOtherWrite);

// fstat(fd) and CheckEntry: for a file opened by name (LMDB's own files,
// the pool, the lock file, the master key).
Status CheckOpenFile(int fd, const std::filesystem::path& path,
                     Access access = Access::kNoGroupOtherWrite);

// The whole state directory: CheckAncestors(dir), then CheckEntry on `dir`
// and on everything beneath it (recursively; a mount point below `dir` is
// neither checked nor entered).
Status CheckStateDir(const std::filesystem::path& dir);

// Creates `dir` and its missing parents with mode 0700 (whatever the umask),
// then CheckStateDir(dir).
Status PrepareStateDir(const std::filesystem::path& dir);

// Creates directory `dir` (and missing parents) 0700 if it is missing; an
// existing `dir` (followed if it is a symbolic link: what is inside a state
// directory is checked by CheckStateDir) must be owned by the euid and not
// group/other writable.
Status MakePrivateDir(const std::filesystem::path& dir);

// Opens `path` with open(2) flags `flags` | O_NOFOLLOW | O_CLOEXEC relative to
// an fd of its parent directory (openat), so a symbolic link as the last
// component is refused (ELOOP is reported as "is a symbolic link"). A created
// file gets exactly `mode` (fchmod, whatever the umask). The opened file must
// pass CheckOpenFile(`access`). Returns the fd (the caller closes it).
Result<int> OpenNoFollow(const std::filesystem::path& path, int flags,
                         mode_t mode = 0600,
                         Access access = Access::kNoGroupOtherWrite);

// Creates `path` 0600 (OpenNoFollow, O_EXCL: an existing file is never
// replaced, AlreadyExists-style IOError naming it) holding `parts` one after
// the other, and fsyncs it. For credential bundles and sealed keys.
Status WriteNewPrivateFile(
    const std::filesystem::path& path,
    std::initializer_list<std::span<const uint8_t>> parts);

// "uid 1001 mode 0666" style description for messages.
std::string DescribeOwner(const struct stat& st);

}  // namespace cmkfs::path_guard
