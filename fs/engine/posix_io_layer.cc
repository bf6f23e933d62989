#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "cmkfs/io_layer.h"
#include "cmkfs/path_guard.h"

namespace cmkfs::fs {
namespace {

// O_DIRECT transfers need this alignment of offset, length and memory. 4 KiB
// covers every logical block size Linux block devices report in practice.
constexpr uint64_t kDirectAlign = 4096;
// Misaligned memory is copied through a bounce buffer of at most this size.
constexpr size_t kBounceBytes = 1 << 20;

bool Aligned(uint64_t v) { return v % kDirectAlign == 0; }

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;
uint8_t* ThreadBounceBuffer() {
  thread_local AlignedBuffer b(
      static_cast<uint8_t*>(std::aligned_alloc(kDirectAlign, kBounceBytes)));
  return b.get();
}

class PosixFile : public IoFile {
 public:
  // `fd` is the file's descriptor; with direct I/O it has O_DIRECT and
  // `buffered_fd` is a second, buffered descriptor of the same file for the
  // transfers O_DIRECT cannot do (a range not on 4 KiB boundaries). The
  // kernel keeps the two coherent: a direct transfer writes back and drops
  // the cached pages of its range first.
  PosixFile(int fd, int buffered_fd, std::string path)
      : fd_(fd), buffered_fd_(buffered_fd), path_(std::move(path)) {}
  ~PosixFile() override {
    ::close(fd_);
    if (buffered_fd_ >= 0) ::close(buffered_fd_);
  }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    if (buffered_fd_ < 0) return Pread(fd_, offset, buf);
    if (!Aligned(offset) || !Aligned(buf.size())) {
      return Pread(buffered_fd_, offset, buf);
    }
    if (Aligned(reinterpret_cast<uintptr_t>(buf.data()))) {
      return Pread(fd_, offset, buf);
    }
    uint8_t* bounce = ThreadBounceBuffer();
    if (!bounce)
      return ErrnoError("allocate a read buffer for " + path_, ENOMEM);
    for (size_t done = 0; done < buf.size();) {
      size_t n = std::min(kBounceBytes, buf.size() - done);
      CMKFS_RETURN_IF_ERROR(Pread(fd_, offset + done, {bounce, n}));
      std::memcpy(buf.data() + done, bounce, n);
      done += n;
    }
    return Status::Ok();
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    if (buffered_fd_ < 0) return Pwrite(fd_, offset, data);
    if (!Aligned(offset) || !Aligned(data.size())) {
      return Pwrite(buffered_fd_, offset, data);
    }
    if (Aligned(reinterpret_cast<uintptr_t>(data.data()))) {
      return Pwrite(fd_, offset, data);
    }
    uint8_t* bounce = ThreadBounceBuffer();
    if (!bounce) {
      return ErrnoError("allocate a write buffer for " + path_, ENOMEM);
    }
    for (size_t done = 0; done < data.size();) {
      size_t n = std::min(kBounceBytes, data.size() - done);
      std::memcpy(bounce, data.data() + done, n);
      CMKFS_RETURN_IF_ERROR(Pwrite(fd_, offset + done, {bounce, n}));
      done += n;
    }
    return Status::Ok();
  }

  Status DataSync() override {
    // One inode: this also makes the buffered descriptor's writes durable.
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
  // Bytes past the end of the file read as zeros. A direct read ends short
  // only at the end of the file, which need not be 4 KiB-aligned, so a short
  // read is not retried from its (possibly misaligned) end.
  Status Pread(int fd, uint64_t offset, std::span<uint8_t> buf) {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done,
                          static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("read " + path_, errno);
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
      if (fd == fd_ && buffered_fd_ >= 0) break;
    }
    std::memset(buf.data() + done, 0, buf.size() - done);
    return Status::Ok();
  }

  Status Pwrite(int fd, uint64_t offset, std::span<const uint8_t> data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("write " + path_, errno);
      }
      done += static_cast<size_t>(n);
      if (done < data.size() && fd == fd_ && buffered_fd_ >= 0 &&
          !Aligned(done)) {
        // A short direct write (the disk filled) ends misaligned: finish
        // through the buffered descriptor, which reports NoSpace.
        fd = buffered_fd_;
      }
    }
    return Status::Ok();
  }

  int fd_;
  int buffered_fd_;
  std::string path_;
};

class PosixIoLayer : public IoLayer {
 public:
  explicit PosixIoLayer(PosixIoOptions options) : options_(options) {}

  Result<std::shared_ptr<IoFile>> Open(
      const std::filesystem::path& path) override {
    CMKFS_ASSIGN_OR_RETURN(int fd,
                           path_guard::OpenNoFollow(path, O_RDWR | O_CREAT));
    if (!options_.direct) {
      return std::shared_ptr<IoFile>(std::make_shared<PosixFile>(fd, -1, path));
    }
    // A second descriptor of the file this one names (not the path again: it
    // could have been replaced in between).
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    int direct_fd = ::open(self.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (direct_fd < 0) {
      int err = errno;
      ::close(fd);
      if (err == EINVAL) {
        return InvalidArgumentError(
            "backing_io = \"direct\": the filesystem holding " + path.string() +
            " does not support O_DIRECT (ramfs, or tmpfs before Linux 6.6); "
            "use a disk filesystem such as ext4 or xfs, or "
            "backing_io = \"buffered\"");
      }
      return ErrnoError("open " + path.string() + " with O_DIRECT", err);
    }
    return std::shared_ptr<IoFile>(
        std::make_shared<PosixFile>(direct_fd, fd, path));
  }

 private:
  PosixIoOptions options_;
};

}  // namespace

std::shared_ptr<IoLayer> NewPosixIoLayer(PosixIoOptions options) {
  return std::make_shared<PosixIoLayer>(options);
}
}  // namespace cmkfs::fs
