#include "vault/identity_table.h"

#include "cmkfs/record.h"
#include "cmkfs/x509.h"

namespace cmkfs::vault {
namespace {

// Version 2 added the host role (role byte 2) and minted_by.
constexpr uint8_t kRecordVersion = 2;

uint8_t RoleByte(Role r) {
  switch (r) {
    case Role::kClient:
      return 0;
    case Role::kAdmin:
      return 1;
    case Role::kHost:
      return 2;
  }
  return 0;
}

std::string Encode(const Identity& id) {
  RecordWriter w(kRecordVersion);
  w.Str(id.object_id)
      .Str(id.name)
      .U8(RoleByte(id.role))
      .Str(id.fingerprint)
      .I64(id.issued)
      .I64(id.not_after)
      .Bool(id.revoked)
      .I64(id.revoked_at)
      .Str(id.minted_by);
  return w.Take();
}

Result<Identity> Decode(std::string_view data) {
  RecordReader r(data, "identity record");
  uint8_t version = 0;
  uint8_t role = 0;
  Identity id;
  CMKFS_RETURN_IF_ERROR(r.Version(1, kRecordVersion, &version));
  CMKFS_RETURN_IF_ERROR(r.Str(&id.object_id));
  CMKFS_RETURN_IF_ERROR(r.Str(&id.name));
  CMKFS_RETURN_IF_ERROR(r.U8(&role));
  CMKFS_RETURN_IF_ERROR(r.Str(&id.fingerprint));
  CMKFS_RETURN_IF_ERROR(r.I64(&id.issued));
  CMKFS_RETURN_IF_ERROR(r.I64(&id.not_after));
  CMKFS_RETURN_IF_ERROR(r.Bool(&id.revoked));
  CMKFS_RETURN_IF_ERROR(r.I64(&id.revoked_at));
  if (version >= 2) CMKFS_RETURN_IF_ERROR(r.Str(&id.minted_by));
  CMKFS_RETURN_IF_ERROR(r.Done());
  switch (role) {
    case 0:
      id.role = Role::kClient;
      break;
    case 1:
      id.role = Role::kAdmin;
      break;
    case 2:
      id.role = Role::kHost;
      break;
    default:
      return CorruptionError("identity record of " + id.object_id +
                             " has an unknown role " + std::to_string(role));
  }
  return id;
}

}  // namespace

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kHost:
      return "host";
    case Role::kClient:
      break;
  }
  return "client";
}

Result<std::unique_ptr<IdentityTable>> IdentityTable::Open(
    const std::filesystem::path& dir) {
  lmdb::EnvOptions o;
  o.max_dbs = 2;
  o.initial_map_size = 4ull << 20;
  CMKFS_ASSIGN_OR_RETURN(auto env, lmdb::Env::Open(dir, o));
  CMKFS_ASSIGN_OR_RETURN(lmdb::Dbi dbi, env->OpenDb("identities"));
  return std::unique_ptr<IdentityTable>(new IdentityTable(std::move(env), dbi));
}

Status IdentityTable::Add(const Identity& id) {
  return env_->Update([&](lmdb::Txn& txn) -> Status {
    if (txn.Get(dbi_, id.object_id).ok()) {
      return AlreadyExistsError("identity " + id.object_id + " exists");
    }
    return txn.Put(dbi_, id.object_id, Encode(id));
  });
}

Status IdentityTable::Revoke(std::string_view object_id, int64_t now) {
  return env_->Update([&](lmdb::Txn& txn) -> Status {
    Result<std::string_view> raw = txn.Get(dbi_, object_id);
    if (!raw.ok()) {
      return NotFoundError("no identity " + std::string(object_id) +
                           " in this vault service; list them with: "
                           "cmkvault identity list");
    }
    CMKFS_ASSIGN_OR_RETURN(Identity id, Decode(*raw));
    if (id.revoked) {
      return FailedPreconditionError("identity " + id.object_id +
                                     " is already revoked");
    }
    id.revoked = true;
    id.revoked_at = now;
    return txn.Put(dbi_, id.object_id, Encode(id));
  });
}

Result<std::vector<Identity>> IdentityTable::List() const {
  std::vector<Identity> out;
  CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(dbi_));
    CMKFS_ASSIGN_OR_RETURN(bool more, c.First());
    while (more) {
      CMKFS_ASSIGN_OR_RETURN(Identity id, Decode(c.value()));
      out.push_back(std::move(id));
      CMKFS_ASSIGN_OR_RETURN(more, c.Next());
    }
    return Status::Ok();
  }));
  return out;
}

Result<Caller> IdentityTable::Authenticate(std::string_view cert_pem) const {
  Result<crypto::x509::CertificateInfo> info = crypto::x509::Inspect(cert_pem);
  if (!info.ok()) {
    return PermissionDeniedError("client certificate unreadable: " +
                                 info.status().message());
  }
  std::string object_id;
  for (const std::string& uri : info->uri_sans) {
    if (uri.starts_with(kIdentityUriPrefix)) {
      object_id = uri.substr(kIdentityUriPrefix.size());
    }
  }
  if (object_id.empty()) {
    return PermissionDeniedError(
        "client certificate names no identity (URI SAN "
        "cmkvault:identity:<object-id>)");
  }
  Result<Identity> found = PermissionDeniedError("");
  CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
    Result<std::string_view> raw = txn.Get(dbi_, object_id);
    if (raw.ok()) found = Decode(*raw);
    return Status::Ok();
  }));
  if (!found.ok()) {
    return PermissionDeniedError("identity " + object_id +
                                 " is not known to this vault service");
  }
  if (found->revoked) {
    return PermissionDeniedError("identity " + object_id +
                                 " was revoked; its certificate is refused");
  }
  if (found->fingerprint != info->fingerprint) {
    return PermissionDeniedError("certificate " + info->fingerprint +
                                 " is not the one issued to identity " +
                                 object_id);
  }
  Caller c;
  c.object_id = object_id;
  c.admin = found->role == Role::kAdmin;
  c.host = found->role == Role::kHost;
  c.fingerprint = info->fingerprint;
  return c;
}

}  // namespace cmkfs::vault
