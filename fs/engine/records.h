// Metadata records of the disk engine (docs/format.md describes the
// layout). Encoding is total; decoding never trusts its input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/status.h"
#include "extent_records.h"

namespace cmkfs::fs {

constexpr uint8_t kFormatVersion = 1;

struct ResourceRecord {
  uint64_t rid = 0;
  ResourceKind kind = ResourceKind::kDisk;
  std::string name;
  uint64_t size = 0;
  DiskSku sku = DiskSku::kPremiumLrs;
  EncryptionType encryption = EncryptionType::kPlatform;
  std::string des;
  std::string key_id;    // with version: the one that wraps `wrapped_dek`
  std::string identity;  // keystore caller that unwraps ("" = vault admin)
  std::vector<uint8_t> wrapped_dek;
  std::string uuid;     // wrap label is "cmkfs-dek:" + uuid
  std::string lineage;  // shared by every clone of one DEK
  std::string source;   // "disks/NAME", ... or empty
  Scope scope;
  bool guest_encrypted = false;
  int64_t created = 0;  // unix seconds
  ResourceState state = ResourceState::kActive;
  std::string seal_reason;
};

struct DesRecord {
  std::string name;
  std::string key_id;  // with version
  bool auto_rotate = false;
  std::string identity;
  Scope scope;
  int64_t created = 0;
  std::optional<int64_t> last_rotation;
  std::string rotation_error;
  std::string previous_key_id;  // empty: none
  std::string rotation_target;  // non-empty: a re-wrap is in progress
};

// meta/"format": the on-disk format version and extent geometry.
struct FormatRecord {
  uint8_t version = kFormatVersion;
  uint32_t extent_size = kExtentSize;
  uint32_t sector_size = kSectorBytes;
};
std::string EncodeFormatRecord(const FormatRecord& f);
// NotSupported for a version this build does not read; Corruption for a
// malformed record or a geometry other than kExtentSize/kSectorBytes.
Result<FormatRecord> DecodeFormatRecord(std::string_view data);

std::string EncodeResource(const ResourceRecord& r);
Result<ResourceRecord> DecodeResource(std::string_view data);
std::string EncodeDes(const DesRecord& d);
Result<DesRecord> DecodeDes(std::string_view data);

// Key in the "resources" database: one kind byte ('d', 's', 'i') + name.
std::string ResourceKey(ResourceKind kind, std::string_view name);

// InvalidArgument unless `name` matches [A-Za-z0-9][A-Za-z0-9._-]{0,79}.
Status ValidateName(std::string_view what, std::string_view name);

}  // namespace cmkfs::fs
