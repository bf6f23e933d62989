// Import and export of raw disk images: the copy between a file and an open
// disk, skipping holes and all-zero extents both ways. Written against
// DiskHandle only; the engine creates (and on failure deletes) the disk.
#pragma once

#include <cstdint>
#include <filesystem>

#include "cmkfs/engine.h"
#include "cmkfs/status.h"

namespace cmkfs::fs {

// A raw image opened for import. Owns its descriptor (closed on
// destruction). Not thread-safe.
class ImportSource {
 public:
  ImportSource(const ImportSource&) = delete;
  ImportSource& operator=(const ImportSource&) = delete;
  ~ImportSource();

  // Opens `file` (a regular file; a FIFO is refused without waiting for a
  // writer) and settles the size of the disk to create in spec->size: the
  // file's size rounded up to 4096 bytes when 0. NotFound; InvalidArgument
  // (naming what is accepted) for a file that is not regular, larger than
  // `max_disk_size`, or larger than spec->size; IOError.
  static Result<std::unique_ptr<ImportSource>> Open(
      const std::filesystem::path& file, uint64_t max_disk_size,
      DiskSpec* spec);

  uint64_t size() const { return size_; }
  // Writes the file's data ranges into `disk` (which is at least size()
  // bytes), then syncs it. Cancelled when progress.cancel is set; the
  // disk's errors; IOError reading the file.
  Status CopyTo(DiskHandle& disk, const Progress& progress) const;

 private:
  ImportSource(std::filesystem::path file, int fd, uint64_t size)
      : file_(std::move(file)), fd_(fd), size_(size) {}
  std::filesystem::path file_;
  int fd_;
  uint64_t size_;
};

// Decrypts `disk` into `file`, created 0600 (never through a symbolic
// link), sparse where the disk has holes or zero extents, fdatasync'd.
// AlreadyExists if the file exists; Cancelled; the disk's errors, IOError.
// On any error the file is removed.
Status ExportTo(DiskHandle& disk, const std::filesystem::path& file,
                const Progress& progress);

}  // namespace cmkfs::fs
