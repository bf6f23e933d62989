// The one place a resource's volume stack is assembled.
#include "layers.h"

namespace cmkfs::fs {

std::shared_ptr<Volume> AssembleVolume(ExtentMap* map, const VolumeSpec& spec) {
  ThinSpec thin;
  thin.rid = spec.rid;
  thin.name = spec.name;
  thin.size = spec.size;
  thin.fill = [key = spec.key](uint64_t first_sector, std::span<uint8_t> out) {
    return EncryptedZeros(*key, first_sector, out);
  };
  std::shared_ptr<Volume> v = NewThinVolume(map, std::move(thin));
  v = NewEncryptedVolume(std::move(v), spec.key, spec.name);
  if (spec.read_only) v = NewReadOnlyVolume(std::move(v), spec.description);
  return v;
}

}  // namespace cmkfs::fs
