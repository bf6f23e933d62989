#include "records.h"

#include <chrono>

#include "cmkfs/record.h"

namespace cmkfs::keystore {
namespace {

constexpr uint8_t kRecordVersion = 1;

int64_t ToSeconds(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint FromSeconds(int64_t s) { return TimePoint(std::chrono::seconds(s)); }

void PutOptTime(RecordWriter& w, const std::optional<TimePoint>& t) {
  w.Bool(t.has_value()).I64(t ? ToSeconds(*t) : 0);
}
Status GetOptTime(RecordReader& r, std::optional<TimePoint>* t) {
  bool has = false;
  int64_t s = 0;
  CMKFS_RETURN_IF_ERROR(r.Bool(&has));
  CMKFS_RETURN_IF_ERROR(r.I64(&s));
  if (has) {
    *t = FromSeconds(s);
  } else {
    t->reset();
  }
  return Status::Ok();
}
Status GetTime(RecordReader& r, TimePoint* t) {
  int64_t s = 0;
  CMKFS_RETURN_IF_ERROR(r.I64(&s));
  *t = FromSeconds(s);
  return Status::Ok();
}
void PutOptMs(RecordWriter& w,
              const std::optional<std::chrono::milliseconds>& d) {
  w.Bool(d.has_value()).I64(d ? d->count() : 0);
}
Status GetOptMs(RecordReader& r, std::optional<std::chrono::milliseconds>* d) {
  bool has = false;
  int64_t ms = 0;
  CMKFS_RETURN_IF_ERROR(r.Bool(&has));
  CMKFS_RETURN_IF_ERROR(r.I64(&ms));
  if (has) {
    *d = std::chrono::milliseconds(ms);
  } else {
    d->reset();
  }
  return Status::Ok();
}
Status GetKty(RecordReader& r, KeyType* kty, std::string_view what) {
  uint8_t v = 0;
  CMKFS_RETURN_IF_ERROR(r.U8(&v));
  if (v > 1) {
    return CorruptionError(std::string(what) + ": unknown key type " +
                           std::to_string(v));
  }
  *kty = static_cast<KeyType>(v);
  return Status::Ok();
}
Status GetInt(RecordReader& r, int* out) {
  uint32_t v = 0;
  CMKFS_RETURN_IF_ERROR(r.U32(&v));
  *out = static_cast<int>(v);
  return Status::Ok();
}

// A record holding one value after its version byte.
template <typename T, Status (RecordReader::*Get)(T*)>
Result<T> DecodeSingleValue(std::string_view data, std::string_view what) {
  RecordReader r(data, what);
  uint8_t version = 0;
  T value{};
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR((r.*Get)(&value));
  CMKFS_RETURN_IF_ERROR(r.Done());
  return value;
}

}  // namespace

std::string EncodeVault(const VaultRecord& rec) {
  const VaultInfo& v = rec.info;
  RecordWriter w(kRecordVersion);
  w.Str(v.spec.name)
      .U8(static_cast<uint8_t>(v.spec.sku))
      .Bool(v.spec.purge_protection)
      .U32(v.spec.retention_days)
      .Str(v.spec.subscription)
      .Str(v.spec.resource_group)
      .Str(v.spec.region)
      .Str(v.admin_identity)
      .I64(ToSeconds(v.created))
      .U32(static_cast<uint32_t>(v.policies.size()));
  for (const AccessPolicy& p : v.policies)
    w.Str(p.object_id).U32(p.permissions);
  return w.Take();
}

Result<VaultRecord> DecodeVault(std::string_view data) {
  RecordReader r(data, "vault record");
  uint8_t version = 0;
  VaultRecord rec;
  VaultInfo& v = rec.info;
  uint8_t sku = 0;
  uint32_t n = 0;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(r.Str(&v.spec.name));
  CMKFS_RETURN_IF_ERROR(r.U8(&sku));
  if (sku > 1) return CorruptionError("vault record: unknown SKU");
  v.spec.sku = static_cast<VaultSku>(sku);
  CMKFS_RETURN_IF_ERROR(r.Bool(&v.spec.purge_protection));
  CMKFS_RETURN_IF_ERROR(r.U32(&v.spec.retention_days));
  CMKFS_RETURN_IF_ERROR(r.Str(&v.spec.subscription));
  CMKFS_RETURN_IF_ERROR(r.Str(&v.spec.resource_group));
  CMKFS_RETURN_IF_ERROR(r.Str(&v.spec.region));
  CMKFS_RETURN_IF_ERROR(r.Str(&v.admin_identity));
  CMKFS_RETURN_IF_ERROR(GetTime(r, &v.created));
  CMKFS_RETURN_IF_ERROR(r.U32(&n));
  if (n > r.remaining())
    return CorruptionError("vault record: bad policy count");
  for (uint32_t i = 0; i < n; ++i) {
    AccessPolicy p;
    CMKFS_RETURN_IF_ERROR(r.Str(&p.object_id));
    CMKFS_RETURN_IF_ERROR(r.U32(&p.permissions));
    v.policies.push_back(std::move(p));
  }
  CMKFS_RETURN_IF_ERROR(r.Done());
  return rec;
}

std::string EncodeKey(const KeyRecord& k) {
  RecordWriter w(kRecordVersion);
  w.U8(static_cast<uint8_t>(k.kty))
      .U32(static_cast<uint32_t>(k.bits))
      .Bool(k.deleted);
  PutOptTime(w, k.deleted_at);
  PutOptTime(w, k.scheduled_purge);
  PutOptMs(w, k.rotation_policy.rotate_after);
  PutOptMs(w, k.rotation_policy.notify_before);
  PutOptMs(w, k.rotation_policy.expires_in);
  PutOptTime(w, k.last_rotation);
  w.U32(static_cast<uint32_t>(k.versions.size()));
  for (const std::string& v : k.versions) w.Str(v);
  return w.Take();
}

Result<KeyRecord> DecodeKey(std::string_view data) {
  RecordReader r(data, "key record");
  uint8_t version = 0;
  KeyRecord k;
  uint32_t n = 0;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(GetKty(r, &k.kty, "key record"));
  CMKFS_RETURN_IF_ERROR(GetInt(r, &k.bits));
  CMKFS_RETURN_IF_ERROR(r.Bool(&k.deleted));
  CMKFS_RETURN_IF_ERROR(GetOptTime(r, &k.deleted_at));
  CMKFS_RETURN_IF_ERROR(GetOptTime(r, &k.scheduled_purge));
  CMKFS_RETURN_IF_ERROR(GetOptMs(r, &k.rotation_policy.rotate_after));
  CMKFS_RETURN_IF_ERROR(GetOptMs(r, &k.rotation_policy.notify_before));
  CMKFS_RETURN_IF_ERROR(GetOptMs(r, &k.rotation_policy.expires_in));
  CMKFS_RETURN_IF_ERROR(GetOptTime(r, &k.last_rotation));
  CMKFS_RETURN_IF_ERROR(r.U32(&n));
  if (n > r.remaining())
    return CorruptionError("key record: bad version count");
  for (uint32_t i = 0; i < n; ++i) {
    std::string v;
    CMKFS_RETURN_IF_ERROR(r.Str(&v));
    k.versions.push_back(std::move(v));
  }
  CMKFS_RETURN_IF_ERROR(r.Done());
  return k;
}

std::string EncodeVersion(const VersionRecord& v) {
  RecordWriter w(kRecordVersion);
  w.U32(static_cast<uint32_t>(v.bits)).Bool(v.enabled);
  PutOptTime(w, v.not_before);
  PutOptTime(w, v.expires);
  w.I64(ToSeconds(v.created))
      .I64(ToSeconds(v.updated))
      .U8(static_cast<uint8_t>(v.backend))
      .Bytes(v.stored.public_der)
      .Bytes(v.stored.material)
      .Bool(v.near_expiry_notified);
  return w.Take();
}

Result<VersionRecord> DecodeVersion(std::string_view data) {
  RecordReader r(data, "key version record");
  uint8_t version = 0;
  uint8_t backend = 0;
  VersionRecord v;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(GetInt(r, &v.bits));
  CMKFS_RETURN_IF_ERROR(r.Bool(&v.enabled));
  CMKFS_RETURN_IF_ERROR(GetOptTime(r, &v.not_before));
  CMKFS_RETURN_IF_ERROR(GetOptTime(r, &v.expires));
  CMKFS_RETURN_IF_ERROR(GetTime(r, &v.created));
  CMKFS_RETURN_IF_ERROR(GetTime(r, &v.updated));
  CMKFS_RETURN_IF_ERROR(r.U8(&backend));
  if (backend > 1)
    return CorruptionError("key version record: unknown backend");
  v.backend = static_cast<BackendKind>(backend);
  CMKFS_RETURN_IF_ERROR(r.Bytes(&v.stored.public_der));
  CMKFS_RETURN_IF_ERROR(r.Bytes(&v.stored.material));
  CMKFS_RETURN_IF_ERROR(r.Bool(&v.near_expiry_notified));
  CMKFS_RETURN_IF_ERROR(r.Done());
  v.stored.bits = v.bits;
  return v;
}

// Audit records: version 1 (before the hash chain) is still read, as an
// entry with seq 0; version 2 adds the authenticated caller and the chain.
constexpr uint8_t kAuditRecordVersion = 2;

std::string EncodeAudit(const AuditRecord& a) {
  RecordWriter w(kAuditRecordVersion);
  w.I64(ToSeconds(a.entry.time))
      .Str(a.entry.identity)
      .Str(a.entry.operation)
      .Str(a.entry.key_id)
      .Str(a.entry.result)
      .Str(a.key_name)
      .Str(a.entry.caller_object_id)
      .Str(a.entry.caller_fingerprint)
      .U64(a.entry.seq)
      .Str(a.entry.prev_hash)
      .Str(a.entry.hash);
  return w.Take();
}

Result<AuditRecord> DecodeAudit(std::string_view data) {
  RecordReader r(data, "audit record");
  uint8_t version = 0;
  AuditRecord a;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kAuditRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(GetTime(r, &a.entry.time));
  CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.identity));
  CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.operation));
  CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.key_id));
  CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.result));
  CMKFS_RETURN_IF_ERROR(r.Str(&a.key_name));
  if (version >= 2) {
    CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.caller_object_id));
    CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.caller_fingerprint));
    CMKFS_RETURN_IF_ERROR(r.U64(&a.entry.seq));
    CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.prev_hash));
    CMKFS_RETURN_IF_ERROR(r.Str(&a.entry.hash));
  }
  CMKFS_RETURN_IF_ERROR(r.Done());
  return a;
}

// meta "audit_head/VAULT": the vault's last chained entry.
std::string EncodeAuditHead(const AuditHead& h) {
  return RecordWriter(kRecordVersion).U64(h.seq).Str(h.hash).Take();
}

Result<AuditHead> DecodeAuditHead(std::string_view data) {
  RecordReader r(data, "audit chain head");
  uint8_t version = 0;
  AuditHead h;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(r.U64(&h.seq));
  CMKFS_RETURN_IF_ERROR(r.Str(&h.hash));
  CMKFS_RETURN_IF_ERROR(r.Done());
  return h;
}

std::string EncodeKdf(const KdfRecord& k) {
  return RecordWriter(kRecordVersion)
      .Bytes(k.salt)
      .U64(k.params.n)
      .U32(k.params.r)
      .U32(k.params.p)
      .Take();
}

Result<KdfRecord> DecodeKdf(std::string_view data) {
  RecordReader r(data, "kdf record");
  uint8_t version = 0;
  KdfRecord k;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(r.Bytes(&k.salt));
  CMKFS_RETURN_IF_ERROR(r.U64(&k.params.n));
  CMKFS_RETURN_IF_ERROR(r.U32(&k.params.r));
  CMKFS_RETURN_IF_ERROR(r.U32(&k.params.p));
  CMKFS_RETURN_IF_ERROR(r.Done());
  if (k.salt.empty()) return CorruptionError("kdf record: empty salt");
  return k;
}

std::string EncodeFormat(uint32_t format_version) {
  return RecordWriter(kRecordVersion).U32(format_version).Take();
}

Result<uint32_t> DecodeFormat(std::string_view data) {
  return DecodeSingleValue<uint32_t, &RecordReader::U32>(data, "format record");
}

std::string EncodeCounter(uint64_t n) {
  return RecordWriter(kRecordVersion).U64(n).Take();
}

Result<uint64_t> DecodeCounter(std::string_view data) {
  return DecodeSingleValue<uint64_t, &RecordReader::U64>(data, "meta counter");
}

std::string KeyDbKey(std::string_view vault, std::string_view name) {
  return std::string(vault) + "/" + std::string(name);
}

std::string VersionDbKey(std::string_view vault, std::string_view name,
                         std::string_view version) {
  return KeyDbKey(vault, name) + "/" + std::string(version);
}

std::string VaultPrefix(std::string_view vault) {
  return std::string(vault) + "/";
}

}  // namespace cmkfs::keystore
