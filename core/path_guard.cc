#include "cmkfs/path_guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

namespace cmkfs::path_guard {
namespace {

namespace stdfs = std::filesystem;

constexpr int kMaxDepth = 16;  // the state directory is a few levels deep

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string Uid(uid_t uid) { return "uid " + std::to_string(uid); }

bool RootOwnedSticky(const struct stat& st) {
  return st.st_uid == 0 && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
}

// One directory above (or at) the checked path.
Status CheckAncestor(const struct stat& st, const stdfs::path& p) {
  const uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me) {
    return PermissionDeniedError(
        p.string() + " is owned by " + DescribeOwner(st) +
        "; it and every directory above it must be owned by root or by " +
        Uid(me) + " (the user running cmkfs)");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !RootOwnedSticky(st)) {
    return PermissionDeniedError(
        p.string() + " is writable by group or others (" + DescribeOwner(st) +
        "); it and every directory above it must not be (a root-owned "
        "sticky directory such as /tmp is accepted); fix: chmod go-w " +
        p.string());
  }
  return Status::Ok();
}

// The group/other bits of `st` are within `access`.
Status CheckMode(const struct stat& st, const stdfs::path& path,
                 Access access) {
  const bool owner_only = access == Access::kOwnerOnly;
  const mode_t forbidden =
      owner_only ? mode_t{S_IRWXG | S_IRWXO} : mode_t{S_IWGRP | S_IWOTH};
  if ((st.st_mode & forbidden) == 0) return Status::Ok();
  return PermissionDeniedError(
      path.string() + " has " + DescribeOwner(st) + "; it must not be " +
      (owner_only ? "accessible" : "writable") +
      " by group or others; fix: chmod " + (owner_only ? "go-rwx " : "go-w ") +
      path.string());
}

Status Walk(int dir_fd, const stdfs::path& dir, dev_t dev, int depth) {
  if (depth > kMaxDepth) {
    return PermissionDeniedError(dir.string() + " is nested more than " +
                                 std::to_string(kMaxDepth) +
                                 " directories deep inside the state "
                                 "directory; cmkfs does not create that");
  }
  int fd = ::dup(dir_fd);
  if (fd < 0) return ErrnoError("dup " + dir.string(), errno);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return ErrnoError("read directory " + dir.string(), err);
  }
  Status result;
  while (result.ok()) {
    errno = 0;
    struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0)
        result = ErrnoError("read directory " + dir.string(), errno);
      break;
    }
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    const stdfs::path p = dir / e->d_name;
    struct stat st {};
    if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      result = ErrnoError("stat " + p.string(), errno);
      break;
    }
    if (st.st_dev != dev && S_ISDIR(st.st_mode)) continue;  // a mount point
    result = CheckEntry(st, p);
    if (!result.ok() || !S_ISDIR(st.st_mode)) continue;
    int sub = ::openat(dir_fd, e->d_name,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      result = ErrnoError("open directory " + p.string(), errno);
      break;
    }
    result = Walk(sub, p, dev, depth + 1);
    ::close(sub);
  }
  ::closedir(d);
  return result;
}

}  // namespace

std::string DescribeOwner(const struct stat& st) {
  return Uid(st.st_uid) + ", mode " + Octal(st.st_mode);
}

Status CheckAncestors(const stdfs::path& path) {
  std::error_code ec;
  stdfs::path real = stdfs::canonical(path, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) {
      return NotFoundError(path.string() + " does not exist");
    }
    return IOError("resolve " + path.string() + ": " + ec.message());
  }
  for (stdfs::path p = real;; p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0)
      return ErrnoError("stat " + p.string(), errno);
    CMKFS_RETURN_IF_ERROR(CheckAncestor(st, p));
    if (p == p.root_path() || p.parent_path() == p) break;
  }
  return Status::Ok();
}

Status CheckEntry(const struct stat& st, const stdfs::path& path,
                  Access access) {
  if (S_ISLNK(st.st_mode)) {
    return PermissionDeniedError(
        path.string() +
        " is a symbolic link; cmkfs follows no symbolic link inside its "
        "state directory (remove it)");
  }
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISSOCK(st.st_mode)) {
    return PermissionDeniedError(
        path.string() + " (" + DescribeOwner(st) +
        ") is not a regular file, directory or socket; cmkfs creates no "
        "other kind of file in its state directory (remove it)");
  }
  const uid_t me = ::geteuid();
  if (st.st_uid != me) {
    return PermissionDeniedError(path.string() + " is owned by " +
                                 DescribeOwner(st) + "; it must be owned by " +
                                 Uid(me) + " (the user running cmkfs)");
  }
  CMKFS_RETURN_IF_ERROR(CheckMode(st, path, access));
  return Status::Ok();
}

Status CheckOpenFile(int fd, const stdfs::path& path, Access access) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("stat " + path.string(), errno);
  return CheckEntry(st, path, access);
}

Status CheckStateDir(const stdfs::path& dir) {
  CMKFS_RETURN_IF_ERROR(CheckAncestors(dir));
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open state directory " + dir.string(), errno);
  struct stat st {};
  Status s;
  if (::fstat(fd, &st) != 0) {
    s = ErrnoError("stat " + dir.string(), errno);
  } else {
    s = CheckEntry(st, dir);
    if (s.ok()) s = Walk(fd, dir, st.st_dev, 0);
  }
  ::close(fd);
  return s;
}

Status PrepareStateDir(const stdfs::path& dir) {
  std::error_code ec;
  if (!stdfs::exists(dir, ec)) {
    // Nothing is created below a directory that fails the rule.
    stdfs::path existing = stdfs::absolute(dir, ec).parent_path();
    while (!existing.empty() && !stdfs::exists(existing, ec) &&
           existing != existing.parent_path()) {
      existing = existing.parent_path();
    }
    CMKFS_RETURN_IF_ERROR(CheckAncestors(existing));
    CMKFS_RETURN_IF_ERROR(MakePrivateDir(dir));
  }
  return CheckStateDir(dir);
}

Status MakePrivateDir(const stdfs::path& dir) {
  std::error_code ec;
  stdfs::path parent = dir.parent_path();
  if (!parent.empty() && parent != dir && !stdfs::exists(parent, ec)) {
    CMKFS_RETURN_IF_ERROR(MakePrivateDir(parent));
  }
  if (::mkdir(dir.c_str(), 0700) == 0) {
    if (::chmod(dir.c_str(), 0700) != 0) {
      return ErrnoError("chmod 0700 " + dir.string(), errno);
    }
    return Status::Ok();
  }
  if (errno != EEXIST)
    return ErrnoError("create directory " + dir.string(), errno);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return ErrnoError("stat " + dir.string(), errno);
  }
  CMKFS_RETURN_IF_ERROR(CheckEntry(st, dir));
  if (!S_ISDIR(st.st_mode)) {
    return InvalidArgumentError(dir.string() +
                                " exists and is not a directory");
  }
  return Status::Ok();
}

Result<int> OpenNoFollow(const stdfs::path& path, int flags, mode_t mode,
                         Access access) {
  stdfs::path parent = path.parent_path();
  if (parent.empty()) parent = ".";
  const std::string name = path.filename().string();
  if (name.empty() || name == "." || name == "..") {
    // Appended piece by piece: GCC 12 at -O3 reports a false -Werror=restrict
    // for `const char* + std::string&&` here.
    std::string message = "'";
    message += path.string();
    message += "' names no file";
    return InvalidArgumentError(message);
  }
  int dir_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoError("open directory " + parent.string(), errno);
  int fd = ::openat(dir_fd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  int err = errno;
  if (fd < 0 && err == ELOOP) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode)) {
      ::close(dir_fd);
      return CheckEntry(st, path);  // "is a symbolic link"
    }
  }
  ::close(dir_fd);
  if (fd < 0) {
    if (err == EEXIST) {
      return AlreadyExistsError(path.string() + " already exists");
    }
    if (err == ENOENT) return NotFoundError(path.string() + " not found");
    return ErrnoError("open " + path.string(), err);
  }
  // A file made by this call (O_CREAT|O_EXCL) gets exactly `mode`, whatever
  // the umask.
  const bool created = (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL);
  if (created && ::fchmod(fd, mode) != 0) {
    err = errno;
    ::close(fd);
    return ErrnoError("chmod " + path.string(), err);
  }
  if (Status s = CheckOpenFile(fd, path, access); !s.ok()) {
    ::close(fd);
    return s;
  }
  return fd;
}

Status WriteNewPrivateFile(
    const std::filesystem::path& path,
    std::initializer_list<std::span<const uint8_t>> parts) {
  CMKFS_ASSIGN_OR_RETURN(int fd, OpenNoFollow(path, O_WRONLY | O_CREAT | O_EXCL,
                                              0600, Access::kOwnerOnly));
  Status s;
  for (std::span<const uint8_t> p : parts) {
    size_t done = 0;
    while (s.ok() && done < p.size()) {
      ssize_t n = ::write(fd, p.data() + done, p.size() - done);
      if (n < 0)
        s = ErrnoError("write " + path.string(), errno);
      else
        done += static_cast<size_t>(n);
    }
  }
  if (s.ok() && ::fsync(fd) != 0)
    s = ErrnoError("fsync " + path.string(), errno);
  ::close(fd);
  return s;
}

}  // namespace cmkfs::path_guard
