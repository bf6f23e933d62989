#include "cmkfs/erase_slots.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "cmkfs/path_guard.h"

namespace cmkfs {
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

Status EraseSlotFile::ScanSlots(
    const std::function<bool(uint64_t slot, bool erased)>& visit,
    uint64_t* count) const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    return ErrnoError("stat " + path_.string(), errno);
  }
  *count = static_cast<uint64_t>(st.st_size) / kSlot;
  // Other records' secrets pass through here: locked memory, wiped when
  // freed.
  crypto::SecretBytes chunk(64 * kSlot);
  for (uint64_t first = 0; first < *count;) {
    size_t got = 0;
    CMKFS_RETURN_IF_ERROR(PreadFull(fd_, chunk.data(), chunk.size(),
                                    static_cast<off_t>(first * kSlot), path_,
                                    &got));
    const size_t n = got / kSlot;
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) {
      if (!visit(first + i, AllZero(chunk.span().subspan(i * kSlot, kSlot)))) {
        return Status::Ok();
      }
    }
    first += n;
  }
  return Status::Ok();
}

Result<uint32_t> EraseSlotFile::Allocate(crypto::SecretBytes* secret) {
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes fresh,
                         crypto::RandomSecret(kSlot));
  MutexLock guard(&mu_);
  ExclusiveFileLock lock(fd_, path_);
  CMKFS_RETURN_IF_ERROR(lock.status());
  std::optional<uint64_t> erased;
  uint64_t count = 0;
  CMKFS_RETURN_IF_ERROR(ScanSlots(
      [&](uint64_t slot, bool is_erased) {
        if (is_erased) erased = slot;
        return !is_erased;
      },
      &count));
  const uint64_t slot = erased.value_or(count);  // else append
  if (slot > UINT32_MAX) {
    return NoSpaceError("erase slot file " + path_.string() +
                        " is full (2^32 slots)");
  }
  CMKFS_RETURN_IF_ERROR(PwriteFull(fd_, fresh.data(), kSlot,
                                   static_cast<off_t>(slot * kSlot), path_));
  *secret = std::move(fresh);
  return static_cast<uint32_t>(slot);
}

Result<std::vector<uint32_t>> EraseSlotFile::UsedSlots() const {
  std::vector<uint32_t> used;
  uint64_t count = 0;
  CMKFS_RETURN_IF_ERROR(ScanSlots(
      [&](uint64_t slot, bool erased) {
        if (!erased && slot <= UINT32_MAX) {
          used.push_back(static_cast<uint32_t>(slot));
        }
        return true;
      },
      &count));
  return used;
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

SlotRef SlotRef::Of(uint32_t slot, const crypto::SecretBytes& secret) {
  static constexpr std::string_view kPrefix = "cmkfs erase slot fingerprint";
  // The hash input holds the secret: locked memory, wiped when freed.
  crypto::SecretBytes in(kPrefix.size() + secret.size());
  std::memcpy(in.data(), kPrefix.data(), kPrefix.size());
  std::memcpy(in.data() + kPrefix.size(), secret.data(), secret.size());
  const std::vector<uint8_t> digest = crypto::Sha256(in.span());
  SlotRef ref;
  ref.slot = slot;
  std::copy_n(digest.begin(), kFingerprintSize, ref.fingerprint.begin());
  return ref;
}

std::vector<uint8_t> SlotRef::Encode(std::string_view magic) const {
  std::vector<uint8_t> out(magic.begin(), magic.end());
  for (int shift = 0; shift < 32; shift += 8) {
    out.push_back(static_cast<uint8_t>(slot >> shift));
  }
  out.insert(out.end(), fingerprint.begin(), fingerprint.end());
  return out;
}

std::optional<SlotRef> SlotRef::Decode(std::string_view magic,
                                       std::span<const uint8_t> sealed) {
  if (magic.size() != 4 || sealed.size() < kEncodedSize ||
      std::memcmp(sealed.data(), magic.data(), 4) != 0) {
    return std::nullopt;
  }
  const uint8_t* p = sealed.data() + 4;
  SlotRef ref;
  ref.slot = uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
             uint32_t{p[3]} << 24;
  std::copy_n(p + 4, kFingerprintSize, ref.fingerprint.begin());
  return ref;
}

Status EraseSlotFile::Erase(const SlotRef& ref) {
  MutexLock guard(&mu_);
  ExclusiveFileLock lock(fd_, path_);
  CMKFS_RETURN_IF_ERROR(lock.status());
  auto secret = Read(ref.slot);
  if (!secret.ok()) {
    return secret.status().kind() == ErrorKind::kNotFound ? Status::Ok()
                                                          : secret.status();
  }
  if (SlotRef::Of(ref.slot, *secret).fingerprint != ref.fingerprint) {
    return Status::Ok();  // erased and reused by another record
  }
  return Erase(ref.slot);
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

}  // namespace cmkfs
