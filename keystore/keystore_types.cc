// Names, ids and enums of the public keystore interface.
#include <algorithm>
#include <array>
#include <iterator>
#include <string>
#include <utility>

#include "cmkfs/crypto.h"
#include "cmkfs/keystore.h"
#include "cmkfs/units.h"

namespace cmkfs::keystore {
namespace {

constexpr std::array<std::pair<Permission, std::string_view>, 11>
    kPermissionNames = {{
        {Permission::kGet, "get"},
        {Permission::kList, "list"},
        {Permission::kCreate, "create"},
        {Permission::kImport, "import"},
        {Permission::kUpdate, "update"},
        {Permission::kDelete, "delete"},
        {Permission::kRecover, "recover"},
        {Permission::kPurge, "purge"},
        {Permission::kWrapKey, "wrapKey"},
        {Permission::kUnwrapKey, "unwrapKey"},
        {Permission::kRotate, "rotate"},
    }};

constexpr std::string_view kKeyIdPrefix = "cmk://";

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

Status CheckObjectId(std::string_view id, std::string_view what) {
  static constexpr size_t kGroupEnds[] = {8, 13, 18, 23};
  bool ok = id.size() == 36;
  for (size_t i = 0; ok && i < id.size(); ++i) {
    const bool dash = std::find(std::begin(kGroupEnds), std::end(kGroupEnds),
                                i) != std::end(kGroupEnds);
    ok = dash ? id[i] == '-' : IsLowerHex(id.substr(i, 1));
  }
  if (ok) return Status::Ok();
  return InvalidArgumentError(
      std::string(what) + ": '" + EscapeControl(id) +
      "' is not an object id; expected 36 characters of lowercase hex in "
      "groups of 8-4-4-4-12, e.g. 0f8fad5b-d9cb-469f-a165-70867728950e");
}

namespace {

std::string AcceptedPermissionNames() {
  std::string out;
  for (const auto& [perm, name] : kPermissionNames) {
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out;
}

}  // namespace

Result<PermissionSet> ParsePermissions(const std::vector<std::string>& names) {
  PermissionSet set = 0;
  for (const std::string& name : names) {
    bool found = false;
    for (const auto& [perm, known] : kPermissionNames) {
      if (name == known) {
        set |= static_cast<uint32_t>(perm);
        found = true;
        break;
      }
    }
    if (!found) {
      return InvalidArgumentError("unknown key permission '" + name +
                                  "'; accepted: " + AcceptedPermissionNames());
    }
  }
  return set;
}

std::vector<std::string> PermissionNames(PermissionSet set) {
  std::vector<std::string> out;
  for (const auto& [perm, name] : kPermissionNames) {
    if (set & static_cast<uint32_t>(perm)) out.emplace_back(name);
  }
  return out;
}

namespace {

thread_local const ScopedAuditCaller* t_audit_caller = nullptr;

void AppendField(std::string& out, std::string_view field) {
  const uint64_t n = field.size();
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  out.append(field);
}

std::string DescribeEntry(const AuditEntry& e) {
  return "audit entry " + std::to_string(e.seq) + " (" + FormatTime(e.time) +
         " " + EscapeControl(e.operation) + " by " + EscapeControl(e.identity) +
         ")";
}

}  // namespace

ScopedAuditCaller::ScopedAuditCaller(std::string object_id,
                                     std::string fingerprint)
    : object_id_(std::move(object_id)),
      fingerprint_(std::move(fingerprint)),
      outer_(t_audit_caller) {
  t_audit_caller = this;
}

ScopedAuditCaller::~ScopedAuditCaller() { t_audit_caller = outer_; }

void ScopedAuditCaller::Stamp(AuditEntry& e) {
  if (t_audit_caller == nullptr) {
    e.caller_object_id.clear();
    e.caller_fingerprint.clear();
    return;
  }
  e.caller_object_id = t_audit_caller->object_id_;
  e.caller_fingerprint = t_audit_caller->fingerprint_;
}

std::string AuditChainHash(std::string_view vault, const AuditEntry& e) {
  std::string in;
  AppendField(in, "cmkfs-audit-chain-v1");
  AppendField(in, vault);
  AppendField(in, std::to_string(e.seq));
  AppendField(in, std::to_string(e.time.time_since_epoch().count()));
  AppendField(in, e.identity);
  AppendField(in, e.caller_object_id);
  AppendField(in, e.caller_fingerprint);
  AppendField(in, e.operation);
  AppendField(in, e.key_id);
  AppendField(in, e.result);
  AppendField(in, e.prev_hash);
  return crypto::HexEncode(
      crypto::Sha256({reinterpret_cast<const uint8_t*>(in.data()), in.size()}));
}

Result<AuditChainReport> VerifyAuditChain(std::string_view vault,
                                          std::span<const AuditEntry> entries) {
  std::vector<const AuditEntry*> chained;
  AuditChainReport report;
  for (const AuditEntry& e : entries) {
    if (e.seq == 0) {
      ++report.legacy;
    } else {
      chained.push_back(&e);
    }
  }
  std::sort(
      chained.begin(), chained.end(),
      [](const AuditEntry* a, const AuditEntry* b) { return a->seq < b->seq; });
  std::string prev(kAuditChainGenesis);
  for (size_t i = 0; i < chained.size(); ++i) {
    const AuditEntry& e = *chained[i];
    const uint64_t want = i + 1;
    if (e.seq != want) {
      return CorruptionError(
          e.seq < want ? DescribeEntry(e) + ": sequence number repeated"
                       : "audit entry " + std::to_string(want) +
                             " is missing (the chain goes on at " +
                             DescribeEntry(e) + ")");
    }
    if (e.prev_hash != prev) {
      return CorruptionError(DescribeEntry(e) +
                             ": its prev_hash is not the hash of entry " +
                             std::to_string(want - 1));
    }
    if (AuditChainHash(vault, e) != e.hash) {
      return CorruptionError(DescribeEntry(e) +
                             ": its hash does not match its contents");
    }
    prev = e.hash;
    ++report.chained;
  }
  return report;
}

Result<std::unique_ptr<ChangeSubscription>> KeyStore::SubscribeChanges(
    ChangeSubscriber) {
  return NotSupportedError(
      "this keystore pushes no changes; the key watcher polls its change "
      "counter");
}

Result<KeyId> KeyId::Parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("invalid key id '" + std::string(text) +
                                "': " + std::string(why) +
                                "; expected cmk://VAULT/keys/NAME[/VERSION]");
  };
  if (!text.starts_with(kKeyIdPrefix)) return bad("missing cmk:// prefix");
  std::string_view rest = text.substr(kKeyIdPrefix.size());
  std::vector<std::string_view> parts;
  while (true) {
    size_t slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  if (parts.size() < 3 || parts.size() > 4 || parts[1] != "keys") {
    return bad("wrong number of path parts");
  }
  for (std::string_view p : parts) {
    if (p.empty()) return bad("empty path part");
  }
  KeyId id;
  id.vault = std::string(parts[0]);
  id.name = std::string(parts[2]);
  if (parts.size() == 4) {
    if (parts[3].size() != 32 || !IsLowerHex(parts[3])) {
      return bad("a version is 32 lowercase hex characters");
    }
    id.version = std::string(parts[3]);
  }
  return id;
}

std::string KeyId::ToString() const {
  std::string out = std::string(kKeyIdPrefix) + vault + "/keys/" + name;
  if (!version.empty()) out += "/" + version;
  return out;
}

std::string_view VaultSkuName(VaultSku sku) {
  return sku == VaultSku::kPremium ? "premium" : "standard";
}

Result<VaultSku> ParseVaultSku(std::string_view text) {
  if (text == "standard") return VaultSku::kStandard;
  if (text == "premium") return VaultSku::kPremium;
  return InvalidArgumentError("unknown vault SKU '" + std::string(text) +
                              "'; accepted: standard, premium");
}

std::string_view KeyTypeName(KeyType kty) {
  return kty == KeyType::kRsaHsm ? "RSA-HSM" : "RSA";
}

Result<KeyType> ParseKeyType(std::string_view text) {
  if (text == "RSA") return KeyType::kRsa;
  if (text == "RSA-HSM") return KeyType::kRsaHsm;
  return InvalidArgumentError("unsupported key type '" + std::string(text) +
                              "'; accepted: RSA, RSA-HSM");
}

}  // namespace cmkfs::keystore
