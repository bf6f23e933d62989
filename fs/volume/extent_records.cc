#include "extent_records.h"

#include "cmkfs/record.h"

namespace cmkfs::fs {

std::string MapKey(uint64_t rid, uint64_t idx) {
  return EncodeU64Key(rid) + EncodeU64Key(idx);
}

std::string EncodeSlot(uint64_t slot) { return EncodeU64Key(slot); }

Result<uint64_t> DecodeSlot(std::string_view v) {
  if (v.size() != 8) return CorruptionError("extent map value is not 8 bytes");
  return DecodeU64Key(v);
}

std::string EncodeCount(uint64_t n) { return RecordWriter(1).U64(n).Take(); }

Result<uint64_t> DecodeCount(std::string_view v, std::string_view what) {
  RecordReader r(v, what);
  uint8_t ver = 0;
  uint64_t n = 0;
  CMKFS_RETURN_IF_ERROR(r.Version(1, 1, &ver));
  CMKFS_RETURN_IF_ERROR(r.U64(&n));
  CMKFS_RETURN_IF_ERROR(r.Done());
  return n;
}

}  // namespace cmkfs::fs
