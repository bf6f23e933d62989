#include "support/memory_io_layer.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace cmkfs::fs {
namespace {

constexpr uint64_t kChunk = 64 * 1024;

class MemoryFile : public IoFile {
 public:
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    std::lock_guard lock(mu_);
    size_t done = 0;
    while (done < buf.size()) {
      uint64_t pos = offset + done;
      uint64_t in_chunk = pos % kChunk;
      size_t n = std::min<uint64_t>(kChunk - in_chunk, buf.size() - done);
      auto it = chunks_.find(pos / kChunk);
      if (it == chunks_.end() || pos >= size_) {
        std::memset(buf.data() + done, 0, n);
      } else {
        std::memcpy(buf.data() + done, it->second.get() + in_chunk, n);
      }
      done += n;
    }
    return Status::Ok();
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    std::lock_guard lock(mu_);
    size_t done = 0;
    while (done < data.size()) {
      uint64_t pos = offset + done;
      uint64_t in_chunk = pos % kChunk;
      size_t n = std::min<uint64_t>(kChunk - in_chunk, data.size() - done);
      auto& chunk = chunks_[pos / kChunk];
      if (!chunk) {
        chunk = std::make_unique<uint8_t[]>(kChunk);
        std::memset(chunk.get(), 0, kChunk);
      }
      std::memcpy(chunk.get() + in_chunk, data.data() + done, n);
      done += n;
    }
    size_ = std::max<uint64_t>(size_, offset + data.size());
    return Status::Ok();
  }

  Status DataSync() override { return Status::Ok(); }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    std::lock_guard lock(mu_);
    uint64_t end = offset + length;
    for (uint64_t pos = offset; pos < end;) {
      uint64_t in_chunk = pos % kChunk;
      uint64_t n = std::min<uint64_t>(kChunk - in_chunk, end - pos);
      auto it = chunks_.find(pos / kChunk);
      if (it != chunks_.end()) {
        if (in_chunk == 0 && n == kChunk) {
          chunks_.erase(it);
        } else {
          std::memset(it->second.get() + in_chunk, 0, n);
        }
      }
      pos += n;
    }
    return Status::Ok();
  }

  Result<uint64_t> Size() override {
    std::lock_guard lock(mu_);
    return size_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> chunks_;
  uint64_t size_ = 0;
};

class MemoryIoLayer : public IoLayer {
 public:
  Result<std::shared_ptr<IoFile>> Open(
      const std::filesystem::path& path) override {
    std::lock_guard lock(mu_);
    auto& f = files_[path.lexically_normal().string()];
    if (!f) f = std::make_shared<MemoryFile>();
    return std::shared_ptr<IoFile>(f);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<MemoryFile>> files_;
};

}  // namespace

std::shared_ptr<IoLayer> NewMemoryIoLayer() {
  return std::make_shared<MemoryIoLayer>();
}

}  // namespace cmkfs::fs
