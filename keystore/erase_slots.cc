#include "erase_slots.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>

#include "cmkfs/path_guard.h"

namespace cmkfs::keystore {
namespace {

constexpr size_t kSlot = EraseSlotFile::kSecretSize;

Status PreadFull(int fd, uint8_t* out, size_t n, off_t at,
                 const std::filesystem::path& path, size_t* got) {
  *got = 0;
  while (*got < n) {
    ssize_t r = ::pread(fd, out + *got, n - *got, at + *got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError("read " + path.string(), errno);
    if (r == 0) break;
    *got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status PwriteFull(int fd, const uint8_t* data, size_t n, off_t at,
                  const std::filesystem::path& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pwrite(fd, data + done, n - done, at + done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError("write " + path.string(), errno);
    done += static_cast<size_t>(r);
  }
  if (::fdatasync(fd) != 0) {
    return ErrnoError("fdatasync " + path.string(), errno);
  }
  return Status::Ok();
}

bool AllZero(std::span<const uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(),
                     [](uint8_t b) { return b == 0; });
}

// Holds flock(LOCK_EX) on the file for one scope.
class ExclusiveFileLock {
 public:
  ExclusiveFileLock(int fd, const std::filesystem::path& path) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      status_ = ErrnoError("flock " + path.string(), errno);
      return;
    }
    locked_ = true;
  }
  ~ExclusiveFileLock() {
    if (locked_) ::flock(fd_, LOCK_UN);
  }
  const Status& status() const { return status_; }

 private:
  const int fd_;
  bool locked_ = false;
  Status status_;
};

}  // namespace

Result<std::unique_ptr<EraseSlotFile>> EraseSlotFile::Open(
    const std::filesystem::path& path) {
  CMKFS_ASSIGN_OR_RETURN(
      int fd, path_guard::OpenNoFollow(path, O_RDWR | O_CREAT, 0600,
                                       path_guard::Access::kOwnerOnly));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = ErrnoError("stat " + path.string(), errno);
    ::close(fd);
    return s;
  }
  if (st.st_size % kSlot != 0) {
    ::close(fd);
    return CorruptionError("erase slot file " + path.string() + " has " +
                           std::to_string(st.st_size) +
                           " bytes, not a whole number of " +
                           std::to_string(kSlot) + "-byte slots");
  }
  return std::unique_ptr<EraseSlotFile>(new EraseSlotFile(path, fd));
}

EraseSlotFile::~EraseSlotFile() { ::close(fd_); }

Result<uint32_t> EraseSlotFile::Allocate(crypto::SecretBytes* secret) {
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes fresh,
                         crypto::RandomSecret(kSlot));
  ExclusiveFileLock lock(fd_, path_);
  CMKFS_RETURN_IF_ERROR(lock.status());
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    return ErrnoError("stat " + path_.string(), errno);
  }
  const uint64_t slots = static_cast<uint64_t>(st.st_size) / kSlot;
  uint64_t slot = slots;  // append unless an erased slot is found
  // Other keys' secrets pass through here: locked memory, wiped when freed.
  crypto::SecretBytes chunk(64 * kSlot);
  for (uint64_t first = 0; first < slots && slot == slots;) {
    size_t got = 0;
    CMKFS_RETURN_IF_ERROR(PreadFull(fd_, chunk.data(), chunk.size(),
                                    static_cast<off_t>(first * kSlot), path_,
                                    &got));
    const size_t n = got / kSlot;
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) {
      if (AllZero(chunk.span().subspan(i * kSlot, kSlot))) {
        slot = first + i;
        break;
      }
    }
    first += n;
  }
  if (slot > UINT32_MAX) {
    return NoSpaceError("erase slot file " + path_.string() +
                        " is full (2^32 slots)");
  }
  CMKFS_RETURN_IF_ERROR(PwriteFull(fd_, fresh.data(), kSlot,
                                   static_cast<off_t>(slot * kSlot), path_));
  *secret = std::move(fresh);
  return static_cast<uint32_t>(slot);
}

Result<crypto::SecretBytes> EraseSlotFile::Read(uint32_t slot) const {
  crypto::SecretBytes out(kSlot);
  size_t got = 0;
  CMKFS_RETURN_IF_ERROR(PreadFull(fd_, out.data(), kSlot,
                                  static_cast<off_t>(uint64_t{slot} * kSlot),
                                  path_, &got));
  if (got != kSlot || AllZero(out.span())) {
    return NotFoundError("erase slot " + std::to_string(slot) + " of " +
                         path_.string() + " is erased");
  }
  return out;
}

Status EraseSlotFile::Erase(uint32_t slot) {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    return ErrnoError("stat " + path_.string(), errno);
  }
  const uint64_t at = uint64_t{slot} * kSlot;
  if (at + kSlot > static_cast<uint64_t>(st.st_size)) return Status::Ok();
  const std::array<uint8_t, kSlot> zeros{};
  return PwriteFull(fd_, zeros.data(), kSlot, static_cast<off_t>(at), path_);
}

}  // namespace cmkfs::keystore
