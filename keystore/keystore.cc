// The LMDB-backed KeyStore. Layout of the databases: see records.h.
//
// Every operation runs as: load the vault, resolve the caller's identity,
// check its permission, do the work. A mutation runs in one write
// transaction with its audit entry and the change-counter bump; when it fails,
// that transaction is aborted and the failure is audited in a transaction of
// its own. Reads and cryptographic operations run in a read transaction and
// audit afterwards, so RSA work never holds LMDB's writer lock. Slow key
// generation happens before the write transaction, after a read-only
// pre-check.
#include "cmkfs/keystore.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <string>
#include <thread>
#include <utility>

#include "cmkfs/lmdb.h"
#include "cmkfs/mutex.h"
#include "cmkfs/path_guard.h"
#include "cmkfs/record.h"
#include "key_backend.h"
#include "master_key.h"
#include "records.h"

namespace cmkfs::keystore {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kMetaFormat = "format";
constexpr std::string_view kMetaCheck = "check";
constexpr std::string_view kMetaKdf = "kdf";
constexpr std::string_view kMetaCounter = "counter";
constexpr std::string_view kMetaAuditSeq = "audit_seq";
constexpr std::string_view kMetaAuditHead = "audit_head/";
constexpr std::string_view kCheckPlaintext = "cmkfs vault master key check v1";
constexpr std::string_view kSystemIdentity = "system";
constexpr std::string_view kSupportedImport =
    "supported: RSA 2048, 3072 or 4096-bit private key in unencrypted PEM "
    "(PKCS#1 or PKCS#8)";

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string_view AsView(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

bool NameCharsOk(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-';
  });
}

Status ValidateVaultName(std::string_view name) {
  if (name.size() < 3 || name.size() > 24 || !NameCharsOk(name)) {
    return InvalidArgumentError(
        "invalid vault name '" + std::string(name) +
        "': use 3 to 24 characters from A-Z, a-z, 0-9 and '-'");
  }
  return Status::Ok();
}

Status ValidateKeyName(std::string_view name) {
  if (name.empty() || name.size() > 127 || !NameCharsOk(name)) {
    return InvalidArgumentError(
        "invalid key name '" + std::string(name) +
        "': use 1 to 127 characters from A-Z, a-z, 0-9 and '-'");
  }
  return Status::Ok();
}

Status ValidateBits(int bits) {
  if (bits != 2048 && bits != 3072 && bits != 4096) {
    return InvalidArgumentError("unsupported RSA key size " +
                                std::to_string(bits) +
                                "; supported: 2048, 3072 or 4096 (default " +
                                std::to_string(kDefaultKeyBits) + ")");
  }
  return Status::Ok();
}

std::string KeyIdString(std::string_view vault, std::string_view name,
                        std::string_view version = {}) {
  return KeyId{std::string(vault), std::string(name), std::string(version)}
      .ToString();
}

std::string_view PermissionName(Permission p) {
  switch (p) {
    case Permission::kGet:
      return "get";
    case Permission::kList:
      return "list";
    case Permission::kCreate:
      return "create";
    case Permission::kImport:
      return "import";
    case Permission::kUpdate:
      return "update";
    case Permission::kDelete:
      return "delete";
    case Permission::kRecover:
      return "recover";
    case Permission::kPurge:
      return "purge";
    case Permission::kWrapKey:
      return "wrapKey";
    case Permission::kUnwrapKey:
      return "unwrapKey";
    case Permission::kRotate:
      return "rotate";
  }
  return "?";
}

bool IsAdmin(const VaultInfo& v, std::string_view caller) {
  return caller.empty() || caller == v.admin_identity;
}

std::string EffectiveIdentity(const VaultInfo& v, std::string_view caller) {
  return caller.empty() ? v.admin_identity : std::string(caller);
}

PermissionSet PermissionsOf(const VaultInfo& v, std::string_view caller) {
  if (IsAdmin(v, caller)) return kAllPermissions;
  for (const AccessPolicy& p : v.policies) {
    if (p.object_id == caller) return p.permissions;
  }
  return 0;
}

Status Authorize(const VaultInfo& v, std::string_view caller,
                 Permission needed) {
  PermissionSet have = PermissionsOf(v, caller);
  if (have & static_cast<uint32_t>(needed)) return Status::Ok();
  std::string grant;
  for (const std::string& n :
       PermissionNames(have | static_cast<uint32_t>(needed))) {
    grant += " " + n;
  }
  return PermissionDeniedError(
      "identity " + std::string(caller) + " lacks '" +
      std::string(PermissionName(needed)) + "' on vault " + v.spec.name +
      "; grant it with: cmkctl vault set-policy " + v.spec.name +
      " --object-id " + std::string(caller) + " --key-permissions" + grant);
}

std::string AuditResult(const Status& s) {
  if (s.ok()) return "ok";
  if (s.kind() == ErrorKind::kPermissionDenied) return "denied: " + s.message();
  return "error: " + s.message();
}

KeyVersionInfo ToVersionInfo(std::string_view vault, std::string_view name,
                             std::string_view version, KeyType kty,
                             const VersionRecord& v) {
  KeyVersionInfo info;
  info.id = KeyId{std::string(vault), std::string(name), std::string(version)};
  info.kty = kty;
  info.bits = v.bits;
  info.enabled = v.enabled;
  info.not_before = v.not_before;
  info.expires = v.expires;
  info.created = v.created;
  info.updated = v.updated;
  info.public_der = v.stored.public_der;
  return info;
}

// The reason a version cannot be used now, as KeyUnavailable.
Status Usability(const KeyRecord& key, const VersionRecord& v,
                 const std::string& id, TimePoint now) {
  if (key.deleted) return KeyUnavailableError(id + ": key deleted");
  if (!v.enabled) return KeyUnavailableError(id + ": key version disabled");
  if (v.not_before && now < *v.not_before) {
    return KeyUnavailableError(id + ": not yet valid (not before " +
                               FormatTime(*v.not_before) + ")");
  }
  if (v.expires && now >= *v.expires) {
    return KeyUnavailableError(id + ": expired (expired " +
                               FormatTime(*v.expires) + ")");
  }
  return Status::Ok();
}

Result<crypto::OaepHash> HashFor(WrapAlgorithm alg) {
  switch (alg) {
    case WrapAlgorithm::kRsaOaep256:
      return crypto::OaepHash::kSha256;
    case WrapAlgorithm::kRsaOaep:
      return crypto::OaepHash::kSha1;
    case WrapAlgorithm::kRsa15:
      break;
  }
  return InvalidArgumentError("RSA1_5 is not supported; use RSA-OAEP-256");
}

struct Dbs {
  lmdb::Dbi meta = 0;
  lmdb::Dbi vaults = 0;
  lmdb::Dbi keys = 0;
  lmdb::Dbi versions = 0;
  lmdb::Dbi audit = 0;
  // Key id -> version record of a removed version whose backend material is
  // not destroyed yet: written in the transaction that removes the version,
  // deleted once Destroy succeeded, retried on every open (a crash between
  // the two must not leave a purged key's material behind).
  lmdb::Dbi released = 0;
};

// Backend material of a removed version, destroyed after the commit.
struct ReleasedMaterial {
  std::string id;
  BackendKind kind = BackendKind::kSoftware;
  StoredKey stored;
};

// Who is doing what to which key: the audit entry being built for one call.
struct OpContext {
  std::string vault;
  std::string key_name;
  std::string operation;
  std::string identity;
  std::string key_id;
};

Result<uint64_t> ReadU64(const lmdb::Txn& txn, lmdb::Dbi dbi,
                         std::string_view key) {
  auto v = txn.Get(dbi, key);
  if (!v.ok()) {
    if (v.status().kind() == ErrorKind::kNotFound) return uint64_t{0};
    return v.status();
  }
  return DecodeCounter(*v);
}

Status WriteU64(lmdb::Txn& txn, lmdb::Dbi dbi, std::string_view key,
                uint64_t n) {
  return txn.Put(dbi, key, EncodeCounter(n));
}

class KeyStoreImpl final : public KeyStore {
 public:
  KeyStoreImpl(std::unique_ptr<lmdb::Env> env, Dbs dbs,
               std::unique_ptr<KeyBackend> software,
               std::unique_ptr<KeyBackend> hsm, KeyStoreOptions options)
      : env_(std::move(env)),
        dbs_(dbs),
        software_(std::move(software)),
        hsm_(std::move(hsm)),
        options_(std::move(options)),
        audit_thread_([this] { AuditWriterLoop(); }) {
    FinishReleases();
  }

  ~KeyStoreImpl() override {
    {
      MutexLock lock(&audit_mu_);
      audit_stop_ = true;
    }
    audit_cv_.SignalAll();
    audit_thread_.join();
  }

  // --- vaults ---------------------------------------------------------------
  Result<VaultInfo> CreateVault(const VaultSpec& spec) override {
    CMKFS_RETURN_IF_ERROR(ValidateVaultName(spec.name));
    if (spec.retention_days < 7 || spec.retention_days > 90) {
      return InvalidArgumentError(
          "soft-delete retention of " + std::to_string(spec.retention_days) +
          " days is out of range; accepted: 7 to 90 days (default 90)");
    }
    VaultRecord rec;
    rec.info.spec = spec;
    CMKFS_ASSIGN_OR_RETURN(std::string hex, crypto::RandomHex(16));
    rec.info.admin_identity = hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" +
                              hex.substr(12, 4) + "-" + hex.substr(16, 4) +
                              "-" + hex.substr(20);
    rec.info.created = NowTime();
    Status s = env_->Update([&](lmdb::Txn& txn) -> Status {
      if (txn.Get(dbs_.vaults, spec.name).ok()) {
        return AlreadyExistsError("vault " + spec.name + " already exists");
      }
      CMKFS_RETURN_IF_ERROR(txn.Put(dbs_.vaults, spec.name, EncodeVault(rec)));
      OpContext ctx{spec.name, "", "vault.create", rec.info.admin_identity, ""};
      CMKFS_RETURN_IF_ERROR(WriteAudit(txn, ctx, Status::Ok()));
      return BumpCounter(txn);
    });
    CMKFS_RETURN_IF_ERROR(s);
    spdlog::info("keystore: created vault {} (sku {}, purge protection {})",
                 spec.name, VaultSkuName(spec.sku), spec.purge_protection);
    return rec.info;
  }

  Result<VaultInfo> GetVault(std::string_view vault) override {
    Result<VaultInfo> out = NotFoundError("");
    CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(VaultRecord rec, LoadVault(txn, vault));
      out = std::move(rec.info);
      return Status::Ok();
    }));
    return out;
  }

  Result<std::vector<VaultInfo>> ListVaults() override {
    std::vector<VaultInfo> out;
    CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
      out.clear();
      CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(dbs_.vaults));
      CMKFS_ASSIGN_OR_RETURN(bool more, c.First());
      while (more) {
        CMKFS_ASSIGN_OR_RETURN(VaultRecord rec, DecodeVault(c.value()));
        out.push_back(std::move(rec.info));
        CMKFS_ASSIGN_OR_RETURN(more, c.Next());
      }
      return Status::Ok();
    }));
    return out;
  }

  Status SetAccessPolicy(std::string_view caller, std::string_view vault,
                         std::string_view object_id,
                         PermissionSet permissions) override {
    auto r = Mutate<bool>(
        caller, vault, "", "vault.set-policy", std::nullopt,
        [&](lmdb::Txn& txn, VaultRecord& rec, OpContext&) -> Result<bool> {
          if (object_id.empty()) {
            return InvalidArgumentError(
                "an access policy needs an object id (--object-id)");
          }
          if (object_id == rec.info.admin_identity) {
            return InvalidArgumentError(
                "object id " + std::string(object_id) +
                " is the admin of vault " + rec.info.spec.name +
                ", which holds every permission already");
          }
          if (permissions & ~kAllPermissions) {
            return InvalidArgumentError("unknown permission bits in policy");
          }
          auto& policies = rec.info.policies;
          auto it = std::find_if(
              policies.begin(), policies.end(),
              [&](const AccessPolicy& p) { return p.object_id == object_id; });
          if (it == policies.end()) {
            policies.push_back({std::string(object_id), permissions});
          } else {
            it->permissions = permissions;
          }
          CMKFS_RETURN_IF_ERROR(PutVault(txn, rec));
          return true;
        });
    return r.status();
  }

  Status DeleteAccessPolicy(std::string_view caller, std::string_view vault,
                            std::string_view object_id) override {
    auto r = Mutate<bool>(
        caller, vault, "", "vault.delete-policy", std::nullopt,
        [&](lmdb::Txn& txn, VaultRecord& rec, OpContext&) -> Result<bool> {
          auto& policies = rec.info.policies;
          auto it = std::find_if(
              policies.begin(), policies.end(),
              [&](const AccessPolicy& p) { return p.object_id == object_id; });
          if (it == policies.end()) {
            return NotFoundError("vault " + rec.info.spec.name +
                                 " has no access policy for object id " +
                                 std::string(object_id));
          }
          policies.erase(it);
          CMKFS_RETURN_IF_ERROR(PutVault(txn, rec));
          return true;
        });
    return r.status();
  }

  Result<std::vector<AuditEntry>> ReadAudit(std::string_view vault,
                                            const AuditFilter& f) override {
    FlushAudit();
    std::vector<AuditEntry> out;
    CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
      out.clear();
      CMKFS_RETURN_IF_ERROR(LoadVault(txn, vault).status());
      const std::string prefix = VaultPrefix(vault);
      std::string start = prefix;
      if (f.since) {
        start += EncodeU64Key(static_cast<uint64_t>(
            std::max<int64_t>(0, f.since->time_since_epoch().count())));
      }
      CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(dbs_.audit));
      CMKFS_ASSIGN_OR_RETURN(bool more, c.Seek(start));
      while (more && c.key().starts_with(prefix)) {
        CMKFS_ASSIGN_OR_RETURN(AuditRecord rec, DecodeAudit(c.value()));
        if (!f.key_name || rec.key_name == *f.key_name) {
          out.push_back(std::move(rec.entry));
        }
        CMKFS_ASSIGN_OR_RETURN(more, c.Next());
      }
      return Status::Ok();
    }));
    return out;
  }

  Status AppendAudit(std::string_view vault, const AuditEntry& e) override {
    return env_->Update([&](lmdb::Txn& txn) -> Status {
      CMKFS_RETURN_IF_ERROR(LoadVault(txn, vault).status());
      AuditRecord rec;
      rec.entry = e;
      if (rec.entry.time == TimePoint{}) rec.entry.time = NowTime();
      ScopedAuditCaller::Stamp(rec.entry);
      auto id = KeyId::Parse(e.key_id);
      if (id.ok()) rec.key_name = id->name;
      return PutAudit(txn, vault, rec);
    });
  }

  // --- keys -----------------------------------------------------------------
  Result<KeyVersionInfo> CreateKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name, KeyType kty,
                                   int bits) override {
    if (bits == 0) bits = kDefaultKeyBits;
    auto precheck = [&](const lmdb::Txn& txn, const VaultRecord& rec) {
      CMKFS_RETURN_IF_ERROR(ValidateKeyName(name));
      CMKFS_RETURN_IF_ERROR(ValidateBits(bits));
      CMKFS_RETURN_IF_ERROR(CheckKeyType(rec, kty));
      return CheckKeyAbsent(txn, vault, name);
    };
    return AddNewVersion(
        caller, vault, name, "key.create", Permission::kCreate, kty, precheck,
        [&](const std::string& id) {
          return BackendFor(kty).Generate(bits, id);
        },
        [&](const lmdb::Txn&) -> Result<KeyRecord> {
          KeyRecord key;
          key.kty = kty;
          return key;
        });
  }

  Result<KeyVersionInfo> ImportKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name, std::string_view pem,
                                   KeyType kty) override {
    auto parsed = crypto::RsaKey::FromPrivatePem(pem);
    Status parse_status = Status::Ok();
    if (!parsed.ok() || !parsed->has_private() ||
        !ValidateBits(parsed->bits()).ok()) {
      parse_status =
          InvalidArgumentError("unsupported key: " + crypto::DescribePem(pem) +
                               "; " + std::string(kSupportedImport));
    }
    auto precheck = [&](const lmdb::Txn& txn, const VaultRecord& rec) {
      CMKFS_RETURN_IF_ERROR(ValidateKeyName(name));
      CMKFS_RETURN_IF_ERROR(CheckKeyType(rec, kty));
      CMKFS_RETURN_IF_ERROR(parse_status);
      auto existing = LoadKey(txn, vault, name);
      if (!existing.ok()) {
        return existing.status().kind() == ErrorKind::kNotFound
                   ? Status::Ok()
                   : existing.status();
      }
      if (existing->deleted) return DeletedKeyError(vault, name, *existing);
      if (existing->kty != kty) {
        return InvalidArgumentError(
            "key " + KeyIdString(vault, name) + " has type " +
            std::string(KeyTypeName(existing->kty)) +
            "; a new version must have the same type, not " +
            std::string(KeyTypeName(kty)));
      }
      return Status::Ok();
    };
    return AddNewVersion(
        caller, vault, name, "key.import", Permission::kImport, kty, precheck,
        [&](const std::string& id) {
          return BackendFor(kty).Import(*parsed, id);
        },
        [&](const lmdb::Txn& txn) -> Result<KeyRecord> {
          auto existing = LoadKey(txn, vault, name);
          if (existing.ok()) return existing;
          KeyRecord key;
          key.kty = kty;
          return key;
        });
  }

  Result<KeyVersionInfo> RotateKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name) override {
    int bits = 0;
    KeyType kty = KeyType::kRsa;
    auto precheck = [&](const lmdb::Txn& txn, const VaultRecord& rec) {
      CMKFS_ASSIGN_OR_RETURN(KeyRecord key, LoadKey(txn, vault, name));
      if (key.deleted) return DeletedKeyError(vault, name, key);
      CMKFS_RETURN_IF_ERROR(CheckKeyType(rec, key.kty));
      bits = key.bits;
      kty = key.kty;
      return Status::Ok();
    };
    return AddNewVersion(
        caller, vault, name, "key.rotate", Permission::kRotate, kty, precheck,
        [&](const std::string& id) {
          return BackendFor(kty).Generate(bits, id);
        },
        [&](const lmdb::Txn& txn) -> Result<KeyRecord> {
          CMKFS_ASSIGN_OR_RETURN(KeyRecord key, LoadKey(txn, vault, name));
          if (key.kty != kty) {
            return FailedPreconditionError("key " + KeyIdString(vault, name) +
                                           " changed type during rotation");
          }
          return key;
        });
  }

  Result<KeyInfo> GetKey(std::string_view caller, std::string_view vault,
                         std::string_view name) override {
    return Observe<KeyInfo>(caller, vault, name, "key.get", Permission::kGet,
                            [&](const lmdb::Txn& txn, const VaultRecord&,
                                OpContext&) -> Result<KeyInfo> {
                              CMKFS_ASSIGN_OR_RETURN(KeyRecord key,
                                                     LoadKey(txn, vault, name));
                              return BuildKeyInfo(txn, vault, name, key);
                            });
  }

  Result<KeyVersionInfo> GetKeyVersion(std::string_view caller,
                                       const KeyId& id) override {
    return Observe<KeyVersionInfo>(
        caller, id.vault, id.name, "key.get", Permission::kGet,
        [&](const lmdb::Txn& txn, const VaultRecord&,
            OpContext& ctx) -> Result<KeyVersionInfo> {
          CMKFS_ASSIGN_OR_RETURN(KeyRecord key,
                                 LoadKey(txn, id.vault, id.name));
          std::string version = id.version;
          if (id.versionless()) {
            CMKFS_ASSIGN_OR_RETURN(
                version, LatestEnabledVersion(txn, id.vault, id.name, key));
          }
          ctx.key_id = KeyIdString(id.vault, id.name, version);
          CMKFS_ASSIGN_OR_RETURN(VersionRecord v,
                                 LoadVersion(txn, id.vault, id.name, version));
          return ToVersionInfo(id.vault, id.name, version, key.kty, v);
        });
  }

  Result<std::vector<KeyInfo>> ListKeys(std::string_view caller,
                                        std::string_view vault) override {
    return Observe<std::vector<KeyInfo>>(
        caller, vault, "", "key.list", Permission::kList,
        [&](const lmdb::Txn& txn, const VaultRecord&,
            OpContext&) -> Result<std::vector<KeyInfo>> {
          std::vector<KeyInfo> out;
          const std::string prefix = VaultPrefix(vault);
          CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(dbs_.keys));
          CMKFS_ASSIGN_OR_RETURN(bool more, c.Seek(prefix));
          while (more && c.key().starts_with(prefix)) {
            std::string name(c.key().substr(prefix.size()));
            CMKFS_ASSIGN_OR_RETURN(KeyRecord key, DecodeKey(c.value()));
            CMKFS_ASSIGN_OR_RETURN(KeyInfo info,
                                   BuildKeyInfo(txn, vault, name, key));
            out.push_back(std::move(info));
            CMKFS_ASSIGN_OR_RETURN(more, c.Next());
          }
          return out;
        });
  }

  Result<KeyVersionInfo> UpdateKeyAttributes(
      std::string_view caller, const KeyId& id,
      const AttributeUpdate& u) override {
    return Mutate<KeyVersionInfo>(
        caller, id.vault, id.name, "key.update", Permission::kUpdate,
        [&](lmdb::Txn& txn, VaultRecord&,
            OpContext& ctx) -> Result<KeyVersionInfo> {
          CMKFS_ASSIGN_OR_RETURN(KeyRecord key,
                                 LoadKey(txn, id.vault, id.name));
          if (key.deleted) return DeletedKeyError(id.vault, id.name, key);
          std::string version = id.version;
          if (id.versionless()) {
            if (key.versions.empty()) {
              return CorruptionError("key " + KeyIdString(id.vault, id.name) +
                                     " has no versions");
            }
            version = key.versions.back();
          }
          ctx.key_id = KeyIdString(id.vault, id.name, version);
          CMKFS_ASSIGN_OR_RETURN(VersionRecord v,
                                 LoadVersion(txn, id.vault, id.name, version));
          if (u.enabled) v.enabled = *u.enabled;
          if (u.expires) v.expires = *u.expires;
          if (u.not_before) v.not_before = *u.not_before;
          if (v.expires && v.not_before && *v.expires <= *v.not_before) {
            return InvalidArgumentError("expires (" + FormatTime(*v.expires) +
                                        ") must be later than not-before (" +
                                        FormatTime(*v.not_before) + ")");
          }
          if (u.expires) v.near_expiry_notified = false;
          v.updated = NowTime();
          CMKFS_RETURN_IF_ERROR(
              txn.Put(dbs_.versions, VersionDbKey(id.vault, id.name, version),
                      EncodeVersion(v)));
          return ToVersionInfo(id.vault, id.name, version, key.kty, v);
        });
  }

  Status DeleteKey(std::string_view caller, std::string_view vault,
                   std::string_view name) override {
    return Mutate<bool>(
               caller, vault, name, "key.delete", Permission::kDelete,
               [&](lmdb::Txn& txn, VaultRecord& rec,
                   OpContext&) -> Result<bool> {
                 CMKFS_ASSIGN_OR_RETURN(KeyRecord key,
                                        LoadKey(txn, vault, name));
                 if (key.deleted) return DeletedKeyError(vault, name, key);
                 const TimePoint now = NowTime();
                 key.deleted = true;
                 key.deleted_at = now;
                 key.scheduled_purge =
                     now + std::chrono::days(rec.info.spec.retention_days);
                 CMKFS_RETURN_IF_ERROR(PutKey(txn, vault, name, key));
                 spdlog::info("keystore: soft-deleted {}; purge scheduled {}",
                              KeyIdString(vault, name),
                              FormatTime(*key.scheduled_purge));
                 return true;
               })
        .status();
  }

  Status RecoverKey(std::string_view caller, std::string_view vault,
                    std::string_view name) override {
    return Mutate<bool>(
               caller, vault, name, "key.recover", Permission::kRecover,
               [&](lmdb::Txn& txn, VaultRecord&, OpContext&) -> Result<bool> {
                 CMKFS_ASSIGN_OR_RETURN(KeyRecord key,
                                        LoadKey(txn, vault, name));
                 if (!key.deleted) {
                   return FailedPreconditionError(
                       "key " + KeyIdString(vault, name) +
                       " is not deleted; only a soft-deleted key can be "
                       "recovered");
                 }
                 key.deleted = false;
                 key.deleted_at.reset();
                 key.scheduled_purge.reset();
                 CMKFS_RETURN_IF_ERROR(PutKey(txn, vault, name, key));
                 return true;
               })
        .status();
  }

  Status PurgeKey(std::string_view caller, std::string_view vault,
                  std::string_view name) override {
    std::vector<ReleasedMaterial> released;
    Status s =
        Mutate<bool>(
            caller, vault, name, "key.purge", Permission::kPurge,
            [&](lmdb::Txn& txn, VaultRecord& rec, OpContext&) -> Result<bool> {
              CMKFS_ASSIGN_OR_RETURN(KeyRecord key, LoadKey(txn, vault, name));
              if (!key.deleted) {
                return FailedPreconditionError(
                    "key " + KeyIdString(vault, name) +
                    " is not deleted; delete it first with: cmkctl "
                    "key delete " +
                    std::string(vault) + " " + std::string(name));
              }
              if (rec.info.spec.purge_protection) {
                return FailedPreconditionError(
                    "purge protection is on for vault " + std::string(vault) +
                    "; the key is purged automatically on " +
                    FormatTime(key.scheduled_purge.value_or(TimePoint{})));
              }
              CMKFS_RETURN_IF_ERROR(EraseKey(txn, vault, name, key, &released));
              return true;
            })
            .status();
    if (s.ok()) DestroyMaterial(released);
    return s;
  }

  Status SetRotationPolicy(std::string_view caller, std::string_view vault,
                           std::string_view name,
                           const RotationPolicy& policy) override {
    return Mutate<bool>(
               caller, vault, name, "key.set-rotation-policy",
               Permission::kUpdate,
               [&](lmdb::Txn& txn, VaultRecord&, OpContext&) -> Result<bool> {
                 for (const auto* d :
                      {&policy.rotate_after, &policy.notify_before,
                       &policy.expires_in}) {
                   if (*d && d->value() < seconds(1)) {
                     return InvalidArgumentError(
                         "rotation policy durations must be at least 1s, "
                         "got " +
                         FormatDuration(d->value()));
                   }
                 }
                 CMKFS_ASSIGN_OR_RETURN(KeyRecord key,
                                        LoadKey(txn, vault, name));
                 if (key.deleted) return DeletedKeyError(vault, name, key);
                 key.rotation_policy = policy;
                 CMKFS_RETURN_IF_ERROR(PutKey(txn, vault, name, key));
                 return true;
               })
        .status();
  }

  Result<std::vector<KeyId>> ApplyRotationPolicies() override;

  // --- cryptographic operations ---------------------------------------------
  Result<std::vector<uint8_t>> WrapKey(std::string_view caller, const KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       WrapAlgorithm alg) override {
    OpContext ctx;
    bool audit = false;
    BackendKind kind = BackendKind::kSoftware;
    auto usable = LoadUsable(caller, id, alg, "wrapKey", Permission::kWrapKey,
                             &ctx, &audit, &kind);
    Result<std::vector<uint8_t>> out = usable.status();
    if (usable.ok()) {
      Result<KeyBackend*> backend = BackendFor(kind);
      out = backend.ok() ? (*backend)->Wrap(*usable, ctx.key_id, plaintext,
                                            label, *HashFor(alg))
                         : backend.status();
    }
    if (audit) AuditSeparately(ctx, out.status());
    return out;
  }

  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        WrapAlgorithm alg) override {
    OpContext ctx;
    bool audit = false;
    BackendKind kind = BackendKind::kSoftware;
    auto usable = LoadUsable(caller, id, alg, "unwrapKey",
                             Permission::kUnwrapKey, &ctx, &audit, &kind);
    Result<crypto::SecretBytes> out = usable.status();
    if (usable.ok()) {
      Result<KeyBackend*> backend = BackendFor(kind);
      if (backend.ok()) {
        out =
            (*backend)->Unwrap(*usable, ctx.key_id, blob, label, *HashFor(alg));
      } else {
        out = backend.status();
      }
    }
    if (audit) AuditSeparately(ctx, out.status());
    return out;
  }

  // --- change detection -----------------------------------------------------
  Result<uint64_t> ChangeCounter() override {
    uint64_t n = 0;
    CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(n, ReadU64(txn, dbs_.meta, kMetaCounter));
      return Status::Ok();
    }));
    return n;
  }

  std::vector<Status> CheckUsable(
      std::span<const UsabilityQuery> queries) override {
    std::vector<Status> out;
    const TimePoint now = NowTime();
    Status s = env_->View([&](lmdb::Txn& txn) -> Status {
      out.clear();
      for (const UsabilityQuery& q : queries) {
        out.push_back(UsableIn(txn, q, now));
      }
      return Status::Ok();
    });
    if (!s.ok()) {
      out.assign(queries.size(),
                 IOError("keystore unreadable: " + s.message()));
    }
    return out;
  }

 private:
  TimePoint NowTime() const {
    return options_.clock ? options_.clock() : cmkfs::Now();
  }

  // --- record access --------------------------------------------------------
  Result<VaultRecord> LoadVault(const lmdb::Txn& txn, std::string_view vault) {
    auto v = txn.Get(dbs_.vaults, vault);
    if (!v.ok()) {
      if (v.status().kind() == ErrorKind::kNotFound) {
        return NotFoundError("vault " + std::string(vault) + " not found");
      }
      return v.status();
    }
    return DecodeVault(*v);
  }
  Status PutVault(lmdb::Txn& txn, const VaultRecord& rec) {
    return txn.Put(dbs_.vaults, rec.info.spec.name, EncodeVault(rec));
  }
  Result<KeyRecord> LoadKey(const lmdb::Txn& txn, std::string_view vault,
                            std::string_view name) {
    auto v = txn.Get(dbs_.keys, KeyDbKey(vault, name));
    if (!v.ok()) {
      if (v.status().kind() == ErrorKind::kNotFound) {
        return NotFoundError("key " + KeyIdString(vault, name) + " not found");
      }
      return v.status();
    }
    return DecodeKey(*v);
  }
  Status PutKey(lmdb::Txn& txn, std::string_view vault, std::string_view name,
                const KeyRecord& key) {
    return txn.Put(dbs_.keys, KeyDbKey(vault, name), EncodeKey(key));
  }
  Result<VersionRecord> LoadVersion(const lmdb::Txn& txn,
                                    std::string_view vault,
                                    std::string_view name,
                                    std::string_view version) {
    auto v = txn.Get(dbs_.versions, VersionDbKey(vault, name, version));
    if (!v.ok()) {
      if (v.status().kind() == ErrorKind::kNotFound) {
        return NotFoundError("key version " +
                             KeyIdString(vault, name, version) + " not found");
      }
      return v.status();
    }
    return DecodeVersion(*v);
  }

  Result<std::string> LatestEnabledVersion(const lmdb::Txn& txn,
                                           std::string_view vault,
                                           std::string_view name,
                                           const KeyRecord& key) {
    for (auto it = key.versions.rbegin(); it != key.versions.rend(); ++it) {
      CMKFS_ASSIGN_OR_RETURN(VersionRecord v,
                             LoadVersion(txn, vault, name, *it));
      if (v.enabled) return *it;
    }
    return KeyUnavailableError("key " + KeyIdString(vault, name) +
                               " has no enabled version");
  }

  Result<KeyInfo> BuildKeyInfo(const lmdb::Txn& txn, std::string_view vault,
                               std::string_view name, const KeyRecord& key) {
    KeyInfo info;
    info.vault = std::string(vault);
    info.name = std::string(name);
    info.kty = key.kty;
    info.deleted = key.deleted;
    info.deleted_at = key.deleted_at;
    info.scheduled_purge = key.scheduled_purge;
    info.rotation_policy = key.rotation_policy;
    for (const std::string& version : key.versions) {
      CMKFS_ASSIGN_OR_RETURN(VersionRecord v,
                             LoadVersion(txn, vault, name, version));
      info.versions.push_back(ToVersionInfo(vault, name, version, key.kty, v));
    }
    return info;
  }

  // Appends a new version (the latest) to `key` and writes both records.
  Result<KeyVersionInfo> AddVersion(lmdb::Txn& txn, std::string_view vault,
                                    std::string_view name, KeyRecord& key,
                                    const std::string& version,
                                    const StoredKey& stored) {
    const TimePoint now = NowTime();
    VersionRecord v;
    v.bits = stored.bits;
    v.created = now;
    v.updated = now;
    v.stored = stored;
    v.backend = key.kty == KeyType::kRsaHsm ? BackendKind::kPkcs11
                                            : BackendKind::kSoftware;
    if (key.rotation_policy.expires_in) {
      v.expires = now + duration_cast<seconds>(*key.rotation_policy.expires_in);
    }
    key.bits = stored.bits;
    key.versions.push_back(version);
    key.last_rotation = now;
    CMKFS_RETURN_IF_ERROR(txn.Put(
        dbs_.versions, VersionDbKey(vault, name, version), EncodeVersion(v)));
    CMKFS_RETURN_IF_ERROR(PutKey(txn, vault, name, key));
    spdlog::info("keystore: new key version {} ({} bits)",
                 KeyIdString(vault, name, version), v.bits);
    return ToVersionInfo(vault, name, version, key.kty, v);
  }

  // Deletes the key and its versions; `released` receives the backend
  // material of every version, for DestroyMaterial after commit.
  Status EraseKey(lmdb::Txn& txn, std::string_view vault, std::string_view name,
                  const KeyRecord& key,
                  std::vector<ReleasedMaterial>* released) {
    released->clear();
    for (const std::string& version : key.versions) {
      auto v = LoadVersion(txn, vault, name, version);
      if (v.ok()) {
        const std::string id = KeyIdString(vault, name, version);
        CMKFS_RETURN_IF_ERROR(txn.Put(dbs_.released, id, EncodeVersion(*v)));
        released->push_back({id, v->backend, std::move(v->stored)});
      }
      Status s = txn.Delete(dbs_.versions, VersionDbKey(vault, name, version));
      if (!s.ok() && s.kind() != ErrorKind::kNotFound) return s;
    }
    return txn.Delete(dbs_.keys, KeyDbKey(vault, name));
  }

  // Destroys the backend material of removed versions (their entries in
  // dbs_.released), then drops the entries of those destroyed. What fails
  // stays for the next open, with a warning.
  void DestroyMaterial(const std::vector<ReleasedMaterial>& released) {
    std::vector<std::string> destroyed;
    for (const ReleasedMaterial& r : released) {
      const std::string& id = r.id;
      Result<KeyBackend*> backend = BackendFor(r.kind);
      Status s =
          backend.ok() ? (*backend)->Destroy(r.stored, id) : backend.status();
      if (s.ok()) {
        destroyed.push_back(id);
      } else {
        spdlog::warn(
            "keystore: releasing key material of {}: {}; retried when the "
            "keystore is next opened",
            id, s.ToString());
      }
    }
    if (destroyed.empty()) return;
    Status s = env_->Update([&](lmdb::Txn& txn) -> Status {
      for (const std::string& id : destroyed) {
        Status d = txn.Delete(dbs_.released, id);
        if (!d.ok() && d.kind() != ErrorKind::kNotFound) return d;
      }
      return Status::Ok();
    });
    if (!s.ok()) {
      spdlog::warn("keystore: recording released key material: {}",
                   s.ToString());
    }
  }

  // The releases an earlier process committed but did not finish.
  void FinishReleases() {
    std::vector<ReleasedMaterial> pending;
    Status s = env_->View([&](lmdb::Txn& txn) -> Status {
      pending.clear();
      CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(dbs_.released));
      CMKFS_ASSIGN_OR_RETURN(bool more, c.First());
      while (more) {
        auto v = DecodeVersion(c.value());
        if (v.ok()) {
          pending.push_back(
              {std::string(c.key()), v->backend, std::move(v->stored)});
        } else {
          spdlog::warn("keystore: released key material of {}: {}",
                       std::string(c.key()), v.status().ToString());
        }
        CMKFS_ASSIGN_OR_RETURN(more, c.Next());
      }
      return Status::Ok();
    });
    if (!s.ok()) {
      spdlog::warn("keystore: reading released key material: {}", s.ToString());
    }
    DestroyMaterial(pending);
  }

  Status CheckKeyType(const VaultRecord& rec, KeyType kty) {
    if (kty != KeyType::kRsaHsm) return Status::Ok();
    if (rec.info.spec.sku != VaultSku::kPremium) {
      return FailedPreconditionError(
          "RSA-HSM keys need a premium vault; this vault's SKU is " +
          std::string(VaultSkuName(rec.info.spec.sku)));
    }
    if (hsm_ == nullptr) {
      return NotSupportedError(
          "RSA-HSM keys need a PKCS#11 module: set [pkcs11] module, "
          "token_label and pin_file in the config (module " +
          options_.pkcs11.module.string() + " and pin_file " +
          options_.pkcs11.pin_file.string() + " must exist)");
    }
    return Status::Ok();
  }

  KeyBackend& BackendFor(KeyType kty) {
    return kty == KeyType::kRsaHsm && hsm_ ? *hsm_ : *software_;
  }

  Result<KeyBackend*> BackendFor(BackendKind kind) {
    if (kind == BackendKind::kSoftware) return software_.get();
    if (hsm_ == nullptr) {
      return NotSupportedError(
          "this key lives in a PKCS#11 token, but no PKCS#11 module is "
          "enabled; set [pkcs11] module, token_label and pin_file in the "
          "config");
    }
    return hsm_.get();
  }

  // Adds a new version to key `name`: checks permission and `check` in a
  // read transaction, makes the key material with `make(id)` outside any
  // transaction (key generation is slow), then in one write transaction
  // checks again and appends the version to the record `base(txn)` returns.
  // HSM material of a version that was not stored is released. `kty` may be
  // set by `check`.
  template <typename Check, typename Make, typename Base>
  Result<KeyVersionInfo> AddNewVersion(
      std::string_view caller, std::string_view vault, std::string_view name,
      std::string_view operation, Permission needed, const KeyType& kty,
      Check&& check, Make&& make, Base&& base) {
    CMKFS_RETURN_IF_ERROR(
        Precheck(caller, vault, name, operation, needed, check));
    CMKFS_ASSIGN_OR_RETURN(std::string version, crypto::RandomHex(16));
    const std::string id = KeyIdString(vault, name, version);
    Result<StoredKey> stored = make(id);
    return ReleaseIfFailed(
        kty, id, stored,
        Mutate<KeyVersionInfo>(
            caller, vault, name, operation, needed,
            [&](lmdb::Txn& txn, VaultRecord& rec,
                OpContext& ctx) -> Result<KeyVersionInfo> {
              CMKFS_RETURN_IF_ERROR(check(txn, rec));
              CMKFS_RETURN_IF_ERROR(stored.status());
              ctx.key_id = id;
              CMKFS_ASSIGN_OR_RETURN(KeyRecord key, base(txn));
              return AddVersion(txn, vault, name, key, version, *stored);
            }));
  }

  // Destroys freshly created material (token objects, erase slots) whose
  // version record was not written (the commit failed or the key changed
  // meanwhile).
  Result<KeyVersionInfo> ReleaseIfFailed(KeyType kty, const std::string& id,
                                         const Result<StoredKey>& stored,
                                         Result<KeyVersionInfo> result) {
    if (!result.ok() && stored.ok()) {
      Status s = BackendFor(kty).Destroy(*stored, id);
      if (!s.ok()) {
        spdlog::warn("keystore: releasing unused key material of {}: {}", id,
                     s.ToString());
      }
    }
    return result;
  }

  Status CheckKeyAbsent(const lmdb::Txn& txn, std::string_view vault,
                        std::string_view name) {
    auto existing = LoadKey(txn, vault, name);
    if (!existing.ok()) {
      return existing.status().kind() == ErrorKind::kNotFound
                 ? Status::Ok()
                 : existing.status();
    }
    if (existing->deleted) {
      return AlreadyExistsError(
          "key " + KeyIdString(vault, name) +
          " exists in soft-deleted state (purge scheduled " +
          FormatTime(existing->scheduled_purge.value_or(TimePoint{})) +
          "); recover it with: cmkctl key recover " + std::string(vault) + " " +
          std::string(name));
    }
    return AlreadyExistsError("key " + KeyIdString(vault, name) +
                              " already exists; add a version with: cmkctl "
                              "key rotate " +
                              std::string(vault) + " " + std::string(name));
  }

  Status DeletedKeyError(std::string_view vault, std::string_view name,
                         const KeyRecord& key) {
    return FailedPreconditionError(
        "key " + KeyIdString(vault, name) + " is deleted (purge scheduled " +
        FormatTime(key.scheduled_purge.value_or(TimePoint{})) +
        "); recover it first with: cmkctl key recover " + std::string(vault) +
        " " + std::string(name));
  }

  // --- counters and audit ---------------------------------------------------
  Status BumpCounter(lmdb::Txn& txn) {
    CMKFS_ASSIGN_OR_RETURN(uint64_t n, ReadU64(txn, dbs_.meta, kMetaCounter));
    return WriteU64(txn, dbs_.meta, kMetaCounter, n + 1);
  }

  // Writes `rec` as the next link of the vault's hash chain (the head in
  // meta "audit_head/VAULT" moves in the same transaction).
  Status PutAudit(lmdb::Txn& txn, std::string_view vault, AuditRecord rec) {
    CMKFS_ASSIGN_OR_RETURN(uint64_t seq,
                           ReadU64(txn, dbs_.meta, kMetaAuditSeq));
    CMKFS_RETURN_IF_ERROR(WriteU64(txn, dbs_.meta, kMetaAuditSeq, seq + 1));
    const std::string head_key =
        std::string(kMetaAuditHead) + std::string(vault);
    AuditHead head;
    auto raw = txn.Get(dbs_.meta, head_key);
    if (raw.ok()) {
      CMKFS_ASSIGN_OR_RETURN(head, DecodeAuditHead(*raw));
    } else if (raw.status().kind() != ErrorKind::kNotFound) {
      return raw.status();
    }
    rec.entry.seq = head.seq + 1;
    rec.entry.prev_hash =
        head.seq == 0 ? std::string(kAuditChainGenesis) : head.hash;
    rec.entry.hash = AuditChainHash(vault, rec.entry);
    CMKFS_RETURN_IF_ERROR(txn.Put(
        dbs_.meta, head_key, EncodeAuditHead({rec.entry.seq, rec.entry.hash})));
    const int64_t t = rec.entry.time.time_since_epoch().count();
    std::string key =
        VaultPrefix(vault) +
        EncodeU64Key(static_cast<uint64_t>(std::max<int64_t>(0, t))) +
        EncodeU64Key(seq);
    return txn.Put(dbs_.audit, key, EncodeAudit(rec));
  }

  Status WriteAudit(lmdb::Txn& txn, const OpContext& ctx,
                    const Status& result) {
    AuditRecord rec;
    rec.entry.time = NowTime();
    rec.entry.identity = ctx.identity;
    rec.entry.operation = ctx.operation;
    rec.entry.key_id = ctx.key_id;
    rec.entry.result = AuditResult(result);
    rec.key_name = ctx.key_name;
    ScopedAuditCaller::Stamp(rec.entry);
    return PutAudit(txn, ctx.vault, rec);
  }

  // Queues the audit entry of a call that changed nothing (a read, a
  // wrap/unwrap, a refusal). The audit writer thread commits queued entries
  // in batches (one fsync for many), or the next mutation takes them into its
  // own transaction; ReadAudit and the destructor wait for the queue.
  void AuditSeparately(const OpContext& ctx, const Status& result)
      EXCLUDES(audit_mu_) {
    PendingAudit p;
    p.vault = ctx.vault;
    p.rec.entry.time = NowTime();
    p.rec.entry.identity = ctx.identity;
    p.rec.entry.operation = ctx.operation;
    p.rec.entry.key_id = ctx.key_id;
    p.rec.entry.result = AuditResult(result);
    p.rec.key_name = ctx.key_name;
    ScopedAuditCaller::Stamp(p.rec.entry);
    {
      MutexLock lock(&audit_mu_);
      audit_queue_.push_back(std::move(p));
    }
    audit_cv_.SignalAll();
  }

  struct PendingAudit {
    std::string vault;
    AuditRecord rec;
  };

  std::vector<PendingAudit> TakePendingAudit() EXCLUDES(audit_mu_) {
    MutexLock lock(&audit_mu_);
    std::vector<PendingAudit> out(std::make_move_iterator(audit_queue_.begin()),
                                  std::make_move_iterator(audit_queue_.end()));
    audit_queue_.clear();
    if (!out.empty()) ++audit_in_flight_;
    return out;
  }

  // Ends a TakePendingAudit. When the transaction that carried the batch was
  // not committed (most often because the operation itself failed), the
  // entries go back to the front of the queue for the audit writer, which
  // reports them if they cannot be written at all. Nothing is logged here:
  // the caller reports the operation's own error, once.
  void FinishPendingAudit(std::vector<PendingAudit>& batch, bool committed)
      EXCLUDES(audit_mu_) {
    if (batch.empty()) return;
    {
      MutexLock lock(&audit_mu_);
      if (!committed) {
        audit_queue_.insert(audit_queue_.begin(),
                            std::make_move_iterator(batch.begin()),
                            std::make_move_iterator(batch.end()));
      }
      --audit_in_flight_;
    }
    audit_cv_.SignalAll();
  }

  Status PutPendingAudit(lmdb::Txn& txn,
                         const std::vector<PendingAudit>& batch) {
    for (const PendingAudit& p : batch) {
      CMKFS_RETURN_IF_ERROR(PutAudit(txn, p.vault, p.rec));
    }
    return Status::Ok();
  }

  // The audit writer thread: commits whatever is queued, one transaction per
  // batch. A batch that cannot be written (I/O error, disk full) is logged and
  // dropped rather than retried forever.
  void AuditWriterLoop() EXCLUDES(audit_mu_) {
    MutexLock lock(&audit_mu_);
    while (true) {
      while (!audit_stop_ && audit_queue_.empty()) audit_cv_.Wait(&audit_mu_);
      if (audit_queue_.empty()) return;  // stopping, and nothing left
      std::vector<PendingAudit> batch(
          std::make_move_iterator(audit_queue_.begin()),
          std::make_move_iterator(audit_queue_.end()));
      audit_queue_.clear();
      ++audit_in_flight_;
      lock.Unlock();
      Status s = env_->Update(
          [&](lmdb::Txn& txn) { return PutPendingAudit(txn, batch); });
      if (!s.ok()) {
        spdlog::error("keystore: lost {} audit entries: {}", batch.size(),
                      s.ToString());
      }
      lock.Lock();
      --audit_in_flight_;
      audit_cv_.SignalAll();
    }
  }

  // Waits until every queued audit entry is committed.
  void FlushAudit() EXCLUDES(audit_mu_) {
    MutexLock lock(&audit_mu_);
    while (!audit_queue_.empty() || audit_in_flight_ != 0) {
      audit_cv_.Wait(&audit_mu_);
    }
  }

  OpContext MakeContext(std::string_view vault, std::string_view key_name,
                        std::string_view operation) {
    OpContext ctx;
    ctx.vault = std::string(vault);
    ctx.key_name = std::string(key_name);
    ctx.operation = std::string(operation);
    if (!key_name.empty()) ctx.key_id = KeyIdString(vault, key_name);
    return ctx;
  }

  // Runs `body` in one write transaction with the permission check, the
  // audit entry and the change-counter bump. `needed` nullopt = admin only.
  template <typename T, typename Body>
  Result<T> Mutate(std::string_view caller, std::string_view vault,
                   std::string_view key_name, std::string_view operation,
                   std::optional<Permission> needed, Body&& body) {
    OpContext ctx = MakeContext(vault, key_name, operation);
    std::optional<T> out;
    Status op_status;
    bool vault_found = false;
    std::vector<PendingAudit> earlier = TakePendingAudit();
    Status s = env_->Update([&](lmdb::Txn& txn) -> Status {
      out.reset();
      vault_found = false;
      CMKFS_RETURN_IF_ERROR(PutPendingAudit(txn, earlier));
      auto rec = LoadVault(txn, vault);
      if (!rec.ok()) return op_status = rec.status();
      vault_found = true;
      ctx.identity = EffectiveIdentity(rec->info, caller);
      if (needed) {
        op_status = Authorize(rec->info, caller, *needed);
      } else if (!IsAdmin(rec->info, caller)) {
        op_status = PermissionDeniedError(
            "identity " + std::string(caller) + " is not the admin of vault " +
            std::string(vault) +
            "; only the vault admin may change access policies");
      } else {
        op_status = Status::Ok();
      }
      if (!op_status.ok()) return op_status;
      Result<T> r = body(txn, *rec, ctx);
      if (!r.ok()) return op_status = r.status();
      out = std::move(r).value();
      op_status = Status::Ok();
      CMKFS_RETURN_IF_ERROR(WriteAudit(txn, ctx, Status::Ok()));
      return BumpCounter(txn);
    });
    FinishPendingAudit(earlier, /*committed=*/s.ok());
    if (s.ok()) return std::move(*out);
    if (vault_found && !op_status.ok()) AuditSeparately(ctx, op_status);
    return s;
  }

  // Checks permission and `check` in a read transaction; audits a refusal.
  // Used before slow work (key generation) that the write transaction then
  // confirms.
  template <typename Check>
  Status Precheck(std::string_view caller, std::string_view vault,
                  std::string_view key_name, std::string_view operation,
                  Permission needed, Check&& check) {
    OpContext ctx = MakeContext(vault, key_name, operation);
    Status op_status;
    bool vault_found = false;
    Status s = env_->View([&](lmdb::Txn& txn) -> Status {
      auto rec = LoadVault(txn, vault);
      if (!rec.ok()) return op_status = rec.status();
      vault_found = true;
      ctx.identity = EffectiveIdentity(rec->info, caller);
      op_status = Authorize(rec->info, caller, needed);
      if (op_status.ok()) op_status = check(txn, *rec);
      return op_status;
    });
    if (vault_found && !op_status.ok()) AuditSeparately(ctx, op_status);
    return s;
  }

  // Runs a read-only `body` with the permission check, then audits.
  template <typename T, typename Body>
  Result<T> Observe(std::string_view caller, std::string_view vault,
                    std::string_view key_name, std::string_view operation,
                    Permission needed, Body&& body) {
    OpContext ctx = MakeContext(vault, key_name, operation);
    std::optional<T> out;
    bool vault_found = false;
    Status s = env_->View([&](lmdb::Txn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(VaultRecord rec, LoadVault(txn, vault));
      vault_found = true;
      ctx.identity = EffectiveIdentity(rec.info, caller);
      CMKFS_RETURN_IF_ERROR(Authorize(rec.info, caller, needed));
      Result<T> r = body(txn, rec, ctx);
      if (!r.ok()) return r.status();
      out = std::move(r).value();
      return Status::Ok();
    });
    if (vault_found) AuditSeparately(ctx, s);
    if (!s.ok()) return s;
    return std::move(*out);
  }

  // Resolves `id` for a wrap/unwrap: permission, version, usability. Returns
  // the stored key; `*audit` tells whether the call must be audited.
  Result<StoredKey> LoadUsable(std::string_view caller, const KeyId& id,
                               WrapAlgorithm alg, std::string_view operation,
                               Permission needed, OpContext* ctx, bool* audit,
                               BackendKind* kind) {
    *ctx = MakeContext(id.vault, id.name, operation);
    ctx->key_id = id.ToString();
    StoredKey stored;
    const TimePoint now = NowTime();
    Status s = env_->View([&](lmdb::Txn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(VaultRecord rec, LoadVault(txn, id.vault));
      *audit = true;
      ctx->identity = EffectiveIdentity(rec.info, caller);
      CMKFS_RETURN_IF_ERROR(Authorize(rec.info, caller, needed));
      CMKFS_RETURN_IF_ERROR(HashFor(alg).status());
      if (id.versionless()) {
        return InvalidArgumentError(
            "key id " + id.ToString() + " has no version; " +
            std::string(operation) + " needs cmk://VAULT/keys/NAME/VERSION");
      }
      CMKFS_ASSIGN_OR_RETURN(KeyRecord key, LoadKey(txn, id.vault, id.name));
      CMKFS_ASSIGN_OR_RETURN(VersionRecord v,
                             LoadVersion(txn, id.vault, id.name, id.version));
      CMKFS_RETURN_IF_ERROR(Usability(key, v, ctx->key_id, now));
      stored = std::move(v.stored);
      *kind = v.backend;
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return stored;
  }

  Status UsableIn(const lmdb::Txn& txn, const UsabilityQuery& q,
                  TimePoint now) {
    const KeyId& id = q.key_id;
    std::string id_text = id.ToString();
    auto unavailable = [&](const Status& s) {
      return s.kind() == ErrorKind::kKeyUnavailable
                 ? s
                 : KeyUnavailableError(id_text + ": " + s.message());
    };
    auto rec = LoadVault(txn, id.vault);
    if (!rec.ok()) return unavailable(rec.status());
    if (!(PermissionsOf(rec->info, q.identity) &
          static_cast<uint32_t>(Permission::kUnwrapKey))) {
      return KeyUnavailableError(id_text + ": identity " + q.identity +
                                 " lacks unwrapKey on vault " + id.vault);
    }
    auto key = LoadKey(txn, id.vault, id.name);
    if (!key.ok()) return unavailable(key.status());
    if (key->deleted) return KeyUnavailableError(id_text + ": key deleted");
    std::string version = id.version;
    if (id.versionless()) {
      auto latest = LatestEnabledVersion(txn, id.vault, id.name, *key);
      if (!latest.ok()) return unavailable(latest.status());
      version = *latest;
      id_text = KeyIdString(id.vault, id.name, version);
    }
    auto v = LoadVersion(txn, id.vault, id.name, version);
    if (!v.ok()) return unavailable(v.status());
    return Usability(*key, *v, id_text, now);
  }

  std::unique_ptr<lmdb::Env> env_;
  Dbs dbs_;
  std::unique_ptr<KeyBackend> software_;
  std::unique_ptr<KeyBackend> hsm_;  // null unless options.hsm_enabled
  KeyStoreOptions options_;

  // Audit queue (see AuditSeparately). A leaf lock: nothing else is taken
  // while it is held (the writer commits with it released).
  Mutex audit_mu_;
  CondVar audit_cv_;
  std::deque<PendingAudit> audit_queue_ GUARDED_BY(audit_mu_);
  int audit_in_flight_ GUARDED_BY(audit_mu_) = 0;
  bool audit_stop_ GUARDED_BY(audit_mu_) = false;
  std::thread audit_thread_;  // last: starts after everything it uses
};

Result<std::vector<KeyId>> KeyStoreImpl::ApplyRotationPolicies() {
  struct Due {
    std::string vault, name;
    int bits = 0;
    KeyType kty = KeyType::kRsa;
    std::string latest;  // the version that was latest when we looked
  };
  struct Notice {
    std::string vault, name, version;
    TimePoint expires{};
  };
  struct Purge {
    std::string vault, name;
  };
  std::vector<Due> due;
  std::vector<Notice> notices;
  std::vector<Purge> purges;
  const TimePoint now = NowTime();

  CMKFS_RETURN_IF_ERROR(env_->View([&](lmdb::Txn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(dbs_.keys));
    CMKFS_ASSIGN_OR_RETURN(bool more, c.First());
    while (more) {
      std::string_view k = c.key();
      size_t slash = k.find('/');
      if (slash == std::string_view::npos) {
        return CorruptionError("keys db: malformed key");
      }
      std::string vault(k.substr(0, slash)), name(k.substr(slash + 1));
      CMKFS_ASSIGN_OR_RETURN(KeyRecord key, DecodeKey(c.value()));
      CMKFS_ASSIGN_OR_RETURN(more, c.Next());
      if (key.deleted) {
        if (key.scheduled_purge && now >= *key.scheduled_purge) {
          purges.push_back({vault, name});
        }
        continue;
      }
      const RotationPolicy& p = key.rotation_policy;
      if (p.rotate_after && !key.versions.empty() &&
          (key.kty == KeyType::kRsa || hsm_ != nullptr)) {
        CMKFS_ASSIGN_OR_RETURN(
            VersionRecord latest,
            LoadVersion(txn, vault, name, key.versions.back()));
        if (now - latest.created >= *p.rotate_after) {
          due.push_back({vault, name, key.bits, key.kty, key.versions.back()});
        }
      }
      if (p.notify_before) {
        for (const std::string& version : key.versions) {
          CMKFS_ASSIGN_OR_RETURN(VersionRecord v,
                                 LoadVersion(txn, vault, name, version));
          if (v.expires && !v.near_expiry_notified &&
              *v.expires - now <= *p.notify_before) {
            notices.push_back({vault, name, version, *v.expires});
          }
        }
      }
    }
    return Status::Ok();
  }));

  std::vector<KeyId> created;
  Status first_error;
  auto note_error = [&](const Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
  };

  for (const Due& d : due) {
    CMKFS_ASSIGN_OR_RETURN(std::string version, crypto::RandomHex(16));
    const std::string id = KeyIdString(d.vault, d.name, version);
    auto stored = BackendFor(d.kty).Generate(d.bits, id);
    OpContext ctx = MakeContext(d.vault, d.name, "key.rotate");
    ctx.identity = std::string(kSystemIdentity) + " (rotation policy)";
    ctx.key_id = id;
    if (!stored.ok()) {
      AuditSeparately(ctx, stored.status());
      note_error(stored.status());
      continue;
    }
    bool rotated = false;
    Status s = env_->Update([&](lmdb::Txn& txn) -> Status {
      rotated = false;
      auto key = LoadKey(txn, d.vault, d.name);
      if (!key.ok()) {
        return key.status().kind() == ErrorKind::kNotFound ? Status::Ok()
                                                           : key.status();
      }
      if (key->deleted || key->versions.empty() ||
          key->versions.back() != d.latest) {
        return Status::Ok();  // changed meanwhile; next run decides again
      }
      CMKFS_RETURN_IF_ERROR(
          AddVersion(txn, d.vault, d.name, *key, version, *stored).status());
      CMKFS_RETURN_IF_ERROR(WriteAudit(txn, ctx, Status::Ok()));
      rotated = true;
      return BumpCounter(txn);
    });
    note_error(s);
    if (!rotated) {
      Status released = BackendFor(d.kty).Destroy(*stored, id);
      if (!released.ok()) {
        spdlog::warn("keystore: releasing unused key material of {}: {}", id,
                     released.ToString());
      }
    }
    if (s.ok() && rotated) {
      spdlog::info("keystore: rotation policy rotated {} to version {}",
                   KeyIdString(d.vault, d.name), version);
      created.push_back(KeyId{d.vault, d.name, version});
    }
  }

  for (const Notice& n : notices) {
    const std::string id = KeyIdString(n.vault, n.name, n.version);
    bool recorded = false;
    Status s = env_->Update([&](lmdb::Txn& txn) -> Status {
      recorded = false;
      auto v = LoadVersion(txn, n.vault, n.name, n.version);
      if (!v.ok() || v->near_expiry_notified) return Status::Ok();
      v->near_expiry_notified = true;
      CMKFS_RETURN_IF_ERROR(txn.Put(dbs_.versions,
                                    VersionDbKey(n.vault, n.name, n.version),
                                    EncodeVersion(*v)));
      OpContext ctx = MakeContext(n.vault, n.name, "key.near-expiry");
      ctx.identity = std::string(kSystemIdentity) + " (rotation policy)";
      ctx.key_id = id;
      AuditRecord rec;
      rec.entry.time = now;
      rec.entry.identity = ctx.identity;
      rec.entry.operation = ctx.operation;
      rec.entry.key_id = id;
      rec.entry.result = "ok: expires " + FormatTime(n.expires);
      rec.key_name = n.name;
      recorded = true;
      return PutAudit(txn, n.vault, rec);
    });
    note_error(s);
    if (s.ok() && recorded) {
      spdlog::warn("keystore: key version {} expires {} (near expiry)", id,
                   FormatTime(n.expires));
    }
  }

  for (const Purge& p : purges) {
    std::vector<ReleasedMaterial> released;
    bool erased = false;
    Status s = env_->Update([&](lmdb::Txn& txn) -> Status {
      erased = false;
      auto key = LoadKey(txn, p.vault, p.name);
      if (!key.ok() || !key->deleted || !key->scheduled_purge ||
          now < *key->scheduled_purge) {
        return Status::Ok();
      }
      CMKFS_RETURN_IF_ERROR(EraseKey(txn, p.vault, p.name, *key, &released));
      OpContext ctx = MakeContext(p.vault, p.name, "key.purge");
      ctx.identity = std::string(kSystemIdentity) + " (retention expired)";
      CMKFS_RETURN_IF_ERROR(WriteAudit(txn, ctx, Status::Ok()));
      erased = true;
      return BumpCounter(txn);
    });
    note_error(s);
    if (s.ok() && erased) {
      DestroyMaterial(released);
      spdlog::info("keystore: purged {} (soft-delete retention expired)",
                   KeyIdString(p.vault, p.name));
    }
  }
  if (!first_error.ok() && created.empty()) return first_error;
  if (!first_error.ok()) {
    spdlog::error("keystore: applying rotation policies: {}",
                  first_error.ToString());
  }
  return created;
}

// master_key = tpm2: unseals the sealed file; only a vault that does not
// exist yet gets a fresh sealed key.
Result<crypto::SecretBytes> ObtainTpm2MasterKey(
    lmdb::Env& env, const Dbs& dbs, const KeyStoreOptions& options) {
  auto key = UnsealMasterKey(options);
  if (key.status().kind() != ErrorKind::kNotFound) return key;
  bool vault_exists = false;
  CMKFS_RETURN_IF_ERROR(env.View([&](lmdb::Txn& txn) -> Status {
    auto check = txn.Get(dbs.meta, kMetaCheck);
    vault_exists = check.ok();
    if (check.ok() || check.status().kind() == ErrorKind::kNotFound) {
      return Status::Ok();
    }
    return check.status();
  }));
  if (vault_exists) {
    return FailedPreconditionError(
        "vault " + options.dir.string() + " has no TPM2-sealed master key " +
        options.tpm2_sealed_file.string() +
        "; if its key is still in the file " +
        options.master_key_file.string() +
        ", move it into the TPM with: cmkctl vault migrate-master-key --to "
        "tpm2");
  }
  return CreateSealedMasterKey(options);
}

// Derives or loads the master key; for a passphrase, the scrypt salt lives in
// the meta database (created on first open).
Result<crypto::SecretBytes> ObtainMasterKey(lmdb::Env& env, const Dbs& dbs,
                                            const KeyStoreOptions& options) {
  const MasterKeySource source = EffectiveMasterKeySource(options);
  if (source == MasterKeySource::kTpm2) {
    return ObtainTpm2MasterKey(env, dbs, options);
  }
  if (source == MasterKeySource::kPassphrase &&
      options.passphrase_file.empty()) {
    return InvalidArgumentError(
        "master_key = passphrase needs keystore.passphrase_file");
  }
  if (source == MasterKeySource::kFile) {
    if (options.master_key_file.empty()) {
      return InvalidArgumentError(
          "keystore needs a master key: set keystore.master_key_file or "
          "keystore.passphrase_file");
    }
    return LoadOrCreateMasterKeyFile(options.master_key_file);
  }
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes passphrase,
                         ReadPassphraseFile(options.passphrase_file));
  std::string kdf_record;
  CMKFS_RETURN_IF_ERROR(env.Update([&](lmdb::Txn& txn) -> Status {
    auto existing = txn.Get(dbs.meta, kMetaKdf);
    if (existing.ok()) {
      kdf_record = std::string(*existing);
      return Status::Ok();
    }
    if (existing.status().kind() != ErrorKind::kNotFound) {
      return existing.status();
    }
    KdfRecord fresh;
    fresh.salt.resize(16);
    CMKFS_RETURN_IF_ERROR(crypto::RandomBytes(fresh.salt));
    kdf_record = EncodeKdf(fresh);
    return txn.Put(dbs.meta, kMetaKdf, kdf_record);
  }));
  CMKFS_ASSIGN_OR_RETURN(KdfRecord kdf, DecodeKdf(kdf_record));
  auto derived = crypto::DeriveKeyFromPassphrase(AsView(passphrase.span()),
                                                 kdf.salt, kdf.params);
  if (derived.status().kind() == ErrorKind::kInvalidArgument) {
    return CorruptionError("kdf record in " + options.dir.string() + ": " +
                           derived.status().message());
  }
  return derived;
}

// Creates the format record and the master key check blob on first open;
// afterwards checks that the master key opens the check blob.
Status InitOrVerify(lmdb::Env& env, const Dbs& dbs,
                    const crypto::SecretBytes& master_key,
                    const std::filesystem::path& dir) {
  return env.Update([&](lmdb::Txn& txn) -> Status {
    auto format = txn.Get(dbs.meta, kMetaFormat);
    if (!format.ok()) {
      if (format.status().kind() != ErrorKind::kNotFound) {
        return format.status();
      }
      CMKFS_ASSIGN_OR_RETURN(
          std::vector<uint8_t> check,
          crypto::AeadSeal(master_key, AsBytes(kCheckPlaintext),
                           AsBytes(kMetaCheck)));
      CMKFS_RETURN_IF_ERROR(
          txn.Put(dbs.meta, kMetaFormat, EncodeFormat(kFormatVersion)));
      CMKFS_RETURN_IF_ERROR(txn.Put(dbs.meta, kMetaCheck, AsView(check)));
      return WriteU64(txn, dbs.meta, kMetaCounter, 0);
    }
    CMKFS_ASSIGN_OR_RETURN(uint32_t fmt, DecodeFormat(*format));
    if (fmt != kFormatVersion) {
      return FailedPreconditionError(
          "keystore in " + dir.string() + " has format version " +
          std::to_string(fmt) + "; this build reads format version " +
          std::to_string(kFormatVersion));
    }
    CMKFS_ASSIGN_OR_RETURN(std::string_view check,
                           txn.Get(dbs.meta, kMetaCheck));
    auto opened =
        crypto::AeadOpen(master_key, AsBytes(check), AsBytes(kMetaCheck));
    if (!opened.ok() || AsView(opened->span()) != kCheckPlaintext) {
      return InvalidArgumentError(
          "wrong vault master key for " + dir.string() +
          ": it does not match the key this vault was created with");
    }
    return Status::Ok();
  });
}

}  // namespace

Result<std::unique_ptr<KeyStore>> OpenKeyStore(const KeyStoreOptions& options) {
  if (options.dir.empty()) {
    return InvalidArgumentError("keystore needs a directory (keystore.dir)");
  }
  CMKFS_RETURN_IF_ERROR(
      path_guard::MakePrivateDir(options.dir)
          .WithContext("keystore directory " + options.dir.string()));
  lmdb::EnvOptions env_options;
  env_options.sync_on_commit = true;
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<lmdb::Env> env,
                         lmdb::Env::Open(options.dir, env_options));
  Dbs dbs;
  CMKFS_ASSIGN_OR_RETURN(dbs.meta, env->OpenDb("meta"));
  CMKFS_ASSIGN_OR_RETURN(dbs.vaults, env->OpenDb("vaults"));
  CMKFS_ASSIGN_OR_RETURN(dbs.keys, env->OpenDb("keys"));
  CMKFS_ASSIGN_OR_RETURN(dbs.versions, env->OpenDb("versions"));
  CMKFS_ASSIGN_OR_RETURN(dbs.audit, env->OpenDb("audit"));
  CMKFS_ASSIGN_OR_RETURN(dbs.released, env->OpenDb("released"));
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes master_key,
                         ObtainMasterKey(*env, dbs, options));
  CMKFS_RETURN_IF_ERROR(InitOrVerify(*env, dbs, master_key, options.dir));
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<EraseSlotFile> slots,
                         EraseSlotFile::Open(options.dir / "erase-slots"));
  auto backend = NewSoftwareKeyBackend(master_key, std::move(slots));
  std::unique_ptr<KeyBackend> hsm;
  if (options.hsm_enabled) hsm = NewPkcs11KeyBackend(options.pkcs11);
  return std::unique_ptr<KeyStore>(std::make_unique<KeyStoreImpl>(
      std::move(env), dbs, std::move(backend), std::move(hsm), options));
}

}  // namespace cmkfs::keystore
