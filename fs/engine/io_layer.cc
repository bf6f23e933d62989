#include "io_layer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "cmkfs/path_guard.h"

namespace cmkfs::fs {
namespace {

class PosixFile : public IoFile {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::pread(fd_, buf.data() + done, buf.size() - done,
                          static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("read " + path_, errno);
      }
      if (n == 0) {
        std::memset(buf.data() + done, 0, buf.size() - done);
        break;
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("write " + path_, errno);
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Status DataSync() override {
    if (::fdatasync(fd_) != 0) return ErrnoError("fdatasync " + path_, errno);
    return Status::Ok();
  }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0) {
      return Status::Ok();
    }
    if (errno != EOPNOTSUPP) return ErrnoError("punch hole " + path_, errno);
    // Filesystems without hole punching: zeros keep the contract.
    std::vector<uint8_t> zeros(std::min<uint64_t>(length, 1 << 20), 0);
    for (uint64_t done = 0; done < length;) {
      uint64_t n = std::min<uint64_t>(zeros.size(), length - done);
      CMKFS_RETURN_IF_ERROR(WriteAt(offset + done, {zeros.data(), n}));
      done += n;
    }
    return Status::Ok();
  }

  Result<uint64_t> Size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return ErrnoError("stat " + path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  int fd_;
  std::string path_;
};

class PosixIoLayer : public IoLayer {
 public:
  Result<std::shared_ptr<IoFile>> Open(
      const std::filesystem::path& path) override {
    CMKFS_ASSIGN_OR_RETURN(int fd,
                           path_guard::OpenNoFollow(path, O_RDWR | O_CREAT));
    return std::shared_ptr<IoFile>(std::make_shared<PosixFile>(fd, path));
  }
};

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

std::shared_ptr<IoLayer> NewPosixIoLayer() {
  return std::make_shared<PosixIoLayer>();
}
std::shared_ptr<IoLayer> NewMemoryIoLayer() {
  return std::make_shared<MemoryIoLayer>();
}

// --- fault injection ---------------------------------------------------------

class FaultInjectingIoLayer::File : public IoFile {
 public:
  File(FaultInjectingIoLayer* layer, std::shared_ptr<IoFile> base)
      : layer_(layer), base_(std::move(base)) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    std::chrono::milliseconds delay;
    {
      std::lock_guard lock(layer_->mu_);
      if (layer_->crashed_) return IOError("simulated crash: read refused");
      delay = layer_->read_delay_;
    }
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    return base_->ReadAt(offset, buf);
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    std::lock_guard lock(layer_->mu_);
    CMKFS_RETURN_IF_ERROR(layer_->MaybeFail("write"));
    CMKFS_RETURN_IF_ERROR(SaveUndo(offset, data.size()));
    return base_->WriteAt(offset, data);
  }

  Status DataSync() override {
    std::lock_guard lock(layer_->mu_);
    CMKFS_RETURN_IF_ERROR(layer_->MaybeFail("fdatasync"));
    CMKFS_RETURN_IF_ERROR(base_->DataSync());
    undo_.clear();
    return Status::Ok();
  }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    std::lock_guard lock(layer_->mu_);
    if (layer_->crashed_) return IOError("simulated crash: punch refused");
    CMKFS_RETURN_IF_ERROR(SaveUndo(offset, length));
    return base_->PunchHole(offset, length);
  }

  Result<uint64_t> Size() override { return base_->Size(); }

  // Called with layer_->mu_ held.
  void DropUnsynced() {
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
      base_->WriteAt(it->offset, it->old).IgnoreError();
    }
    undo_.clear();
  }
  size_t unsynced() const { return undo_.size(); }

 private:
  struct Undo {
    uint64_t offset;
    std::vector<uint8_t> old;
  };
  Status SaveUndo(uint64_t offset, uint64_t length) {
    Undo u{offset, std::vector<uint8_t>(length)};
    CMKFS_RETURN_IF_ERROR(base_->ReadAt(offset, u.old));
    undo_.push_back(std::move(u));
    return Status::Ok();
  }

  FaultInjectingIoLayer* layer_;
  std::shared_ptr<IoFile> base_;
  std::vector<Undo> undo_;
};

FaultInjectingIoLayer::FaultInjectingIoLayer(std::shared_ptr<IoLayer> base)
    : base_(std::move(base)) {}
FaultInjectingIoLayer::~FaultInjectingIoLayer() = default;

Result<std::shared_ptr<IoFile>> FaultInjectingIoLayer::Open(
    const std::filesystem::path& path) {
  std::lock_guard lock(mu_);
  if (crashed_) return IOError("simulated crash: open refused");
  auto key = path.lexically_normal().string();
  auto it = files_.find(key);
  if (it != files_.end()) return std::shared_ptr<IoFile>(it->second);
  CMKFS_ASSIGN_OR_RETURN(auto base_file, base_->Open(path));
  auto f = std::make_shared<File>(this, std::move(base_file));
  files_[key] = f;
  return std::shared_ptr<IoFile>(f);
}

void FaultInjectingIoLayer::Crash() {
  std::lock_guard lock(mu_);
  for (auto& [path, f] : files_) f->DropUnsynced();
  crashed_ = true;
}

void FaultInjectingIoLayer::Recover() {
  std::lock_guard lock(mu_);
  crashed_ = false;
  fail_countdown_ = 0;
  fail_probability_ = 0;
}

void FaultInjectingIoLayer::FailNthWrite(uint64_t n) {
  std::lock_guard lock(mu_);
  fail_countdown_ = n;
}

void FaultInjectingIoLayer::FailWritesRandomly(double p, uint64_t seed) {
  std::lock_guard lock(mu_);
  fail_probability_ = p;
  rng_.seed(seed);
}

void FaultInjectingIoLayer::DelayReads(std::chrono::milliseconds delay) {
  std::lock_guard lock(mu_);
  read_delay_ = delay;
}

void FaultInjectingIoLayer::FailWithNoSpace(bool no_space) {
  std::lock_guard lock(mu_);
  fail_no_space_ = no_space;
}

uint64_t FaultInjectingIoLayer::failed_writes() const {
  std::lock_guard lock(mu_);
  return failed_;
}

uint64_t FaultInjectingIoLayer::unsynced_writes() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [path, f] : files_) n += f->unsynced();
  return n;
}

Status FaultInjectingIoLayer::MaybeFail(const char* what) {
  if (crashed_) {
    return IOError(std::string("simulated crash: ") + what + " refused");
  }
  bool fail = false;
  if (fail_countdown_ > 0 && --fail_countdown_ == 0) fail = true;
  if (!fail && fail_probability_ > 0) {
    fail =
        std::uniform_real_distribution<double>(0, 1)(rng_) < fail_probability_;
  }
  if (!fail) return Status::Ok();
  ++failed_;
  if (fail_no_space_) {
    return NoSpaceError(std::string("injected ") + what +
                        " failure: No space left on device");
  }
  return IOError(std::string("injected ") + what + " failure");
}

}  // namespace cmkfs::fs
