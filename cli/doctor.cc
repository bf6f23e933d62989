// `cmkctl doctor`: the trust posture of this host (docs/cli.md, "doctor";
// docs/threat-model.md, "What each mode protects against"). Reads only:
// the config, the state directory's permissions, the disk encryption sets and
// where each one's key lives. Never prints a key or a secret file's content.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "cmkfs/keystore.h"
#include "cmkfs/path_guard.h"
#include "command_support.h"
#include "vault/transport/transport.h"

namespace cmkfs::cli {

namespace {

bool IsUnder(const std::filesystem::path& file,
             const std::filesystem::path& dir) {
  if (file.empty() || dir.empty()) return false;
  const std::filesystem::path f = file.lexically_normal();
  const std::filesystem::path d = dir.lexically_normal();
  auto mismatch = std::mismatch(d.begin(), d.end(), f.begin(), f.end());
  return mismatch.first == d.end() ||
         (std::next(mismatch.first) == d.end() && mismatch.first->empty());
}

std::string SealedOnThisHost(const std::string& master_key_location) {
  return "on this host: sealed in the vault LMDB by the master key " +
         master_key_location;
}

// Where the private half of `key` lives, seen from this host.
std::string PrivateHalfOf(Invocation& inv, const keystore::KeyId& key,
                          const std::string& master_key_location,
                          bool* next_to_data) {
  const Config& config = inv.ctx->config;
  if (std::optional<std::string> remote = ServiceCustody(config, key.vault)) {
    return "in " + *remote;
  }
  auto info = inv.ctx->keystore->GetKey("", key.vault, key.name);
  if (info.ok() && info->kty == keystore::KeyType::kRsaHsm) {
    return TokenCustody(config);
  }
  *next_to_data = true;
  return SealedOnThisHost(master_key_location);
}

Status Doctor(Invocation& inv) {
  const Config& config = inv.ctx->config;
  const bool service = !config.keystore.service.empty();
  Json j = Json::object();
  std::vector<std::string> problems;
  j["mode"] = service ? "service" : "embedded";
  j["vault_service"] = service ? Json(config.keystore.service) : Json();
  if (service) {
    Result<std::string> id =
        vault::CredentialIdentity(config.keystore.credential);
    if (id.ok()) {
      j["host_identity"] = *id;
    } else {
      j["host_identity"] = Json();
      problems.push_back(id.status().message());
    }
    j["credentials_dir"] = config.keystore.credentials_dir.string();
  }

  j["state_dir"] = config.state_dir.string();
  Status dir = path_guard::CheckStateDir(config.state_dir);
  j["state_dir_permissions"] = dir.ok() ? "ok" : dir.message();
  if (!dir.ok()) problems.push_back(dir.message());

  auto [source, location] = MasterKeyCustody(config);
  j["master_key"] = source;
  j["master_key_location"] = location;
  Result<keystore::KeyStoreOptions> ks = KeyStoreOptionsFor(config);
  const bool key_file_next_to_data =
      source == "file" && ks.ok() &&
      IsUnder(ks->master_key_file, config.state_dir);
  j["master_key_next_to_data"] = key_file_next_to_data;
  const std::string warning = MasterKeyPostureWarning(config);
  j["warnings"] = warning.empty() ? Json::array() : Json::array({warning});

  bool any_local_customer_key = false;
  Json sets = Json::array();
  CMKFS_ASSIGN_OR_RETURN(std::vector<fs::DesInfo> des,
                         inv.ctx->engine->ListDes());
  for (const fs::DesInfo& d : des) {
    Json dj = Json::object();
    dj["name"] = d.name;
    dj["key"] = d.key_id.ToString();
    dj["identity"] = d.identity;
    bool local = false;
    dj["private_key"] = PrivateHalfOf(inv, d.key_id, location, &local);
    any_local_customer_key = any_local_customer_key || local;
    if (service) {
      const std::filesystem::path cred =
          config.keystore.credentials_dir / (d.identity + ".pem");
      std::error_code ec;
      const bool have = std::filesystem::exists(cred, ec);
      dj["credential"] = have ? cred.string() : "missing: " + cred.string();
      if (!have) {
        problems.push_back("disk encryption set " + d.name +
                           ": no credential for its identity at " +
                           cred.string());
      }
    }
    sets.push_back(std::move(dj));
  }
  j["disk_encryption_sets"] = std::move(sets);
  j["platform_key"] = SealedOnThisHost(location);

  // Who can stop this host from using a customer's key.
  if (service && !any_local_customer_key) {
    j["revocation_enforced_by"] =
        "the vault service at " + config.keystore.service +
        ": root on this host cannot re-enable a key, change a grant or "
        "unwrap without a DES identity's grant; it keeps open disks for at "
        "most [watcher] unreachable_grace after losing the service";
  } else {
    j["revocation_enforced_by"] =
        std::string("this host only: its root can read the vault master key ") +
        "(" + source +
        ") and so every software key, and can change any key or grant";
  }
  Json pj = Json::array();
  for (const std::string& p : problems) pj.push_back(p);
  j["problems"] = std::move(pj);
  Emit(inv, j);
  if (!problems.empty()) {
    return FailedPreconditionError(std::to_string(problems.size()) +
                                   " problem(s): " + problems.front());
  }
  return Status::Ok();
}

}  // namespace

const std::vector<CommandSpec>& HostCommands() {
  static const std::vector<CommandSpec> kCommands = {
      {"doctor",
       "",
       {},
       {},
       "Reports this host's trust posture: embedded or service mode, where "
       "each key's private half lives, the state directory's permissions, "
       "and who enforces revocation. Exit 1 when a check fails.",
       Doctor},
  };
  return kCommands;
}

}  // namespace cmkfs::cli
