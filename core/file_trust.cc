#include "cmkfs/file_trust.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

#include "cmkfs/units.h"

namespace cmkfs {
namespace {

std::string OctalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string Owners() {
  const uid_t me = ::geteuid();
  return me == 0 ? "root" : "root or uid " + std::to_string(me);
}

bool OwnerTrusted(const struct stat& st) {
  return st.st_uid == 0 || st.st_uid == ::geteuid();
}

std::string Found(const struct stat& st) {
  return "owner uid " + std::to_string(st.st_uid) + ", mode " +
         OctalMode(st.st_mode);
}

Status CheckDirectory(const std::filesystem::path& dir,
                      const std::filesystem::path& file,
                      std::string_view what) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return ErrnoError("stat " + dir.string(), errno);
  }
  const bool sticky_root = st.st_uid == 0 && (st.st_mode & S_ISVTX);
  if (OwnerTrusted(st) && ((st.st_mode & 022) == 0 || sticky_root)) {
    return Status::Ok();
  }
  return InvalidArgumentError(
      std::string(what) + " " + file.string() + " is not trusted: directory " +
      dir.string() + " (" + Found(st) + ") must be owned by " + Owners() +
      " and not writable by group or others");
}

}  // namespace

Result<std::filesystem::path> CheckTrustedFile(
    const std::filesystem::path& path, std::string_view what,
    FileSecrecy secrecy) {
  std::error_code ec;
  std::filesystem::path real = std::filesystem::canonical(path, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) {
      return NotFoundError(std::string(what) + " " + path.string() +
                           " not found");
    }
    return ErrnoError(std::string(what) + " " + path.string(), ec.value());
  }
  std::filesystem::path dir;
  for (const auto& part : real.parent_path()) {
    dir /= part;
    CMKFS_RETURN_IF_ERROR(CheckDirectory(dir, path, what));
  }
  struct stat st {};
  if (::stat(real.c_str(), &st) != 0) {
    return ErrnoError("stat " + real.string(), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(std::string(what) + " " + path.string() +
                                " is not a regular file");
  }
  const bool is_private = secrecy == FileSecrecy::kPrivate;
  const mode_t forbidden = is_private ? 077 : 022;
  if (!OwnerTrusted(st) || (st.st_mode & forbidden) != 0) {
    return InvalidArgumentError(
        std::string(what) + " " + path.string() + " (" + Found(st) +
        ") must be owned by " + Owners() +
        (is_private ? " and not accessible by group or others"
                    : " and not writable by group or others") +
        "; fix it with: chown root " + path.string() + " && chmod " +
        (is_private ? "600 " : "go-w ") + path.string());
  }
  return real;
}

Result<crypto::SecretBytes> ReadFileToSecret(const std::filesystem::path& path,
                                             std::string_view what,
                                             size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return NotFoundError(std::string(what) + " " + path.string() +
                           " not found");
    }
    return ErrnoError("open " + std::string(what) + " " + path.string(), errno);
  }
  // One byte more than the limit tells a file of exactly `limit` bytes from
  // a longer one.
  crypto::SecretBytes buf(limit + 1);
  size_t got = 0;
  int err = 0;
  while (got < buf.size()) {
    ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) err = errno;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  if (err != 0) {
    return ErrnoError("read " + std::string(what) + " " + path.string(), err);
  }
  if (got > limit) {
    return InvalidArgumentError(std::string(what) + " " + path.string() +
                                " is larger than the limit of " +
                                FormatSize(limit) + " (" +
                                std::to_string(limit) + " bytes)");
  }
  return crypto::SecretBytes(buf.data(), got);
}

}  // namespace cmkfs
