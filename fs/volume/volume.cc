#include "cmkfs/volume.h"

#include <string>

namespace cmkfs::fs {

Status CheckVolumeRange(std::string_view name, std::string_view what,
                        uint64_t offset, uint64_t length, uint64_t size,
                        uint64_t alignment) {
  if (offset > size || length > size - offset) {
    return OutOfRangeError(std::string(what) + " of " + std::to_string(length) +
                           " bytes at offset " + std::to_string(offset) +
                           " goes past the end of " + std::string(name) + " (" +
                           std::to_string(size) + " bytes)");
  }
  if (offset % alignment != 0 || length % alignment != 0) {
    return InvalidArgumentError(
        std::string(what) + " of " + std::to_string(length) +
        " bytes at offset " + std::to_string(offset) + " of " +
        std::string(name) + " is not aligned: offset and length must be " +
        "multiples of " + std::to_string(alignment) + " bytes");
  }
  return Status::Ok();
}

Result<std::optional<uint64_t>> FindBlockRun(Volume& volume, uint64_t offset,
                                             uint64_t end, bool data) {
  for (uint64_t pos = offset; pos < end;) {
    CMKFS_ASSIGN_OR_RETURN(BlockRun run, volume.BlockStatus(pos, end - pos));
    if (run.data == data) return std::optional<uint64_t>(pos);
    pos += run.length;
  }
  return std::optional<uint64_t>();
}

}  // namespace cmkfs::fs
