// The encryption layer: AES-256-XTS per 4 KiB sector over the volume below.
#include <algorithm>
#include <array>
#include <cstring>

#include "layers.h"

namespace cmkfs::fs {
namespace {

constexpr uint64_t kSector = kVolumeSectorSize;
// Aligned writes go down in pieces of at most this size that do not cross a
// multiple of it, so a layer below with 64 KiB blocks sees whole blocks.
constexpr uint64_t kChunk = 64 * 1024;
constexpr uint64_t kMaxRead = HoleMap::kMaxSectors * kSector;
constexpr size_t kSectorLocks = 64;

// Per-thread scratch: plaintext in secret memory (locked, not dumped, wiped
// at thread exit; every use wipes what it put there), ciphertext beside it,
// 4 KiB-aligned so that direct backing I/O writes it without a bounce.
struct alignas(4096) CipherChunk {
  std::array<uint8_t, kChunk> bytes;
};
struct Scratch {
  crypto::SecretBytes plain_bytes{kChunk};
  std::unique_ptr<CipherChunk> cipher_bytes = std::make_unique<CipherChunk>();
  uint8_t* plain = plain_bytes.data();
  uint8_t* cipher = cipher_bytes->bytes.data();
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

// Holds a key slot's key for one I/O.
class KeyLease {
 public:
  explicit KeyLease(KeySlot& slot) : slot_(slot) {
    auto c = slot_.Acquire();
    if (c.ok()) {
      cipher_ = *c;
    } else {
      status_ = c.status();
    }
  }
  ~KeyLease() {
    if (cipher_) slot_.Release();
  }
  KeyLease(const KeyLease&) = delete;
  KeyLease& operator=(const KeyLease&) = delete;
  const Status& status() const { return status_; }
  const crypto::XtsCipher& cipher() const { return *cipher_; }

 private:
  KeySlot& slot_;
  const crypto::XtsCipher* cipher_ = nullptr;
  Status status_;
};

class EncryptedVolume : public Volume {
 public:
  EncryptedVolume(std::shared_ptr<Volume> lower, std::shared_ptr<KeySlot> key,
                  std::string name)
      : lower_(std::move(lower)),
        key_(std::move(key)),
        name_(std::move(name)) {}

  uint64_t Size() const override { return lower_->Size(); }
  uint64_t alignment() const override { return 1; }

  Status Read(uint64_t offset, std::span<uint8_t> buf,
              HoleMap* holes) override {
    KeyLease lease(*key_);
    CMKFS_RETURN_IF_ERROR(lease.status());
    CMKFS_RETURN_IF_ERROR(
        CheckVolumeRange(name_, "read", offset, buf.size(), Size(), 1));
    if (holes) {
      if (offset % kSector != 0 || buf.size() % kSector != 0 ||
          buf.size() > kMaxRead) {
        return InvalidArgumentError(
            "read of " + name_ + " reporting holes must be sector-aligned " +
            "and at most " + std::to_string(kMaxRead) + " bytes");
      }
      return ReadAligned(lease.cipher(), offset, buf.data(), buf.size(), holes);
    }
    HoleMap local;
    for (uint64_t pos = 0; pos < buf.size();) {
      uint64_t at = offset + pos;
      uint64_t left = buf.size() - pos;
      if (at % kSector != 0 || left < kSector) {
        uint64_t lo = at / kSector * kSector;
        uint64_t n = std::min(left, lo + kSector - at);
        Scratch& s = ThreadScratch();
        crypto::ScopedWipe wipe(s.plain, kSector);
        CMKFS_RETURN_IF_ERROR(
            ReadAligned(lease.cipher(), lo, s.plain, kSector, &local));
        std::memcpy(buf.data() + pos, s.plain + (at - lo), n);
        pos += n;
        continue;
      }
      uint64_t n = std::min(left / kSector * kSector, kMaxRead);
      CMKFS_RETURN_IF_ERROR(
          ReadAligned(lease.cipher(), at, buf.data() + pos, n, &local));
      pos += n;
    }
    return Status::Ok();
  }

  Status Write(uint64_t offset, std::span<const uint8_t> data) override {
    return Store(offset, data.data(), data.size(), /*unmap=*/false);
  }

  Status Zero(uint64_t offset, uint64_t length, bool unmap) override {
    return Store(offset, nullptr, length, unmap);
  }

  Result<BlockRun> BlockStatus(uint64_t offset, uint64_t length) override {
    return lower_->BlockStatus(offset, length);
  }

  Status Flush() override { return lower_->Flush(); }

 private:
  // Sector-aligned, at most kMaxRead: ciphertext into `out`, then the data
  // sectors decrypted in place; hole sectors stay zeros.
  Status ReadAligned(const crypto::XtsCipher& c, uint64_t offset, uint8_t* out,
                     uint64_t n, HoleMap* holes) {
    holes->Clear();
    CMKFS_RETURN_IF_ERROR(lower_->Read(offset, {out, n}, holes));
    const uint64_t first = offset / kSector;
    const size_t count = n / kSector;
    for (size_t i = 0; i < count;) {
      if (holes->hole(i)) {
        ++i;
        continue;
      }
      size_t j = i + 1;
      while (j < count && !holes->hole(j)) ++j;
      CMKFS_RETURN_IF_ERROR(c.DecryptSectors(
          first + i, out + i * kSector, out + i * kSector, (j - i) * kSector));
      i = j;
    }
    return Status::Ok();
  }

  // Write (`data`) or zero (`data` null) [offset, offset + n).
  Status Store(uint64_t offset, const uint8_t* data, uint64_t n, bool unmap) {
    KeyLease lease(*key_);
    CMKFS_RETURN_IF_ERROR(lease.status());
    CMKFS_RETURN_IF_ERROR(
        CheckVolumeRange(name_, data ? "write" : "zero", offset, n, Size(), 1));
    const crypto::XtsCipher& c = lease.cipher();
    for (uint64_t pos = 0; pos < n;) {
      uint64_t at = offset + pos;
      uint64_t left = n - pos;
      const uint8_t* src = data ? data + pos : nullptr;
      if (at % kSector != 0 || left < kSector) {
        uint64_t lo = at / kSector * kSector;
        uint64_t len = std::min(left, lo + kSector - at);
        CMKFS_RETURN_IF_ERROR(MergeSector(c, lo, at - lo, src, len));
        pos += len;
        continue;
      }
      uint64_t aligned = left / kSector * kSector;
      if (!data && unmap) {
        CMKFS_RETURN_IF_ERROR(lower_->Zero(at, aligned, /*unmap=*/true));
        pos += aligned;
        continue;
      }
      uint64_t len = std::min(aligned, kChunk - at % kChunk);
      Scratch& s = ThreadScratch();
      if (data) {
        CMKFS_RETURN_IF_ERROR(
            c.EncryptSectors(at / kSector, src, s.cipher, len));
      } else {
        std::memset(s.plain, 0, len);
        CMKFS_RETURN_IF_ERROR(
            c.EncryptSectors(at / kSector, s.plain, s.cipher, len));
      }
      CMKFS_RETURN_IF_ERROR(lower_->Write(at, {s.cipher, len}));
      pos += len;
    }
    return Status::Ok();
  }

  // Read-modify-write of bytes [eo, eo + n) of the sector at byte `lo`
  // (`src` null: zeros), under the sector's lock.
  Status MergeSector(const crypto::XtsCipher& c, uint64_t lo, uint64_t eo,
                     const uint8_t* src, uint64_t n) {
    MutexLock lock(&sector_locks_[(lo / kSector) % kSectorLocks]);
    Scratch& s = ThreadScratch();
    crypto::ScopedWipe wipe(s.plain, kSector);
    HoleMap holes;
    CMKFS_RETURN_IF_ERROR(lower_->Read(lo, {s.cipher, kSector}, &holes));
    if (holes.hole(0)) {
      std::memset(s.plain, 0, kSector);
    } else {
      CMKFS_RETURN_IF_ERROR(
          c.DecryptSectors(lo / kSector, s.cipher, s.plain, kSector));
    }
    if (src) {
      std::memcpy(s.plain + eo, src, n);
    } else {
      std::memset(s.plain + eo, 0, n);
    }
    CMKFS_RETURN_IF_ERROR(
        c.EncryptSectors(lo / kSector, s.plain, s.cipher, kSector));
    return lower_->Write(lo, {s.cipher, kSector});
  }

  const std::shared_ptr<Volume> lower_;
  const std::shared_ptr<KeySlot> key_;
  const std::string name_;
  std::array<Mutex, kSectorLocks> sector_locks_;
};

}  // namespace

std::unique_ptr<Volume> NewEncryptedVolume(std::shared_ptr<Volume> lower,
                                           std::shared_ptr<KeySlot> key,
                                           std::string name) {
  return std::make_unique<EncryptedVolume>(std::move(lower), std::move(key),
                                           std::move(name));
}

Status EncryptedZeros(KeySlot& key, uint64_t first_sector,
                      std::span<uint8_t> out) {
  KeyLease lease(key);
  CMKFS_RETURN_IF_ERROR(lease.status());
  static const std::array<uint8_t, kChunk> zeros{};
  for (uint64_t pos = 0; pos < out.size(); pos += kChunk) {
    uint64_t len = std::min<uint64_t>(kChunk, out.size() - pos);
    CMKFS_RETURN_IF_ERROR(lease.cipher().EncryptSectors(
        first_sector + pos / kSector, zeros.data(), out.data() + pos, len));
  }
  return Status::Ok();
}

}  // namespace cmkfs::fs
