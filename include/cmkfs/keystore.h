// The key vault service. fs/ depends on this interface only; keystore/ never
// includes anything from fs/. One KeyStore instance owns one LMDB environment
// (its own directory); several processes may open the same directory, and a
// change made by one is seen by the others on their next read.
//
// Callers are identities (object ids). An empty identity means "the vault's
// admin identity" (created with the vault, holding every permission). Every
// operation checks the caller's permissions and is audited, allowed or not.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/config.h"
#include "cmkfs/crypto.h"
#include "cmkfs/status.h"
#include "cmkfs/units.h"

namespace cmkfs::keystore {

enum class Permission : uint32_t {
  kGet = 1u << 0,
  kList = 1u << 1,
  kCreate = 1u << 2,
  kImport = 1u << 3,
  kUpdate = 1u << 4,
  kDelete = 1u << 5,
  kRecover = 1u << 6,
  kPurge = 1u << 7,
  kWrapKey = 1u << 8,
  kUnwrapKey = 1u << 9,
  kRotate = 1u << 10,
};
using PermissionSet = uint32_t;
constexpr PermissionSet kAllPermissions = (1u << 11) - 1;
inline PermissionSet operator|(Permission a, Permission b) {
  return static_cast<uint32_t>(a) | static_cast<uint32_t>(b);
}
// Names as the CLI spells them: get list create import update delete recover
// purge wrapKey unwrapKey rotate. InvalidArgument lists the accepted names.
Result<PermissionSet> ParsePermissions(const std::vector<std::string>& names);
std::vector<std::string> PermissionNames(PermissionSet set);

// Identities (vault admins, DES identities, policy object ids) are object ids:
// 36 characters, lowercase hex in groups of 8-4-4-4-12 separated by '-'
// ("0f8fad5b-d9cb-469f-a165-70867728950e"). InvalidArgument naming `what`
// ("--as") and the form otherwise; the value is quoted with its control
// characters escaped.
Status CheckObjectId(std::string_view id, std::string_view what);

// cmk://VAULT/keys/NAME[/VERSION]
struct KeyId {
  std::string vault;
  std::string name;
  std::string version;  // empty = latest enabled version
  static Result<KeyId> Parse(std::string_view text);
  std::string ToString() const;
  bool versionless() const { return version.empty(); }
  bool operator==(const KeyId&) const = default;
};

enum class VaultSku { kStandard, kPremium };
enum class KeyType { kRsa, kRsaHsm };  // "RSA", "RSA-HSM"
std::string_view VaultSkuName(VaultSku sku);
Result<VaultSku> ParseVaultSku(std::string_view text);
std::string_view KeyTypeName(KeyType kty);
Result<KeyType> ParseKeyType(std::string_view text);

constexpr int kDefaultKeyBits = 3072;

struct VaultSpec {
  std::string name;
  VaultSku sku = VaultSku::kStandard;
  bool purge_protection = false;
  uint32_t retention_days = 90;  // 7..90
  std::string subscription = "default";
  std::string resource_group = "default";
  std::string region = "local";
};

struct AccessPolicy {
  std::string object_id;
  PermissionSet permissions = 0;
};

struct VaultInfo {
  VaultSpec spec;
  std::string admin_identity;
  TimePoint created{};
  std::vector<AccessPolicy> policies;
};

struct KeyVersionInfo {
  KeyId id;  // always with version
  KeyType kty = KeyType::kRsa;
  int bits = 0;
  bool enabled = true;
  std::optional<TimePoint> not_before;
  std::optional<TimePoint> expires;
  TimePoint created{};
  TimePoint updated{};
  std::vector<uint8_t> public_der;  // SubjectPublicKeyInfo
};

struct RotationPolicy {
  std::optional<std::chrono::milliseconds> rotate_after;
  std::optional<std::chrono::milliseconds> notify_before;
  std::optional<std::chrono::milliseconds>
      expires_in;  // default expiry of new versions
};

struct KeyInfo {
  std::string vault;
  std::string name;
  KeyType kty = KeyType::kRsa;
  std::vector<KeyVersionInfo> versions;  // oldest first
  bool deleted = false;
  std::optional<TimePoint> deleted_at;
  std::optional<TimePoint> scheduled_purge;
  RotationPolicy rotation_policy;
};

struct AttributeUpdate {
  std::optional<bool> enabled;
  // Outer optional: change it or not; inner: set or clear.
  std::optional<std::optional<TimePoint>> expires;
  std::optional<std::optional<TimePoint>> not_before;
};

struct AuditEntry {
  TimePoint time{};
  std::string identity;
  std::string operation;  // "wrapKey", "key.create", "disk.seal", ...
  std::string key_id;     // with version where one applies
  std::string result;     // "ok" or "denied: ..." / "error: ..."
  // The authenticated caller behind the call (the vault service: the object
  // id and SHA-256 fingerprint of the client certificate); empty for
  // in-process callers (embedded mode). Set by the store, never the caller.
  std::string caller_object_id;
  std::string caller_fingerprint;
  // The vault's hash chain (docs/keystore.md, "Audit hash chain"): `seq`
  // counts the vault's chained entries from 1; `hash` is AuditChainHash of
  // this entry, whose input includes `prev_hash` (the hash of entry seq-1,
  // 64 zeros for the first). All set by the store when it writes the entry;
  // seq 0 marks an entry written before the chain existed (format v1).
  uint64_t seq = 0;
  std::string prev_hash;
  std::string hash;
};

// Lowercase hex SHA-256 over a length-prefixed encoding of the vault name
// and every field of `e` but `hash` (time in seconds, as stored).
std::string AuditChainHash(std::string_view vault, const AuditEntry& e);
// The prev_hash of a vault's first chained entry.
inline constexpr std::string_view kAuditChainGenesis =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditChainReport {
  uint64_t chained = 0;  // entries checked, seq 1..chained
  uint64_t legacy = 0;   // entries from before the chain (seq 0), unchecked
};
// Checks a vault's whole audit (ReadAudit without filter, any order):
// sequence numbers 1..N without gap or repeat, each prev_hash the hash of
// the entry before, each hash recomputed. Corruption naming the first broken
// entry ("audit entry 7 (2026-12-02T03:04:05Z key.update by ID): its hash
// does not match its contents") otherwise.
Result<AuditChainReport> VerifyAuditChain(std::string_view vault,
                                          std::span<const AuditEntry> entries);

// The authenticated caller of the calls made on this thread while it lives:
// the vault service sets one per call from the verified client certificate,
// and the store copies it into the audit entries of those calls. Nestable.
class ScopedAuditCaller {
 public:
  ScopedAuditCaller(std::string object_id, std::string fingerprint);
  ~ScopedAuditCaller();
  ScopedAuditCaller(const ScopedAuditCaller&) = delete;
  ScopedAuditCaller& operator=(const ScopedAuditCaller&) = delete;
  // Fills e.caller_object_id and e.caller_fingerprint from the innermost
  // ScopedAuditCaller of this thread (clears them when there is none).
  static void Stamp(AuditEntry& e);

 private:
  std::string object_id_;
  std::string fingerprint_;
  const ScopedAuditCaller* outer_;
};

struct AuditFilter {
  std::optional<std::string> key_name;
  std::optional<TimePoint> since;
};

enum class WrapAlgorithm {
  kRsaOaep256,  // default: SHA-256 for OAEP and MGF1
  kRsaOaep,     // SHA-1; only when asked for explicitly
  kRsa15,       // always refused
};

struct UsabilityQuery {
  std::string identity;
  KeyId key_id;  // with version
};

// Push notification of changes (service mode, docs/watcher.md).
struct ChangeSubscriber {
  // The change counter, once when the stream is (re)established and again
  // whenever any vault, policy, key or version may have changed.
  std::function<void(uint64_t counter)> on_change;
  // The stream broke (service unreachable, certificate refused): the reason
  // as a one-line IOError naming the endpoint. It is re-established by
  // itself, with backoff; on_change reports when it is back.
  std::function<void(const Status& why)> on_lost;
};

// Destroying it ends the subscription: no callback runs once the destructor
// has returned. It must be destroyed before the store that made it, and not
// from inside a callback.
class ChangeSubscription {
 public:
  virtual ~ChangeSubscription() = default;
};

// All methods are thread-safe. Errors name what was wrong and what is
// accepted; the exact texts are listed in docs/keystore.md.
class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // --- vaults -------------------------------------------------------------
  // AlreadyExists; InvalidArgument for a bad name or retention outside 7..90.
  virtual Result<VaultInfo> CreateVault(const VaultSpec& spec) = 0;
  // NotFound. Management-plane read, no permission needed.
  virtual Result<VaultInfo> GetVault(std::string_view vault) = 0;
  virtual Result<std::vector<VaultInfo>> ListVaults() = 0;
  // Grants `permissions` to `object_id` (replacing its previous set). Only
  // the vault admin may change policies (PermissionDenied otherwise).
  virtual Status SetAccessPolicy(std::string_view caller,
                                 std::string_view vault,
                                 std::string_view object_id,
                                 PermissionSet permissions) = 0;
  virtual Status DeleteAccessPolicy(std::string_view caller,
                                    std::string_view vault,
                                    std::string_view object_id) = 0;
  virtual Result<std::vector<AuditEntry>> ReadAudit(std::string_view vault,
                                                    const AuditFilter& f) = 0;
  // Records an event of a dependent service (e.g. "disk.seal") in the
  // vault's audit trail. A zero `time` means now. NotFound for no vault.
  virtual Status AppendAudit(std::string_view vault, const AuditEntry& e) = 0;

  // --- keys ---------------------------------------------------------------
  // Creates a key with its first version. `bits` 0 means kDefaultKeyBits.
  // InvalidArgument for a size other than 2048/3072/4096; FailedPrecondition
  // for RSA-HSM outside a premium vault; NotSupported for RSA-HSM while no
  // HSM backend is configured; AlreadyExists (also for a soft-deleted key).
  virtual Result<KeyVersionInfo> CreateKey(std::string_view caller,
                                           std::string_view vault,
                                           std::string_view name, KeyType kty,
                                           int bits) = 0;
  // Imports a PEM private key as a new key, or as a new version of an
  // existing key. Refusals list what is supported.
  virtual Result<KeyVersionInfo> ImportKey(std::string_view caller,
                                           std::string_view vault,
                                           std::string_view name,
                                           std::string_view pem,
                                           KeyType kty) = 0;
  // New version with the key's type and size; it becomes the latest.
  virtual Result<KeyVersionInfo> RotateKey(std::string_view caller,
                                           std::string_view vault,
                                           std::string_view name) = 0;
  virtual Result<KeyInfo> GetKey(std::string_view caller,
                                 std::string_view vault,
                                 std::string_view name) = 0;
  // A versionless id resolves to the latest enabled version.
  virtual Result<KeyVersionInfo> GetKeyVersion(std::string_view caller,
                                               const KeyId& id) = 0;
  virtual Result<std::vector<KeyInfo>> ListKeys(std::string_view caller,
                                                std::string_view vault) = 0;
  // A versionless id acts on the latest version.
  virtual Result<KeyVersionInfo> UpdateKeyAttributes(
      std::string_view caller, const KeyId& id, const AttributeUpdate& u) = 0;
  virtual Status DeleteKey(std::string_view caller, std::string_view vault,
                           std::string_view name) = 0;
  virtual Status RecoverKey(std::string_view caller, std::string_view vault,
                            std::string_view name) = 0;
  // FailedPrecondition while purge protection holds.
  virtual Status PurgeKey(std::string_view caller, std::string_view vault,
                          std::string_view name) = 0;
  virtual Status SetRotationPolicy(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name,
                                   const RotationPolicy& policy) = 0;
  // Applies every due rotation policy (rotates keys, records near-expiry
  // notices in log and audit) and purges soft-deleted keys past retention.
  // Returns the ids of the versions it created. Called by the daemon timer.
  virtual Result<std::vector<KeyId>> ApplyRotationPolicies() = 0;

  // --- cryptographic operations -------------------------------------------
  // `id` must carry a version (InvalidArgument otherwise). Needs wrapKey /
  // unwrapKey. KeyUnavailable when the version is disabled, expired, not yet
  // valid or the key deleted. kRsa15 is InvalidArgument. Unwrap of a tampered
  // blob, wrong label or wrong key is Corruption.
  virtual Result<std::vector<uint8_t>> WrapKey(
      std::string_view caller, const KeyId& id,
      std::span<const uint8_t> plaintext, std::span<const uint8_t> label,
      WrapAlgorithm alg = WrapAlgorithm::kRsaOaep256) = 0;
  virtual Result<crypto::SecretBytes> UnwrapKey(
      std::string_view caller, const KeyId& id, std::span<const uint8_t> blob,
      std::span<const uint8_t> label,
      WrapAlgorithm alg = WrapAlgorithm::kRsaOaep256) = 0;

  // --- change detection (for the key watcher) -----------------------------
  // A counter that changes whenever any vault, policy, key or version
  // changes, in this process or another. One cheap read.
  virtual Result<uint64_t> ChangeCounter() = 0;
  // For each query, OK if that identity could unwrap with that version now,
  // else KeyUnavailable naming the reason ("key version disabled", "expired",
  // "not yet valid", "key deleted", "identity lacks unwrapKey"). One read
  // transaction for all queries; not audited. When that transaction fails,
  // every answer is IOError "keystore unreadable: ..." (no verdict on keys).
  virtual std::vector<Status> CheckUsable(
      std::span<const UsabilityQuery> queries) = 0;
  // Calls `subscriber` from a thread of the store's own until the returned
  // subscription is destroyed; the callbacks must return quickly. The
  // subscriber stays usable if it fails. NotSupported for a store without
  // a push channel (the embedded store: the watcher polls its counter).
  virtual Result<std::unique_ptr<ChangeSubscription>> SubscribeChanges(
      ChangeSubscriber subscriber);
};

// Where the vault master key (which seals every software private key) comes
// from. kAuto: kPassphrase when passphrase_file is set, else kFile.
enum class MasterKeySource { kAuto, kFile, kPassphrase, kTpm2 };
// "file", "passphrase", "tpm2" (config [keystore] master_key); "" = kAuto.
Result<MasterKeySource> ParseMasterKeySource(std::string_view text);

struct KeyStoreOptions {
  std::filesystem::path dir;
  MasterKeySource master_key = MasterKeySource::kAuto;
  std::filesystem::path master_key_file;  // created 0600 if missing
  std::filesystem::path passphrase_file;  // if set, used instead
  // kTpm2: the sealed blob (created with a new vault), the TCTI and the
  // PCRs (SHA-256 bank) it is bound to, as "7" or "0,7" ("" = none).
  std::filesystem::path tpm2_sealed_file;
  std::string tpm2_tcti = "device:/dev/tpmrm0";
  std::string tpm2_pcrs;
  Config::Pkcs11 pkcs11;
  bool hsm_enabled = false;  // true once a PKCS#11 module is configured
  // Source of "now" for attributes, rotation, retention and audit; empty =
  // cmkfs::Now(). Tests set it to drive time explicitly.
  std::function<TimePoint()> clock;
};

// Opens (creating if needed) the keystore in options.dir. InvalidArgument
// ("wrong vault master key ...") when the master key does not match.
Result<std::unique_ptr<KeyStore>> OpenKeyStore(const KeyStoreOptions& options);

// The source OpenKeyStore uses for `options` (kAuto resolved).
MasterKeySource EffectiveMasterKeySource(const KeyStoreOptions& options);

// Moves the vault master key from options.master_key_file into the TPM
// (options.tpm2_*): checks that the key opens the vault, seals it, writes
// tpm2_sealed_file crash-safely (temp file, fsync, rename, fsync of the
// directory), unseals the new blob and compares, and only then removes the
// key file (unlink, fsync of the directory). A crash at any point leaves a
// vault that opens: with the file until the sealed blob is in place, with
// the TPM after. Running it again after a crash finishes the job (a sealed
// file that unseals to the same key is kept). `after_step` (tests) is
// called with "sealed-file-written" and "key-file-removed".
// FailedPrecondition when there is no key file and no sealed file, or when
// the sealed file holds another key; the TPM errors of OpenKeyStore.
Status MigrateMasterKeyToTpm2(
    const KeyStoreOptions& options,
    const std::function<void(std::string_view step)>& after_step = {});

}  // namespace cmkfs::keystore
