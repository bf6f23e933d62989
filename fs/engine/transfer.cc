// Import and export of raw disk images.
#include "transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "cmkfs/config.h"
#include "cmkfs/crypto.h"
#include "cmkfs/path_guard.h"
#include "records.h"

namespace cmkfs::fs {
namespace {

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}
bool Cancelled(const Progress& p) {
  return p.cancel && p.cancel->load(std::memory_order_relaxed);
}
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

ImportSource::~ImportSource() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<ImportSource>> ImportSource::Open(
    const std::filesystem::path& file, uint64_t max_disk_size, DiskSpec* spec) {
  Fd in;
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
  // below); it changes nothing for a regular file.
  in.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (in.fd < 0) {
    if (errno == ENOENT)
      return NotFoundError("file " + file.string() + " not found");
    return ErrnoError("open " + file.string(), errno);
  }
  struct stat st {};
  if (::fstat(in.fd, &st) != 0)
    return ErrnoError("stat " + file.string(), errno);
  if (!S_ISREG(st.st_mode)) {
    const char* what = S_ISFIFO(st.st_mode)   ? "a FIFO"
                       : S_ISDIR(st.st_mode)  ? "a directory"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    return InvalidArgumentError("cannot import " + file.string() + ": it is " +
                                what +
                                "; only a regular file (a raw disk image) "
                                "can be imported");
  }
  uint64_t fsize = static_cast<uint64_t>(st.st_size);
  if (fsize > max_disk_size) {
    return InvalidArgumentError(
        "file " + file.string() + " (" + std::to_string(fsize) +
        " bytes) is larger than the largest disk, " +
        std::to_string(max_disk_size) + " bytes (" + FormatSize(max_disk_size) +
        ", [limits] max_disk_size)");
  }
  if (spec->size == 0)
    spec->size = (fsize + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  if (spec->size < fsize) {
    return InvalidArgumentError("disk size " + std::to_string(spec->size) +
                                " is smaller than the file " + file.string() +
                                " (" + std::to_string(fsize) + " bytes)");
  }
  if (spec->size == 0) spec->size = kSectorBytes;
  std::unique_ptr<ImportSource> src(new ImportSource(file, in.fd, fsize));
  in.fd = -1;
  return src;
}

Status ImportSource::CopyTo(DiskHandle& h, const Progress& progress) const {
  const uint64_t fsize = size_;
  const std::filesystem::path& file = file_;
  crypto::SecretBytes buf(1 << 20);  // plaintext: locked, wiped
  uint64_t off = 0;
  while (off < fsize) {
    if (Cancelled(progress)) {
      return CancelledError("import of " + file.string() + " cancelled");
    }
    off_t data = ::lseek(fd_, static_cast<off_t>(off), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return ErrnoError("seek " + file.string(), errno);
    }
    off_t hole = ::lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) return ErrnoError("seek " + file.string(), errno);
    uint64_t start = static_cast<uint64_t>(data) / kExtentSize * kExtentSize;
    uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), fsize);
    for (uint64_t pos = start; pos < end;) {
      if (Cancelled(progress)) {
        return CancelledError("import of " + file.string() + " cancelled");
      }
      uint64_t want = std::min<uint64_t>(buf.size(), fsize - pos);
      ssize_t n = ::pread(fd_, buf.data(), want, static_cast<off_t>(pos));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("read " + file.string(), errno);
      }
      if (n == 0) break;
      uint64_t got = static_cast<uint64_t>(n);
      // Pad the tail to a sector.
      uint64_t padded = (got + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
      std::memset(buf.data() + got, 0, padded - got);
      for (uint64_t p = 0; p < padded; p += kExtentSize) {
        uint64_t len = std::min<uint64_t>(kExtentSize, padded - p);
        if (AllZero(buf.data() + p, len)) continue;
        CMKFS_ASSIGN_OR_RETURN(size_t w,
                               h.Write(pos + p, {buf.data() + p, len}));
        (void)w;
      }
      pos += got;
      if (progress.on_progress) progress.on_progress(pos, fsize);
    }
    off = std::max<uint64_t>(end, off + 1);
  }
  CMKFS_RETURN_IF_ERROR(h.Sync());
  if (progress.on_progress) progress.on_progress(fsize, fsize);
  return Status::Ok();
}

Status ExportTo(DiskHandle& h, const std::filesystem::path& file,
                const Progress& progress) {
  Fd out;
  // 0600 whatever the umask; never through a symbolic link.
  auto created =
      path_guard::OpenNoFollow(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!created.ok()) {
    if (created.status().kind() == ErrorKind::kAlreadyExists) {
      return AlreadyExistsError("file " + file.string() +
                                " already exists; choose a new file name");
    }
    return created.status().WithContext("create " + file.string());
  }
  out.fd = *created;
  Status st = [&]() -> Status {
    uint64_t size = h.size();
    if (::ftruncate(out.fd, static_cast<off_t>(size)) != 0) {
      return ErrnoError("truncate " + file.string(), errno);
    }
    crypto::SecretBytes buf(1 << 20);  // plaintext: locked, wiped
    uint64_t off = 0;
    while (off < size) {
      auto data = h.SeekData(off);
      if (!data.ok()) {
        if (data.status().kind() == ErrorKind::kNotFound) break;
        return data.status();
      }
      CMKFS_ASSIGN_OR_RETURN(uint64_t hole, h.SeekHole(*data));
      for (uint64_t pos = *data; pos < hole;) {
        if (Cancelled(progress)) {
          return CancelledError("export to " + file.string() + " cancelled");
        }
        uint64_t want = std::min<uint64_t>(buf.size(), hole - pos);
        CMKFS_ASSIGN_OR_RETURN(size_t n, h.Read(pos, {buf.data(), want}));
        for (uint64_t p = 0; p < n; p += kExtentSize) {
          uint64_t len = std::min<uint64_t>(kExtentSize, n - p);
          if (AllZero(buf.data() + p, len)) continue;
          const uint8_t* src = buf.data() + p;
          for (uint64_t done = 0; done < len;) {
            ssize_t w = ::pwrite(out.fd, src + done, len - done,
                                 static_cast<off_t>(pos + p + done));
            if (w < 0) {
              if (errno == EINTR) continue;
              return ErrnoError("write " + file.string(), errno);
            }
            done += static_cast<uint64_t>(w);
          }
        }
        pos += n;
        if (progress.on_progress) progress.on_progress(pos, size);
        if (n == 0) break;
      }
      off = hole;
    }
    if (::fdatasync(out.fd) != 0)
      return ErrnoError("sync " + file.string(), errno);
    if (progress.on_progress) progress.on_progress(size, size);
    return Status::Ok();
  }();
  if (!st.ok()) ::unlink(file.c_str());
  return st;
}

}  // namespace cmkfs::fs
