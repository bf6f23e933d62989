#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "cmkfs/io_layer.h"
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

}  // namespace

std::shared_ptr<IoLayer> NewPosixIoLayer() {
  return std::make_shared<PosixIoLayer>();
}
}  // namespace cmkfs::fs
