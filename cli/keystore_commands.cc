// cmkctl vault ... and cmkctl key ...

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <utility>

#include "cmkfs/file_trust.h"
#include "cmkfs/keystore.h"
#include "cmkfs/units.h"
#include "command_support.h"

namespace cmkfs::cli {

// Where the vault master key, which seals every software key, lives.
std::pair<std::string, std::string> MasterKeyCustody(const Config& config) {
  auto options = KeyStoreOptionsFor(config);
  if (!options.ok()) return {"unknown", options.status().message()};
  switch (keystore::EffectiveMasterKeySource(*options)) {
    case keystore::MasterKeySource::kTpm2:
      return {"tpm2", "sealed to the TPM 2.0 at " + options->tpm2_tcti +
                          " (blob " + options->tpm2_sealed_file.string() +
                          (options->tpm2_pcrs.empty()
                               ? ", no PCR binding)"
                               : ", PCRs " + options->tpm2_pcrs + ")")};
    case keystore::MasterKeySource::kPassphrase:
      return {"passphrase", "derived (scrypt) from the passphrase in " +
                                options->passphrase_file.string()};
    default:
      return {"file", "in the file " + options->master_key_file.string()};
  }
}

// Where an RSA-HSM key's private half lives: the token, its module, and
// the p11-kit server for a remote token.
std::string TokenCustody(const Config& config) {
  std::string where = "PKCS#11 token '" + config.pkcs11.token_label + "' via " +
                      config.pkcs11.module.string();
  if (config.pkcs11.module.filename() == "p11-kit-client.so") {
    const char* address = std::getenv("P11_KIT_SERVER_ADDRESS");
    where += std::string(" (remote: p11-kit server at ") +
             (address != nullptr ? address : "the default runtime socket") +
             ")";
  }
  return where;
}

std::optional<std::string> ServiceCustody(const Config& config,
                                          std::string_view vault) {
  // The same rule as SplitKeyStore's routing: every vault but the
  // platform's own is the service's.
  if (config.keystore.service.empty() ||
      vault == fs::EngineOptions().system_vault) {
    return std::nullopt;
  }
  return "the vault service at " + config.keystore.service +
         " (never on this host)";
}

namespace {

// An RSA 4096 private key in PEM is about 3.3 KiB; anything much larger is
// not a key this vault imports.
constexpr size_t kMaxPemBytes = 64 * 1024;

using keystore::KeyId;

Json PermissionsJson(keystore::PermissionSet set) {
  Json arr = Json::array();
  for (const auto& name : keystore::PermissionNames(set)) arr.push_back(name);
  return arr;
}

Json VaultJson(const keystore::VaultInfo& v) {
  Json j = Json::object();
  j["name"] = v.spec.name;
  j["sku"] = keystore::VaultSkuName(v.spec.sku);
  j["purge_protection"] = v.spec.purge_protection;
  j["retention_days"] = v.spec.retention_days;
  j["subscription"] = v.spec.subscription;
  j["resource_group"] = v.spec.resource_group;
  j["region"] = v.spec.region;
  j["admin_identity"] = v.admin_identity;
  j["created"] = TimeJson(v.created);
  Json policies = Json::array();
  for (const auto& p : v.policies) {
    Json pj = Json::object();
    pj["object_id"] = p.object_id;
    pj["permissions"] = PermissionsJson(p.permissions);
    policies.push_back(std::move(pj));
  }
  j["policies"] = std::move(policies);
  return j;
}

void SetVersionFields(Json& j, const keystore::KeyVersionInfo& v) {
  j["key_id"] = v.id.ToString();
  j["version"] = v.id.version;
  j["kty"] = keystore::KeyTypeName(v.kty);
  j["bits"] = v.bits;
  j["enabled"] = v.enabled;
  j["not_before"] = TimeJson(v.not_before);
  j["expires"] = TimeJson(v.expires);
  j["created"] = TimeJson(v.created);
  j["updated"] = TimeJson(v.updated);
}

Json KeyVersionJson(const keystore::KeyVersionInfo& v) {
  Json j = Json::object();
  j["vault"] = v.id.vault;
  j["name"] = v.id.name;
  SetVersionFields(j, v);
  return j;
}

Json DurationJson(const std::optional<std::chrono::milliseconds>& d) {
  return d ? Json(FormatDuration(*d)) : Json(nullptr);
}

Json RotationPolicyJson(const keystore::RotationPolicy& p) {
  Json j = Json::object();
  j["rotate_after"] = DurationJson(p.rotate_after);
  j["notify_before"] = DurationJson(p.notify_before);
  j["expires_in"] = DurationJson(p.expires_in);
  return j;
}

// The key with its latest version's fields at the top level.
Json KeyJson(const keystore::KeyInfo& k) {
  Json j = Json::object();
  j["vault"] = k.vault;
  j["name"] = k.name;
  if (!k.versions.empty()) {
    SetVersionFields(j, k.versions.back());
  } else {
    j["key_id"] = nullptr;
    j["kty"] = keystore::KeyTypeName(k.kty);
  }
  j["deleted"] = k.deleted;
  j["deleted_at"] = TimeJson(k.deleted_at);
  j["scheduled_purge"] = TimeJson(k.scheduled_purge);
  j["rotation_policy"] = RotationPolicyJson(k.rotation_policy);
  Json versions = Json::array();
  for (const auto& v : k.versions) {
    Json vj = Json::object();
    vj["version"] = v.id.version;
    vj["enabled"] = v.enabled;
    vj["bits"] = v.bits;
    vj["not_before"] = TimeJson(v.not_before);
    vj["expires"] = TimeJson(v.expires);
    vj["created"] = TimeJson(v.created);
    versions.push_back(std::move(vj));
  }
  j["versions"] = std::move(versions);
  return j;
}

// --- vault
// --------------------------------------------------------------------

Status VaultCreate(Invocation& inv) {
  keystore::VaultSpec spec;
  spec.name = inv.positional[0];
  if (auto sku = inv.Value("--sku")) {
    auto parsed = keystore::ParseVaultSku(*sku);
    if (!parsed.ok()) return inv.Usage("--sku: " + parsed.status().message());
    spec.sku = *parsed;
  }
  if (inv.Has("--purge-protection")) {
    CMKFS_ASSIGN_OR_RETURN(spec.purge_protection,
                           BoolFlag(inv, "--purge-protection"));
  }
  if (auto days = inv.Value("--retention-days")) {
    char* end = nullptr;
    unsigned long n = std::strtoul(days->c_str(), &end, 10);
    if (days->empty() || *end != '\0' || n > 100000) {
      return inv.Usage(
          "--retention-days: expected a number of days from 7 "
          "to 90, got '" +
          *days + "'");
    }
    spec.retention_days = static_cast<uint32_t>(n);
  }
  fs::Scope scope = inv.NewScope();
  spec.subscription = scope.subscription;
  spec.resource_group = scope.resource_group;
  spec.region = scope.region;
  CMKFS_ASSIGN_OR_RETURN(auto info, inv.ctx->keystore->CreateVault(spec));
  Emit(inv, VaultJson(info));
  return Status::Ok();
}

// The posture: where the master key and each key's private half live.
void AddCustody(Invocation& inv, const std::string& vault, Json& j) {
  const Config& config = inv.ctx->config;
  auto [source, location] = MasterKeyCustody(config);
  j["master_key"] = source;
  j["master_key_location"] = location;
  auto keys = inv.ctx->keystore->ListKeys(inv.caller(), vault);
  if (!keys.ok()) return;
  Json arr = Json::array();
  for (const auto& k : *keys) {
    Json kj = Json::object();
    kj["name"] = k.name;
    kj["kty"] = keystore::KeyTypeName(k.kty);
    const bool hsm = k.kty == keystore::KeyType::kRsaHsm;
    if (std::optional<std::string> remote = ServiceCustody(config, vault)) {
      kj["private_key"] = hsm ? "pkcs11, in the vault service"
                              : "software, in the vault service";
      kj["location"] = *remote;
    } else {
      kj["private_key"] = hsm ? "pkcs11" : "software, sealed by " + source;
      kj["location"] = hsm ? TokenCustody(config)
                           : "vault LMDB, sealed by the master key " + location;
    }
    arr.push_back(std::move(kj));
  }
  j["keys"] = std::move(arr);
}

Status VaultShow(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto info,
                         inv.ctx->keystore->GetVault(inv.positional[0]));
  Json j = VaultJson(info);
  AddCustody(inv, info.spec.name, j);
  Emit(inv, j);
  return Status::Ok();
}

// Runs in cmkctl, never in the daemon (it opens the vault directory
// itself), and needs no open keystore: RunsWithoutServices.
Status VaultMigrateMasterKey(Invocation& inv) {
  auto to = inv.Value("--to");
  if (!to || *to != "tpm2") {
    return inv.Usage(
        "'vault migrate-master-key' needs --to tpm2 (the only destination)");
  }
  if (inv.ctx->keystore != nullptr) {
    // A process with the vault open (the daemon) must not open it again.
    return FailedPreconditionError(
        "vault migrate-master-key runs in cmkctl, not in a process that has "
        "the vault open");
  }
  CMKFS_ASSIGN_OR_RETURN(keystore::KeyStoreOptions options,
                         KeyStoreOptionsFor(inv.ctx->config));
  const bool had_file =
      std::filesystem::exists(options.master_key_file.string());
  CMKFS_RETURN_IF_ERROR(keystore::MigrateMasterKeyToTpm2(options));
  Json j = Json::object();
  j["master_key"] = "tpm2";
  j["sealed_file"] = options.tpm2_sealed_file.string();
  j["tcti"] = options.tpm2_tcti;
  j["pcrs"] = options.tpm2_pcrs;
  j["removed_key_file"] =
      had_file ? Json(options.master_key_file.string()) : Json();
  j["next"] = "set [keystore] master_key = \"tpm2\" in the config";
  Emit(inv, j);
  return Status::Ok();
}

Status VaultList(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto vaults, inv.ctx->keystore->ListVaults());
  Json arr = Json::array();
  for (const auto& v : vaults) arr.push_back(VaultJson(v));
  EmitList(inv, arr,
           {{"NAME", "name"},
            {"SKU", "sku"},
            {"PURGE_PROTECTION", "purge_protection"},
            {"RETENTION_DAYS", "retention_days"},
            {"SUBSCRIPTION", "subscription"},
            {"REGION", "region"}});
  return Status::Ok();
}

Status VaultSetPolicy(Invocation& inv) {
  auto object_id = inv.Value("--object-id");
  if (!object_id) return inv.Usage("'vault set-policy' needs --object-id ID");
  auto it = inv.lists.find("--key-permissions");
  if (it == inv.lists.end()) {
    return inv.Usage(
        "'vault set-policy' needs --key-permissions PERM... (accepted: get "
        "list create import update delete recover purge wrapKey unwrapKey "
        "rotate)");
  }
  auto perms = keystore::ParsePermissions(it->second);
  if (!perms.ok()) return inv.Usage(perms.status().message());
  if (Status s = keystore::CheckObjectId(*object_id, "--object-id"); !s.ok()) {
    return inv.Usage(s.message());
  }
  const std::string& vault = inv.positional[0];
  CMKFS_RETURN_IF_ERROR(inv.ctx->keystore->SetAccessPolicy(inv.caller(), vault,
                                                           *object_id, *perms));
  if (inv.document()) {
    Json j = Json::object();
    j["vault"] = vault;
    j["object_id"] = *object_id;
    j["permissions"] = PermissionsJson(*perms);
    PrintDocument(inv, j);
  } else {
    std::string names;
    for (const auto& n : keystore::PermissionNames(*perms)) {
      names += (names.empty() ? "" : " ") + n;
    }
    PrintLine(inv, "vault " + vault + ": " + *object_id + " may " + names);
  }
  return Status::Ok();
}

Status VaultDeletePolicy(Invocation& inv) {
  auto object_id = inv.Value("--object-id");
  if (!object_id) {
    return inv.Usage("'vault delete-policy' needs --object-id ID");
  }
  CMKFS_RETURN_IF_ERROR(inv.ctx->keystore->DeleteAccessPolicy(
      inv.caller(), inv.positional[0], *object_id));
  if (inv.document()) {
    Json j = Json::object();
    j["vault"] = inv.positional[0];
    j["object_id"] = *object_id;
    j["deleted"] = true;
    PrintDocument(inv, j);
  } else {
    PrintLine(inv, "vault " + inv.positional[0] + ": policy of " + *object_id +
                       " deleted");
  }
  return Status::Ok();
}

Result<std::optional<TimePoint>> TimeFlag(Invocation& inv,
                                          std::string_view flag) {
  auto text = inv.Value(flag);
  if (!text) return std::optional<TimePoint>();
  auto t = ParseTime(*text);
  if (!t.ok())
    return inv.Usage(std::string(flag) + ": " + t.status().message());
  return std::optional<TimePoint>(*t);
}

// The fields of the -o json list (its recorded contract); with `chain`, also
// the authenticated caller and the hash chain (--follow's JSON lines, the
// form shipped off-host).
Json AuditJson(const keystore::AuditEntry& e, bool chain) {
  Json j = Json::object();
  j["time"] = TimeJson(e.time);
  j["identity"] = e.identity;
  j["operation"] = e.operation;
  j["key_id"] = StringOrNull(e.key_id);
  j["result"] = e.result;
  if (!chain) return j;
  j["caller_object_id"] = StringOrNull(e.caller_object_id);
  j["caller_fingerprint"] = StringOrNull(e.caller_fingerprint);
  j["seq"] = e.seq;
  j["prev_hash"] = StringOrNull(e.prev_hash);
  j["hash"] = StringOrNull(e.hash);
  return j;
}

// One entry on one line, stored text escaped (--follow's table form).
std::string AuditLine(const keystore::AuditEntry& e) {
  std::string line = std::to_string(e.seq) + "  " + FormatTime(e.time) + "  " +
                     EscapeControl(e.identity) + "  " +
                     EscapeControl(e.operation) + "  " +
                     EscapeControl(e.key_id.empty() ? "-" : e.key_id) + "  " +
                     EscapeControl(e.result);
  if (!e.caller_object_id.empty()) {
    line += "  caller " + EscapeControl(e.caller_object_id);
    if (!e.caller_fingerprint.empty()) {
      line += " sha256:" + EscapeControl(e.caller_fingerprint);
    }
  }
  return line;
}

// --follow: the entries so far, then every new one as it is written, until
// the command is cancelled (SIGINT). -o json: one JSON object per line.
Status FollowAudit(Invocation& inv, const keystore::AuditFilter& filter) {
  CommandContext& ctx = *inv.ctx;
  if (!ctx.stream_out || ctx.cancel == nullptr) {
    return FailedPreconditionError(
        "vault audit --follow streams from cmkctl itself, not through the "
        "daemon's control socket: run it where no daemon holds the state "
        "directory (service mode: any host with a vault credential)");
  }
  const bool json = inv.document();
  uint64_t last_seq = 0;
  std::optional<TimePoint> since = filter.since;
  bool first = true;
  while (!ctx.cancel->load()) {
    keystore::AuditFilter f = filter;
    f.since = since;
    CMKFS_ASSIGN_OR_RETURN(auto entries,
                           ctx.keystore->ReadAudit(inv.positional[0], f));
    std::sort(entries.begin(), entries.end(),
              [](const keystore::AuditEntry& a, const keystore::AuditEntry& b) {
                return a.seq < b.seq;
              });
    for (const auto& e : entries) {
      if (!first && e.seq <= last_seq) continue;
      last_seq = std::max(last_seq, e.seq);
      if (!since || e.time > *since) since = e.time;
      ctx.stream_out((json ? DumpJson(AuditJson(e, true), -1) : AuditLine(e)) +
                     "\n");
    }
    first = false;
    for (int i = 0; i < 10 && !ctx.cancel->load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return Status::Ok();
}

Status VaultAudit(Invocation& inv) {
  keystore::AuditFilter filter;
  if (auto key = inv.Value("--key")) filter.key_name = *key;
  CMKFS_ASSIGN_OR_RETURN(filter.since, TimeFlag(inv, "--since"));
  if (inv.Has("--verify")) {
    if (filter.key_name || filter.since || inv.Has("--follow")) {
      return inv.Usage(
          "--verify checks the whole chain: it takes no --key, --since or "
          "--follow");
    }
    CMKFS_ASSIGN_OR_RETURN(auto entries,
                           inv.ctx->keystore->ReadAudit(inv.positional[0], {}));
    CMKFS_ASSIGN_OR_RETURN(
        keystore::AuditChainReport report,
        keystore::VerifyAuditChain(inv.positional[0], entries));
    if (inv.document()) {
      Json j = Json::object();
      j["vault"] = inv.positional[0];
      j["verified"] = true;
      j["chained"] = report.chained;
      j["legacy"] = report.legacy;
      PrintDocument(inv, j);
    } else {
      PrintLine(inv, "vault " + EscapeControl(inv.positional[0]) +
                         ": audit chain verified, " +
                         std::to_string(report.chained) + " entries" +
                         (report.legacy == 0
                              ? std::string()
                              : ", " + std::to_string(report.legacy) +
                                    " older entries written before the "
                                    "chain (not covered)"));
    }
    return Status::Ok();
  }
  if (inv.Has("--follow")) return FollowAudit(inv, filter);
  CMKFS_ASSIGN_OR_RETURN(
      auto entries, inv.ctx->keystore->ReadAudit(inv.positional[0], filter));
  Json arr = Json::array();
  for (const auto& e : entries) arr.push_back(AuditJson(e, false));
  EmitList(inv, arr,
           {{"TIME", "time"},
            {"IDENTITY", "identity"},
            {"OPERATION", "operation"},
            {"KEY_ID", "key_id"},
            {"RESULT", "result"}});
  return Status::Ok();
}

// --- key
// ----------------------------------------------------------------------

Result<keystore::KeyType> KtyFlag(Invocation& inv) {
  auto text = inv.Value("--kty");
  if (!text) return keystore::KeyType::kRsa;
  auto kty = keystore::ParseKeyType(*text);
  if (!kty.ok()) return inv.Usage("--kty: " + kty.status().message());
  return *kty;
}

// Table mode: the new key id alone; JSON: the version's record.
void EmitNewVersion(Invocation& inv, const keystore::KeyVersionInfo& v) {
  if (inv.document()) {
    PrintDocument(inv, KeyVersionJson(v));
  } else {
    PrintLine(inv, v.id.ToString());
  }
}

Status KeyCreate(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto kty, KtyFlag(inv));
  int bits = keystore::kDefaultKeyBits;
  if (auto size = inv.Value("--size")) {
    if (*size == "2048") {
      bits = 2048;
    } else if (*size == "3072") {
      bits = 3072;
    } else if (*size == "4096") {
      bits = 4096;
    } else {
      return inv.Usage("--size: RSA key size '" + *size +
                       "' is not supported; accepted: 2048, 3072, 4096");
    }
  }
  CMKFS_ASSIGN_OR_RETURN(
      auto v, inv.ctx->keystore->CreateKey(inv.caller(), inv.positional[0],
                                           inv.positional[1], kty, bits));
  EmitNewVersion(inv, v);
  return Status::Ok();
}

Status KeyImport(Invocation& inv) {
  auto file = inv.Value("--pem");
  if (!file) return inv.Usage("'key import' needs --pem FILE");
  CMKFS_ASSIGN_OR_RETURN(auto kty, KtyFlag(inv));
  // A private key: bounded, in locked memory, wiped when it goes.
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes pem,
                         ReadFileToSecret(*file, "PEM file", kMaxPemBytes));
  const std::string_view text(reinterpret_cast<const char*>(pem.data()),
                              pem.size());
  CMKFS_ASSIGN_OR_RETURN(
      auto v, inv.ctx->keystore->ImportKey(inv.caller(), inv.positional[0],
                                           inv.positional[1], text, kty));
  EmitNewVersion(inv, v);
  return Status::Ok();
}

Status KeyShow(Invocation& inv) {
  if (auto version = inv.Value("--version")) {
    KeyId id{inv.positional[0], inv.positional[1], *version};
    CMKFS_ASSIGN_OR_RETURN(auto v,
                           inv.ctx->keystore->GetKeyVersion(inv.caller(), id));
    Emit(inv, KeyVersionJson(v));
    return Status::Ok();
  }
  CMKFS_ASSIGN_OR_RETURN(
      auto k, inv.ctx->keystore->GetKey(inv.caller(), inv.positional[0],
                                        inv.positional[1]));
  Emit(inv, KeyJson(k));
  return Status::Ok();
}

Status KeyList(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(
      auto keys, inv.ctx->keystore->ListKeys(inv.caller(), inv.positional[0]));
  Json arr = Json::array();
  for (const auto& k : keys) {
    Json j = KeyJson(k);
    j["version_count"] = static_cast<uint64_t>(k.versions.size());
    arr.push_back(std::move(j));
  }
  EmitList(inv, arr,
           {{"NAME", "name"},
            {"KTY", "kty"},
            {"BITS", "bits"},
            {"VERSIONS", "version_count"},
            {"LATEST", "version"},
            {"ENABLED", "enabled"},
            {"DELETED", "deleted"}});
  return Status::Ok();
}

Status KeyRotate(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(
      auto v, inv.ctx->keystore->RotateKey(inv.caller(), inv.positional[0],
                                           inv.positional[1]));
  EmitNewVersion(inv, v);
  return Status::Ok();
}

// "none" (or "") clears an optional time.
Result<std::optional<std::optional<TimePoint>>> ClearableTimeFlag(
    Invocation& inv, std::string_view flag) {
  auto text = inv.Value(flag);
  if (!text) return std::optional<std::optional<TimePoint>>();
  if (text->empty() || *text == "none") {
    return std::optional<std::optional<TimePoint>>(std::optional<TimePoint>());
  }
  auto t = ParseTime(*text);
  if (!t.ok()) {
    return inv.Usage(std::string(flag) + ": " + t.status().message() +
                     " (or 'none' to clear)");
  }
  return std::optional<std::optional<TimePoint>>(std::optional<TimePoint>(*t));
}

Status KeySetAttributes(Invocation& inv) {
  keystore::AttributeUpdate update;
  if (inv.Has("--enabled")) {
    CMKFS_ASSIGN_OR_RETURN(bool enabled, BoolFlag(inv, "--enabled"));
    update.enabled = enabled;
  }
  CMKFS_ASSIGN_OR_RETURN(update.expires, ClearableTimeFlag(inv, "--expires"));
  CMKFS_ASSIGN_OR_RETURN(update.not_before,
                         ClearableTimeFlag(inv, "--not-before"));
  if (!update.enabled && !update.expires && !update.not_before) {
    return inv.Usage(
        "'key set-attributes' needs at least one of --enabled, --expires, "
        "--not-before");
  }
  KeyId id{inv.positional[0], inv.positional[1],
           inv.Value("--version").value_or("")};
  CMKFS_ASSIGN_OR_RETURN(
      auto v, inv.ctx->keystore->UpdateKeyAttributes(inv.caller(), id, update));
  Emit(inv, KeyVersionJson(v));
  return Status::Ok();
}

void EmitKeyAction(Invocation& inv, std::string_view action,
                   std::string_view done) {
  if (inv.document()) {
    Json j = Json::object();
    j["vault"] = inv.positional[0];
    j["name"] = inv.positional[1];
    j[std::string(action)] = true;
    PrintDocument(inv, j);
  } else {
    PrintLine(inv, "key " + inv.positional[1] + " in vault " +
                       inv.positional[0] + " " + std::string(done));
  }
}

Status KeyDelete(Invocation& inv) {
  CMKFS_RETURN_IF_ERROR(inv.ctx->keystore->DeleteKey(
      inv.caller(), inv.positional[0], inv.positional[1]));
  EmitKeyAction(inv, "deleted",
                "deleted (soft delete: 'cmkctl key recover' restores it)");
  return Status::Ok();
}

Status KeyRecover(Invocation& inv) {
  CMKFS_RETURN_IF_ERROR(inv.ctx->keystore->RecoverKey(
      inv.caller(), inv.positional[0], inv.positional[1]));
  EmitKeyAction(inv, "recovered", "recovered");
  return Status::Ok();
}

Status KeyPurge(Invocation& inv) {
  CMKFS_RETURN_IF_ERROR(inv.ctx->keystore->PurgeKey(
      inv.caller(), inv.positional[0], inv.positional[1]));
  EmitKeyAction(inv, "purged", "purged");
  return Status::Ok();
}

// "none" clears.
Status DurationFlag(Invocation& inv, std::string_view flag,
                    std::optional<std::chrono::milliseconds>* out) {
  auto text = inv.Value(flag);
  if (!text) return Status::Ok();
  if (text->empty() || *text == "none") {
    out->reset();
    return Status::Ok();
  }
  auto d = ParseDuration(*text);
  if (!d.ok()) {
    return inv.Usage(std::string(flag) + ": " + d.status().message() +
                     " (or 'none' to clear)");
  }
  *out = *d;
  return Status::Ok();
}

Status KeyRotationPolicy(Invocation& inv) {
  const std::string& vault = inv.positional[0];
  const std::string& name = inv.positional[1];
  CMKFS_ASSIGN_OR_RETURN(auto key,
                         inv.ctx->keystore->GetKey(inv.caller(), vault, name));
  keystore::RotationPolicy policy = key.rotation_policy;
  bool change = inv.Has("--rotate-after") || inv.Has("--notify-before") ||
                inv.Has("--expires-in");
  if (change) {
    CMKFS_RETURN_IF_ERROR(
        DurationFlag(inv, "--rotate-after", &policy.rotate_after));
    CMKFS_RETURN_IF_ERROR(
        DurationFlag(inv, "--notify-before", &policy.notify_before));
    CMKFS_RETURN_IF_ERROR(
        DurationFlag(inv, "--expires-in", &policy.expires_in));
    CMKFS_RETURN_IF_ERROR(inv.ctx->keystore->SetRotationPolicy(
        inv.caller(), vault, name, policy));
  }
  Json j = RotationPolicyJson(policy);
  j["vault"] = vault;
  j["name"] = name;
  Emit(inv, j);
  return Status::Ok();
}

}  // namespace

const std::vector<CommandSpec>& KeystoreCommands() {
  static const std::vector<CommandSpec> kCommands = {
      {"vault",
       "create",
       {"VAULT"},
       {{"--sku", FlagKind::kValue, "standard|premium", Complete::kChoices},
        {"--purge-protection", FlagKind::kSwitch, ""},
        {"--retention-days", FlagKind::kValue, "N"}},
       "Creates a key vault (soft-delete retention 7-90 days, default 90).",
       VaultCreate},
      {"vault",
       "show",
       {"VAULT"},
       {},
       "Shows a vault, its access policies and where its keys' private "
       "halves live.",
       VaultShow},
      {"vault", "list", {}, {}, "Lists the vaults.", VaultList, {"ls"}},
      {"vault",
       "migrate-master-key",
       {},
       {{"--to", FlagKind::kValue, "tpm2"}},
       "Moves the vault master key from its file into the TPM ([keystore] "
       "tpm2_*) and removes the file, crash-safely. Runs in cmkctl.",
       VaultMigrateMasterKey},
      {"vault",
       "set-policy",
       {"VAULT"},
       {{"--object-id", FlagKind::kValue, "ID", Complete::kIdentity},
        {"--key-permissions", FlagKind::kList, "PERM...",
         Complete::kPermission}},
       "Grants key permissions to an identity (replacing its previous set). "
       "Permissions: get list create import update delete recover purge "
       "wrapKey unwrapKey rotate.",
       VaultSetPolicy},
      {"vault",
       "delete-policy",
       {"VAULT"},
       {{"--object-id", FlagKind::kValue, "ID", Complete::kIdentity}},
       "Removes an identity's access policy.",
       VaultDeletePolicy},
      {"vault",
       "audit",
       {"VAULT"},
       {{"--key", FlagKind::kValue, "NAME", Complete::kKey},
        {"--since", FlagKind::kValue, "TIME"},
        {"--verify", FlagKind::kSwitch, ""},
        {"--follow", FlagKind::kSwitch, ""}},
       "Prints the vault's audit log (every operation, allowed or denied). "
       "--verify checks its hash chain and names the first broken entry; "
       "--follow streams new entries (-o json: JSON lines) until SIGINT.",
       VaultAudit},
      {"key",
       "create",
       {"VAULT", "NAME"},
       {{"--kty", FlagKind::kValue, "RSA|RSA-HSM", Complete::kChoices},
        {"--size", FlagKind::kValue, "2048|3072|4096", Complete::kChoices}},
       "Creates an RSA key (default 3072 bits); prints the new key id.",
       KeyCreate},
      {"key",
       "import",
       {"VAULT", "NAME"},
       {{"--pem", FlagKind::kValue, "FILE", Complete::kFile},
        {"--kty", FlagKind::kValue, "RSA|RSA-HSM", Complete::kChoices}},
       "Imports a PEM RSA private key as a key or a new version; prints the "
       "new key id.",
       KeyImport},
      {"key",
       "show",
       {"VAULT", "NAME"},
       {{"--version", FlagKind::kValue, "V", Complete::kKeyVersion}},
       "Shows a key (its latest version and every version) or one version.",
       KeyShow},
      {"key",
       "list",
       {"VAULT"},
       {},
       "Lists the keys of a vault.",
       KeyList,
       {"ls"}},
      {"key",
       "rotate",
       {"VAULT", "NAME"},
       {},
       "Creates a new version of a key; prints the new key id.",
       KeyRotate},
      {"key",
       "set-attributes",
       {"VAULT", "NAME"},
       {{"--version", FlagKind::kValue, "V", Complete::kKeyVersion},
        {"--enabled", FlagKind::kSwitch, "true|false", Complete::kChoices},
        {"--expires", FlagKind::kValue, "TIME|none"},
        {"--not-before", FlagKind::kValue, "TIME|none"}},
       "Changes a key version's attributes (default: the latest version).",
       KeySetAttributes,
       {"update"}},
      {"key",
       "delete",
       {"VAULT", "NAME"},
       {},
       "Soft-deletes a key (recoverable during the vault's retention).",
       KeyDelete},
      {"key",
       "recover",
       {"VAULT", "NAME"},
       {},
       "Recovers a soft-deleted key.",
       KeyRecover},
      {"key",
       "purge",
       {"VAULT", "NAME"},
       {},
       "Purges a soft-deleted key for good (refused under purge protection).",
       KeyPurge},
      {"key",
       "rotation-policy",
       {"VAULT", "NAME"},
       {{"--rotate-after", FlagKind::kValue, "DURATION|none"},
        {"--notify-before", FlagKind::kValue, "DURATION|none"},
        {"--expires-in", FlagKind::kValue, "DURATION|none"}},
       "Shows or sets a key's rotation policy.",
       KeyRotationPolicy},
  };
  return kCommands;
}

}  // namespace cmkfs::cli
