#include "vault/transport/convert.h"

namespace cmkfs::vault::convert {

using keystore::KeyId;

grpc::StatusCode CodeOf(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kOk:
      return grpc::StatusCode::OK;
    case ErrorKind::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case ErrorKind::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorKind::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case ErrorKind::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ErrorKind::kKeyUnavailable:
    case ErrorKind::kFailedPrecondition:
    case ErrorKind::kReadOnly:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorKind::kCorruption:
      return grpc::StatusCode::DATA_LOSS;
    case ErrorKind::kNoSpace:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorKind::kBusy:
      return grpc::StatusCode::ABORTED;
    case ErrorKind::kNotSupported:
      return grpc::StatusCode::UNIMPLEMENTED;
    case ErrorKind::kOutOfRange:
      return grpc::StatusCode::OUT_OF_RANGE;
    case ErrorKind::kCancelled:
      return grpc::StatusCode::CANCELLED;
    case ErrorKind::kIOError:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

ErrorKind KindOf(std::string_view name) {
  for (int k = 0; k <= static_cast<int>(ErrorKind::kFailedPrecondition); ++k) {
    if (ErrorKindName(static_cast<ErrorKind>(k)) == name) {
      return static_cast<ErrorKind>(k);
    }
  }
  return ErrorKind::kIOError;
}

int64_t Seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch())
      .count();
}

TimePoint FromSeconds(int64_t s) {
  return TimePoint(
      std::chrono::duration_cast<TimePoint::duration>(std::chrono::seconds(s)));
}

namespace {

std::vector<std::string> Names(keystore::PermissionSet set) {
  return keystore::PermissionNames(set);
}

Result<keystore::PermissionSet> Perms(
    const google::protobuf::RepeatedPtrField<std::string>& names) {
  return keystore::ParsePermissions(
      std::vector<std::string>(names.begin(), names.end()));
}

}  // namespace

pb::VaultSpec ToPb(const keystore::VaultSpec& v) {
  pb::VaultSpec out;
  out.set_name(v.name);
  out.set_sku(std::string(keystore::VaultSkuName(v.sku)));
  out.set_purge_protection(v.purge_protection);
  out.set_retention_days(v.retention_days);
  out.set_subscription(v.subscription);
  out.set_resource_group(v.resource_group);
  out.set_region(v.region);
  return out;
}

Result<keystore::VaultSpec> FromPb(const pb::VaultSpec& v) {
  keystore::VaultSpec out;
  out.name = v.name();
  CMKFS_ASSIGN_OR_RETURN(out.sku, keystore::ParseVaultSku(v.sku()));
  out.purge_protection = v.purge_protection();
  out.retention_days = v.retention_days();
  out.subscription = v.subscription();
  out.resource_group = v.resource_group();
  out.region = v.region();
  return out;
}

pb::Vault ToPb(const keystore::VaultInfo& v) {
  pb::Vault out;
  *out.mutable_spec() = ToPb(v.spec);
  out.set_admin_identity(v.admin_identity);
  out.set_created(Seconds(v.created));
  for (const auto& p : v.policies) {
    pb::AccessPolicy* ap = out.add_policies();
    ap->set_object_id(p.object_id);
    for (auto& n : Names(p.permissions)) ap->add_permissions(n);
  }
  return out;
}

Result<keystore::VaultInfo> FromPb(const pb::Vault& v) {
  keystore::VaultInfo out;
  CMKFS_ASSIGN_OR_RETURN(out.spec, FromPb(v.spec()));
  out.admin_identity = v.admin_identity();
  out.created = FromSeconds(v.created());
  for (const auto& p : v.policies()) {
    keystore::AccessPolicy ap;
    ap.object_id = p.object_id();
    CMKFS_ASSIGN_OR_RETURN(ap.permissions, Perms(p.permissions()));
    out.policies.push_back(std::move(ap));
  }
  return out;
}

pb::KeyVersion ToPb(const keystore::KeyVersionInfo& v) {
  pb::KeyVersion out;
  out.set_kid(v.id.ToString());
  out.set_kty(std::string(keystore::KeyTypeName(v.kty)));
  out.set_bits(v.bits);
  out.set_enabled(v.enabled);
  if (v.not_before) out.set_not_before(Seconds(*v.not_before));
  if (v.expires) out.set_expires(Seconds(*v.expires));
  out.set_created(Seconds(v.created));
  out.set_updated(Seconds(v.updated));
  out.set_public_der(v.public_der.data(), v.public_der.size());
  return out;
}

Result<keystore::KeyVersionInfo> FromPb(const pb::KeyVersion& v) {
  keystore::KeyVersionInfo out;
  CMKFS_ASSIGN_OR_RETURN(out.id, KeyId::Parse(v.kid()));
  CMKFS_ASSIGN_OR_RETURN(out.kty, keystore::ParseKeyType(v.kty()));
  out.bits = v.bits();
  out.enabled = v.enabled();
  if (v.has_not_before()) out.not_before = FromSeconds(v.not_before());
  if (v.has_expires()) out.expires = FromSeconds(v.expires());
  out.created = FromSeconds(v.created());
  out.updated = FromSeconds(v.updated());
  out.public_der.assign(v.public_der().begin(), v.public_der().end());
  return out;
}

pb::RotationPolicy ToPb(const keystore::RotationPolicy& p) {
  pb::RotationPolicy out;
  if (p.rotate_after) out.set_rotate_after_ms(p.rotate_after->count());
  if (p.notify_before) out.set_notify_before_ms(p.notify_before->count());
  if (p.expires_in) out.set_expires_in_ms(p.expires_in->count());
  return out;
}

keystore::RotationPolicy FromPb(const pb::RotationPolicy& p) {
  using std::chrono::milliseconds;
  keystore::RotationPolicy out;
  if (p.has_rotate_after_ms())
    out.rotate_after = milliseconds(p.rotate_after_ms());
  if (p.has_notify_before_ms()) {
    out.notify_before = milliseconds(p.notify_before_ms());
  }
  if (p.has_expires_in_ms()) out.expires_in = milliseconds(p.expires_in_ms());
  return out;
}

pb::Key ToPb(const keystore::KeyInfo& k) {
  pb::Key out;
  out.set_vault(k.vault);
  out.set_name(k.name);
  out.set_kty(std::string(keystore::KeyTypeName(k.kty)));
  for (const auto& v : k.versions) *out.add_versions() = ToPb(v);
  out.set_deleted(k.deleted);
  if (k.deleted_at) out.set_deleted_at(Seconds(*k.deleted_at));
  if (k.scheduled_purge) out.set_scheduled_purge(Seconds(*k.scheduled_purge));
  *out.mutable_rotation_policy() = ToPb(k.rotation_policy);
  return out;
}

Result<keystore::KeyInfo> FromPb(const pb::Key& k) {
  keystore::KeyInfo out;
  out.vault = k.vault();
  out.name = k.name();
  CMKFS_ASSIGN_OR_RETURN(out.kty, keystore::ParseKeyType(k.kty()));
  for (const auto& v : k.versions()) {
    CMKFS_ASSIGN_OR_RETURN(auto info, FromPb(v));
    out.versions.push_back(std::move(info));
  }
  out.deleted = k.deleted();
  if (k.has_deleted_at()) out.deleted_at = FromSeconds(k.deleted_at());
  if (k.has_scheduled_purge()) {
    out.scheduled_purge = FromSeconds(k.scheduled_purge());
  }
  out.rotation_policy = FromPb(k.rotation_policy());
  return out;
}

pb::AuditEvent ToPb(const keystore::AuditEntry& e) {
  pb::AuditEvent out;
  out.set_time(Seconds(e.time));
  out.set_identity(e.identity);
  out.set_operation(e.operation);
  out.set_kid(e.key_id);
  out.set_result(e.result);
  out.set_caller_object_id(e.caller_object_id);
  out.set_caller_fingerprint(e.caller_fingerprint);
  out.set_seq(e.seq);
  out.set_prev_hash(e.prev_hash);
  out.set_hash(e.hash);
  return out;
}

keystore::AuditEntry FromPb(const pb::AuditEvent& e) {
  keystore::AuditEntry out;
  out.time = FromSeconds(e.time());
  out.identity = e.identity();
  out.operation = e.operation();
  out.key_id = e.kid();
  out.result = e.result();
  out.caller_object_id = e.caller_object_id();
  out.caller_fingerprint = e.caller_fingerprint();
  out.seq = e.seq();
  out.prev_hash = e.prev_hash();
  out.hash = e.hash();
  return out;
}

pb::WrapAlgorithm ToPb(keystore::WrapAlgorithm a) {
  switch (a) {
    case keystore::WrapAlgorithm::kRsaOaep256:
      return pb::RSA_OAEP_256;
    case keystore::WrapAlgorithm::kRsaOaep:
      return pb::RSA_OAEP;
    case keystore::WrapAlgorithm::kRsa15:
      return pb::RSA1_5;
  }
  return pb::RSA1_5;
}

keystore::WrapAlgorithm FromPb(pb::WrapAlgorithm a) {
  switch (a) {
    case pb::RSA_OAEP_256:
      return keystore::WrapAlgorithm::kRsaOaep256;
    case pb::RSA_OAEP:
      return keystore::WrapAlgorithm::kRsaOaep;
    default:
      return keystore::WrapAlgorithm::kRsa15;
  }
}

}  // namespace cmkfs::vault::convert
