#include "master_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "cmkfs/file_trust.h"

namespace cmkfs::keystore {
namespace {

constexpr size_t kMaxPassphraseSize = 4096;

std::string OctalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Status CheckPrivateMode(const struct stat& st,
                        const std::filesystem::path& path,
                        std::string_view what) {
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(std::string(what) + " " + path.string() +
                                " is not a regular file");
  }
  if (st.st_mode & 077) {
    return InvalidArgumentError(
        std::string(what) + " " + path.string() + " has mode " +
        OctalMode(st.st_mode) +
        ": it must not be accessible by group or others; fix it with: chmod "
        "600 " +
        path.string());
  }
  return Status::Ok();
}

Status ReadAll(int fd, uint8_t* out, size_t n, size_t* got,
               const std::filesystem::path& path) {
  *got = 0;
  while (*got < n) {
    ssize_t r = ::read(fd, out + *got, n - *got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read " + path.string(), errno);
    }
    if (r == 0) break;
    *got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status WriteAll(int fd, const uint8_t* data, size_t n,
                const std::filesystem::path& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd, data + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write " + path.string(), errno);
    }
    done += static_cast<size_t>(w);
  }
  return Status::Ok();
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Result<crypto::SecretBytes> CreateKeyFile(const std::filesystem::path& path) {
  int raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (raw < 0)
    return ErrnoError("create master key file " + path.string(), errno);
  Fd fd(raw);
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                         crypto::RandomSecret(kMasterKeySize));
  Status s = WriteAll(fd.get(), key.data(), key.size(), path);
  if (s.ok() && ::fsync(fd.get()) != 0)
    s = ErrnoError("fsync " + path.string(), errno);
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  return key;
}

Result<crypto::SecretBytes> LoadMasterKey(const std::filesystem::path& path,
                                          bool create) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (raw < 0 && errno == ENOENT && !create) {
    return NotFoundError("master key file " + path.string() +
                         " does not exist");
  }
  if (raw < 0 && errno == ENOENT) {
    auto created = CreateKeyFile(path);
    if (created.ok() || created.status().kind() != ErrorKind::kIOError) {
      return created;
    }
    // Lost a creation race with another process: read what it wrote.
    raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  }
  if (raw < 0)
    return ErrnoError("open master key file " + path.string(), errno);
  Fd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return ErrnoError("stat " + path.string(), errno);
  }
  CMKFS_RETURN_IF_ERROR(CheckPrivateMode(st, path, "master key file"));
  if (static_cast<size_t>(st.st_size) != kMasterKeySize) {
    return InvalidArgumentError(
        "master key file " + path.string() + " holds " +
        std::to_string(st.st_size) +
        " bytes; a vault master key file holds exactly 32 random bytes");
  }
  crypto::SecretBytes key(kMasterKeySize);
  size_t got = 0;
  CMKFS_RETURN_IF_ERROR(ReadAll(fd.get(), key.data(), key.size(), &got, path));
  if (got != kMasterKeySize) {
    return InvalidArgumentError("master key file " + path.string() +
                                " is shorter than 32 bytes");
  }
  return key;
}

Status FsyncDir(const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? "." : dir;
  int raw = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0) return ErrnoError("open directory " + d.string(), errno);
  Fd fd(raw);
  if (::fsync(fd.get()) != 0) return ErrnoError("fsync " + d.string(), errno);
  return Status::Ok();
}

}  // namespace

Result<crypto::SecretBytes> LoadOrCreateMasterKeyFile(
    const std::filesystem::path& path) {
  return LoadMasterKey(path, true);
}

Result<crypto::SecretBytes> LoadMasterKeyFile(
    const std::filesystem::path& path) {
  return LoadMasterKey(path, false);
}

Status WriteFileAtomically(const std::filesystem::path& path,
                           std::span<const uint8_t> data, bool replace) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  int raw = ::open(tmp.c_str(),
                   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (raw < 0) return ErrnoError("create " + tmp.string(), errno);
  {
    Fd fd(raw);
    Status s = WriteAll(fd.get(), data.data(), data.size(), tmp);
    if (s.ok() && ::fsync(fd.get()) != 0) {
      s = ErrnoError("fsync " + tmp.string(), errno);
    }
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (replace) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoError("rename " + tmp.string() + " to " + path.string(), err);
    }
  } else {
    const int rc = ::link(tmp.c_str(), path.c_str());
    const int err = errno;
    ::unlink(tmp.c_str());
    if (rc != 0 && err == EEXIST) {
      return AlreadyExistsError(path.string() + " already exists");
    }
    if (rc != 0) return ErrnoError("link " + path.string(), err);
  }
  return FsyncDir(path.parent_path());
}

Status RemoveFileDurably(const std::filesystem::path& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoError("remove " + path.string(), errno);
  }
  return FsyncDir(path.parent_path());
}

Result<std::vector<uint8_t>> ReadSmallFile(const std::filesystem::path& path,
                                           size_t max) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (raw < 0 && errno == ENOENT) {
    return NotFoundError(path.string() + " does not exist");
  }
  if (raw < 0) return ErrnoError("open " + path.string(), errno);
  Fd fd(raw);
  std::vector<uint8_t> out(max + 1);
  size_t got = 0;
  CMKFS_RETURN_IF_ERROR(ReadAll(fd.get(), out.data(), out.size(), &got, path));
  if (got > max) {
    return InvalidArgumentError(path.string() + " is larger than " +
                                std::to_string(max) + " bytes");
  }
  out.resize(got);
  return out;
}

Result<crypto::SecretBytes> ReadPassphraseFile(
    const std::filesystem::path& path) {
  CMKFS_ASSIGN_OR_RETURN(
      std::filesystem::path trusted,
      CheckTrustedFile(path, "passphrase file", FileSecrecy::kPrivate));
  CMKFS_ASSIGN_OR_RETURN(
      crypto::SecretBytes buf,
      ReadFileToSecret(trusted, "passphrase file", kMaxPassphraseSize));
  size_t got = buf.size();
  while (got > 0 &&
         (buf.data()[got - 1] == '\n' || buf.data()[got - 1] == '\r')) {
    --got;
  }
  if (got == 0) {
    return InvalidArgumentError("passphrase file " + path.string() +
                                " is empty; write the passphrase into it");
  }
  return crypto::SecretBytes(buf.data(), got);
}

}  // namespace cmkfs::keystore
