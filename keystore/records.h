// On-disk records of the keystore LMDB environment (format version 1).
// Every Decode* fails with Corruption on bad input. Databases and keys:
//   meta     "format" -> u32; "check" -> master key check blob;
//            "kdf" -> scrypt salt and parameters (passphrase vaults);
//            "counter" -> u64 change counter; "audit_seq" -> u64;
//            "audit_head/VAULT" -> AuditHead (the vault's hash chain)
//   vaults   VAULT -> VaultRecord
//   keys     VAULT/NAME -> KeyRecord
//   versions VAULT/NAME/VERSION -> VersionRecord
//   audit    VAULT/ + be64(time ms) + be64(seq) -> AuditRecord
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/keystore.h"
#include "key_backend.h"

namespace cmkfs::keystore {

constexpr uint32_t kFormatVersion = 1;

struct VaultRecord {
  VaultInfo info;
};

struct KeyRecord {
  KeyType kty = KeyType::kRsa;
  int bits = 0;
  bool deleted = false;
  std::optional<TimePoint> deleted_at;
  std::optional<TimePoint> scheduled_purge;
  RotationPolicy rotation_policy;
  std::vector<std::string> versions;  // oldest first
  std::optional<TimePoint> last_rotation;
};

enum class BackendKind : uint8_t { kSoftware = 0, kPkcs11 = 1 };

struct VersionRecord {
  int bits = 0;
  bool enabled = true;
  std::optional<TimePoint> not_before;
  std::optional<TimePoint> expires;
  TimePoint created{};
  TimePoint updated{};
  BackendKind backend = BackendKind::kSoftware;
  StoredKey stored;  // bits, public DER, material
  bool near_expiry_notified = false;
};

struct AuditRecord {
  AuditEntry entry;
  std::string key_name;  // for filtering; empty for vault-level events
};

// The last chained audit entry of a vault (seq 0, empty hash: none yet).
struct AuditHead {
  uint64_t seq = 0;
  std::string hash;
};

// meta "kdf": how a passphrase vault derives its master key.
struct KdfRecord {
  std::vector<uint8_t> salt;  // never empty
  crypto::ScryptParams params;
};

std::string EncodeVault(const VaultRecord& r);
Result<VaultRecord> DecodeVault(std::string_view data);
std::string EncodeKey(const KeyRecord& r);
Result<KeyRecord> DecodeKey(std::string_view data);
std::string EncodeVersion(const VersionRecord& r);
Result<VersionRecord> DecodeVersion(std::string_view data);
std::string EncodeAudit(const AuditRecord& r);
Result<AuditRecord> DecodeAudit(std::string_view data);
std::string EncodeAuditHead(const AuditHead& h);
Result<AuditHead> DecodeAuditHead(std::string_view data);
std::string EncodeKdf(const KdfRecord& r);
Result<KdfRecord> DecodeKdf(std::string_view data);
// meta "format": the keystore format version (kFormatVersion).
std::string EncodeFormat(uint32_t format_version);
Result<uint32_t> DecodeFormat(std::string_view data);
// meta "counter" and "audit_seq".
std::string EncodeCounter(uint64_t n);
Result<uint64_t> DecodeCounter(std::string_view data);

std::string KeyDbKey(std::string_view vault, std::string_view name);
std::string VersionDbKey(std::string_view vault, std::string_view name,
                         std::string_view version);
// Prefix of every keys/versions/audit db key of a vault: "VAULT/".
std::string VaultPrefix(std::string_view vault);

}  // namespace cmkfs::keystore
