#include "records.h"

#include "cmkfs/record.h"

namespace cmkfs::fs {

std::string_view ResourceKindName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kDisk:
      return "disk";
    case ResourceKind::kSnapshot:
      return "snapshot";
    case ResourceKind::kImage:
      return "image";
  }
  return "disk";
}

std::string_view ResourceDirName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kDisk:
      return "disks";
    case ResourceKind::kSnapshot:
      return "snapshots";
    case ResourceKind::kImage:
      return "images";
  }
  return "disks";
}

std::string_view DiskSkuName(DiskSku sku) {
  switch (sku) {
    case DiskSku::kPremiumLrs:
      return "Premium_LRS";
    case DiskSku::kStandardSsdLrs:
      return "StandardSSD_LRS";
    case DiskSku::kStandardLrs:
      return "Standard_LRS";
    case DiskSku::kUltraSsdLrs:
      return "UltraSSD_LRS";
  }
  return "Premium_LRS";
}

Result<DiskSku> ParseDiskSku(std::string_view text) {
  for (DiskSku s : {DiskSku::kPremiumLrs, DiskSku::kStandardSsdLrs,
                    DiskSku::kStandardLrs, DiskSku::kUltraSsdLrs}) {
    if (text == DiskSkuName(s)) return s;
  }
  return InvalidArgumentError(
      "unknown disk SKU '" + std::string(text) +
      "'; accepted: Premium_LRS, StandardSSD_LRS, Standard_LRS, UltraSSD_LRS");
}

std::string_view EncryptionTypeName(EncryptionType e) {
  return e == EncryptionType::kCustomer ? "customer" : "platform";
}

namespace {
constexpr uint8_t kResourceVersion = 1;
constexpr uint8_t kDesVersion = 1;

char KindByte(ResourceKind k) {
  switch (k) {
    case ResourceKind::kDisk:
      return 'd';
    case ResourceKind::kSnapshot:
      return 's';
    case ResourceKind::kImage:
      return 'i';
  }
  return 'd';
}
}  // namespace

std::string ResourceKey(ResourceKind kind, std::string_view name) {
  std::string k(1, KindByte(kind));
  k.append(name);
  return k;
}

std::string EncodeResource(const ResourceRecord& r) {
  RecordWriter w(kResourceVersion);
  w.U64(r.rid)
      .U8(static_cast<uint8_t>(r.kind))
      .Str(r.name)
      .U64(r.size)
      .U8(static_cast<uint8_t>(r.sku))
      .U8(static_cast<uint8_t>(r.encryption))
      .Str(r.des)
      .Str(r.key_id)
      .Str(r.identity)
      .Bytes(r.wrapped_dek)
      .Str(r.uuid)
      .Str(r.lineage)
      .Str(r.source)
      .Str(r.scope.subscription)
      .Str(r.scope.resource_group)
      .Str(r.scope.region)
      .Bool(r.guest_encrypted)
      .I64(r.created)
      .U8(static_cast<uint8_t>(r.state))
      .Str(r.seal_reason);
  return w.Take();
}

Result<ResourceRecord> DecodeResource(std::string_view data) {
  RecordReader rd(data, "resource record");
  ResourceRecord r;
  uint8_t ver = 0, kind = 0, sku = 0, enc = 0, state = 0;
  CMKFS_RETURN_IF_ERROR(rd.Version(1, kResourceVersion, &ver));
  CMKFS_RETURN_IF_ERROR(rd.U64(&r.rid));
  CMKFS_RETURN_IF_ERROR(rd.U8(&kind));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.name));
  CMKFS_RETURN_IF_ERROR(rd.U64(&r.size));
  CMKFS_RETURN_IF_ERROR(rd.U8(&sku));
  CMKFS_RETURN_IF_ERROR(rd.U8(&enc));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.des));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.key_id));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.identity));
  CMKFS_RETURN_IF_ERROR(rd.Bytes(&r.wrapped_dek));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.uuid));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.lineage));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.source));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.scope.subscription));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.scope.resource_group));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.scope.region));
  CMKFS_RETURN_IF_ERROR(rd.Bool(&r.guest_encrypted));
  CMKFS_RETURN_IF_ERROR(rd.I64(&r.created));
  CMKFS_RETURN_IF_ERROR(rd.U8(&state));
  CMKFS_RETURN_IF_ERROR(rd.Str(&r.seal_reason));
  CMKFS_RETURN_IF_ERROR(rd.Done());
  if (kind > 2 || sku > 3 || enc > 1 || state > 1) {
    return CorruptionError("resource record '" + r.name +
                           "' has an out-of-range enum field");
  }
  r.kind = static_cast<ResourceKind>(kind);
  r.sku = static_cast<DiskSku>(sku);
  r.encryption = static_cast<EncryptionType>(enc);
  r.state = static_cast<ResourceState>(state);
  return r;
}

std::string EncodeDes(const DesRecord& d) {
  RecordWriter w(kDesVersion);
  w.Str(d.name)
      .Str(d.key_id)
      .Bool(d.auto_rotate)
      .Str(d.identity)
      .Str(d.scope.subscription)
      .Str(d.scope.resource_group)
      .Str(d.scope.region)
      .I64(d.created)
      .Bool(d.last_rotation.has_value())
      .I64(d.last_rotation.value_or(0))
      .Str(d.rotation_error)
      .Str(d.previous_key_id)
      .Str(d.rotation_target);
  return w.Take();
}

std::string EncodeFormatRecord(const FormatRecord& f) {
  return RecordWriter(f.version).U32(f.extent_size).U32(f.sector_size).Take();
}

Result<FormatRecord> DecodeFormatRecord(std::string_view data) {
  if (data.empty()) return CorruptionError("engine format record is empty");
  const auto version = static_cast<uint8_t>(data[0]);
  if (version < 1 || version > kFormatVersion) {
    return NotSupportedError("engine format version " +
                             std::to_string(version) +
                             " is not supported; this build reads version " +
                             std::to_string(kFormatVersion));
  }
  RecordReader rd(data, "engine format record");
  FormatRecord f;
  CMKFS_RETURN_IF_ERROR(rd.Version(1, kFormatVersion, &f.version));
  CMKFS_RETURN_IF_ERROR(rd.U32(&f.extent_size));
  CMKFS_RETURN_IF_ERROR(rd.U32(&f.sector_size));
  CMKFS_RETURN_IF_ERROR(rd.Done());
  if (f.extent_size != kExtentSize || f.sector_size != kSectorBytes) {
    return CorruptionError(
        "engine format record: extents of " + std::to_string(f.extent_size) +
        " bytes in sectors of " + std::to_string(f.sector_size) +
        " bytes; this build uses " + std::to_string(kExtentSize) + " and " +
        std::to_string(kSectorBytes));
  }
  return f;
}

Result<DesRecord> DecodeDes(std::string_view data) {
  RecordReader rd(data, "disk encryption set record");
  DesRecord d;
  uint8_t ver = 0;
  bool has_rot = false;
  int64_t rot = 0;
  CMKFS_RETURN_IF_ERROR(rd.Version(1, kDesVersion, &ver));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.name));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.key_id));
  CMKFS_RETURN_IF_ERROR(rd.Bool(&d.auto_rotate));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.identity));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.scope.subscription));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.scope.resource_group));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.scope.region));
  CMKFS_RETURN_IF_ERROR(rd.I64(&d.created));
  CMKFS_RETURN_IF_ERROR(rd.Bool(&has_rot));
  CMKFS_RETURN_IF_ERROR(rd.I64(&rot));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.rotation_error));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.previous_key_id));
  CMKFS_RETURN_IF_ERROR(rd.Str(&d.rotation_target));
  CMKFS_RETURN_IF_ERROR(rd.Done());
  if (has_rot) d.last_rotation = rot;
  return d;
}

Status ValidateName(std::string_view what, std::string_view name) {
  auto bad = [&] {
    return InvalidArgumentError(
        "invalid " + std::string(what) + " name '" + std::string(name) +
        "': use 1-80 characters [A-Za-z0-9._-], starting with a letter or "
        "digit");
  };
  if (name.empty() || name.size() > 80) return bad();
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return bad();
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return bad();
  }
  return Status::Ok();
}

}  // namespace cmkfs::fs
