// Names, ids and enums of the public keystore interface.
#include <algorithm>
#include <array>
#include <iterator>
#include <string>
#include <utility>

#include "cmkfs/keystore.h"

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
