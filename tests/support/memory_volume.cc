#include "support/memory_volume.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>

#include "cmkfs/mutex.h"

namespace cmkfs::fs {
namespace {

constexpr uint64_t kSector = kVolumeSectorSize;
using Sector = std::array<uint8_t, kSector>;

class MemoryVolume : public Volume {
 public:
  explicit MemoryVolume(uint64_t size) : size_(size) {}

  uint64_t Size() const override { return size_; }
  uint64_t alignment() const override { return 1; }

  Status Read(uint64_t offset, std::span<uint8_t> buf,
              HoleMap* holes) override {
    CMKFS_RETURN_IF_ERROR(CheckVolumeRange("memory volume", "read", offset,
                                           buf.size(), size_,
                                           holes ? kSector : 1));
    if (holes && buf.size() > HoleMap::kMaxSectors * kSector) {
      return InvalidArgumentError("read reporting holes is over 2 MiB");
    }
    MutexLock lock(&mu_);
    for (uint64_t pos = 0; pos < buf.size();) {
      uint64_t at = offset + pos;
      uint64_t in = at % kSector;
      uint64_t n = std::min(kSector - in, buf.size() - pos);
      auto it = sectors_.find(at / kSector);
      if (it == sectors_.end()) {
        std::memset(buf.data() + pos, 0, n);
        if (holes) holes->Set(pos / kSector, 1);
      } else {
        std::memcpy(buf.data() + pos, it->second->data() + in, n);
      }
      pos += n;
    }
    return Status::Ok();
  }

  Status Write(uint64_t offset, std::span<const uint8_t> data) override {
    CMKFS_RETURN_IF_ERROR(CheckVolumeRange("memory volume", "write", offset,
                                           data.size(), size_, 1));
    MutexLock lock(&mu_);
    Store(offset, data.data(), data.size());
    return Status::Ok();
  }

  Status Zero(uint64_t offset, uint64_t length, bool unmap) override {
    CMKFS_RETURN_IF_ERROR(
        CheckVolumeRange("memory volume", "zero", offset, length, size_, 1));
    MutexLock lock(&mu_);
    if (!unmap) {
      Store(offset, nullptr, length);
      return Status::Ok();
    }
    for (uint64_t pos = 0; pos < length;) {
      uint64_t at = offset + pos;
      uint64_t in = at % kSector;
      uint64_t n = std::min(kSector - in, length - pos);
      auto it = sectors_.find(at / kSector);
      if (it != sectors_.end()) {
        if (n == kSector) {
          sectors_.erase(it);
        } else {
          std::memset(it->second->data() + in, 0, n);
        }
      }
      pos += n;
    }
    return Status::Ok();
  }

  Result<BlockRun> BlockStatus(uint64_t offset, uint64_t length) override {
    CMKFS_RETURN_IF_ERROR(CheckVolumeRange("memory volume", "block status",
                                           offset, length, size_, 1));
    if (length == 0) return InvalidArgumentError("block status of 0 bytes");
    MutexLock lock(&mu_);
    const bool data = sectors_.contains(offset / kSector);
    uint64_t end = (offset / kSector + 1) * kSector;
    while (end < offset + length && sectors_.contains(end / kSector) == data) {
      end += kSector;
    }
    return BlockRun{data, std::min(end, offset + length) - offset};
  }

  Status Flush() override { return Status::Ok(); }

 private:
  void Store(uint64_t offset, const uint8_t* data, uint64_t n) REQUIRES(mu_) {
    for (uint64_t pos = 0; pos < n;) {
      uint64_t at = offset + pos;
      uint64_t in = at % kSector;
      uint64_t len = std::min(kSector - in, n - pos);
      auto& sector = sectors_[at / kSector];
      if (!sector) sector = std::make_unique<Sector>();
      if (data) {
        std::memcpy(sector->data() + in, data + pos, len);
      } else {
        std::memset(sector->data() + in, 0, len);
      }
      pos += len;
    }
  }

  const uint64_t size_;
  Mutex mu_;
  std::map<uint64_t, std::unique_ptr<Sector>> sectors_ GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Volume> NewMemoryVolume(uint64_t size) {
  return std::make_unique<MemoryVolume>(size);
}

}  // namespace cmkfs::fs
