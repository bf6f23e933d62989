// Global flags, the effective configuration, and opening the keystore and
// the engine of one state directory.
#include <sys/stat.h>

#include <cstdlib>
#include <system_error>

#include "cmkfs/cli.h"
#include "cmkfs/io_layer.h"
#include "cmkfs/path_guard.h"
#include "cmkfs/units.h"
#include "command_support.h"
#include "split_keystore.h"
#include "vault/transport/transport.h"

namespace cmkfs::cli {
namespace {

enum class GlobalFlag {
  kConfig,
  kStateDir,
  kOutput,
  kAs,
  kSubscription,
  kResourceGroup,
  kRegion,
  kLogLevel,
};

struct GlobalFlagName {
  std::string_view name;
  GlobalFlag flag;
  Complete complete = Complete::kNothing;  // what the value names
  std::string_view choices = "";           // kChoices
};

constexpr std::string_view kOutputFormats = "table|json|tsv";
constexpr std::string_view kLogLevels = "trace|debug|info|warn|error|off";

constexpr GlobalFlagName kGlobalFlagNames[] = {
    {"--config", GlobalFlag::kConfig, Complete::kFile},
    {"--state-dir", GlobalFlag::kStateDir, Complete::kDirectory},
    {"-o", GlobalFlag::kOutput, Complete::kChoices, kOutputFormats},
    {"--output", GlobalFlag::kOutput, Complete::kChoices, kOutputFormats},
    {"--as", GlobalFlag::kAs, Complete::kIdentity},
    {"--subscription", GlobalFlag::kSubscription},
    {"--resource-group", GlobalFlag::kResourceGroup},
    {"-g", GlobalFlag::kResourceGroup},
    {"--region", GlobalFlag::kRegion},
    {"--location", GlobalFlag::kRegion},
    {"-l", GlobalFlag::kRegion},
    {"--log-level", GlobalFlag::kLogLevel, Complete::kChoices, kLogLevels},
};

bool IsOutputFormat(std::string_view value) {
  for (const auto& format : SplitChoices(kOutputFormats)) {
    if (format == value) return true;
  }
  return false;
}

const GlobalFlagName* FindGlobalFlag(std::string_view name) {
  for (const auto& f : kGlobalFlagNames) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// "/x", "./x", "../x": --as names a credential file, not an object id.
// Not inlined: GCC 12 at -O3 reports a false
// -Wmaybe-uninitialized when this is inlined into Apply.
[[gnu::noinline]] bool LooksLikePath(std::string_view v) {
  return v.starts_with('/') || v.starts_with("./") || v.starts_with("../");
}

Status Apply(GlobalFlag flag, std::string_view flag_name, std::string value,
             GlobalFlags* flags) {
  switch (flag) {
    case GlobalFlag::kConfig:
      if (value.empty()) {
        return InvalidArgumentError("flag '--config' needs a file name");
      }
      flags->config_file = value;
      break;
    case GlobalFlag::kStateDir:
      if (value.empty()) {
        return InvalidArgumentError("flag '--state-dir' needs a directory");
      }
      flags->state_dir = value;
      break;
    case GlobalFlag::kOutput:
      if (!IsOutputFormat(value)) {
        return InvalidArgumentError("unknown output format '" + value +
                                    "' for '" + std::string(flag_name) +
                                    "'; accepted: table, json, tsv");
      }
      flags->output = value;
      break;
    case GlobalFlag::kAs:
      // Service mode: a credential bundle (a path). Embedded mode: it names
      // the caller in audit entries, an object id, nothing else.
      if (LooksLikePath(value)) {
        flags->as_credential = value;
        break;
      }
      CMKFS_RETURN_IF_ERROR(keystore::CheckObjectId(value, flag_name));
      flags->as_identity = value;
      break;
    case GlobalFlag::kSubscription:
      flags->subscription = value;
      break;
    case GlobalFlag::kResourceGroup:
      flags->resource_group = value;
      break;
    case GlobalFlag::kRegion:
      flags->region = value;
      break;
    case GlobalFlag::kLogLevel:
      flags->log_level = value;
      break;
  }
  return Status::Ok();
}

}  // namespace

std::vector<GlobalFlagInfo> GlobalFlagTable() {
  std::vector<GlobalFlagInfo> out;
  for (const auto& f : kGlobalFlagNames)
    out.push_back({f.name, f.complete, f.choices});
  return out;
}

Status ExtractGlobalFlags(std::vector<std::string>& args, GlobalFlags* flags) {
  return ExtractGlobalFlagsIndexed(args, flags, nullptr);
}

Status ExtractGlobalFlagsIndexed(std::vector<std::string>& args,
                                 GlobalFlags* flags,
                                 std::vector<size_t>* kept) {
  std::vector<std::string> rest;
  rest.reserve(args.size());
  if (kept) kept->clear();
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {  // everything after it is left alone
      rest.insert(rest.end(), args.begin() + static_cast<ptrdiff_t>(i),
                  args.end());
      for (size_t j = i; kept && j < args.size(); ++j) kept->push_back(j);
      break;
    }
    std::string_view name = arg;
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('=');
        arg.starts_with("-") && eq != std::string::npos) {
      name = std::string_view(arg).substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const GlobalFlagName* flag = FindGlobalFlag(name);
    if (flag == nullptr) {
      rest.push_back(arg);
      if (kept) kept->push_back(i);
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      if (i + 1 >= args.size()) {
        return InvalidArgumentError("flag '" + std::string(name) +
                                    "' needs a value");
      }
      value = args[++i];
    }
    CMKFS_RETURN_IF_ERROR(Apply(flag->flag, name, std::move(value), flags));
  }
  args = std::move(rest);
  return Status::Ok();
}

Result<Config> LoadEffectiveConfig(const GlobalFlags& flags) {
  Config config;
  std::optional<std::filesystem::path> file = flags.config_file;
  if (!file) {
    if (const char* env = std::getenv("CMKFS_CONFIG"); env && *env) {
      file = env;
    }
  }
  if (file) {
    CMKFS_ASSIGN_OR_RETURN(config, LoadConfigFile(*file));
  } else {
    std::error_code ec;
    const std::filesystem::path system_file = "/etc/cmkfs/cmkfs.toml";
    if (std::filesystem::exists(system_file, ec)) {
      CMKFS_ASSIGN_OR_RETURN(config, LoadConfigFile(system_file));
    }
  }
  if (flags.state_dir) {
    config.state_dir = *flags.state_dir;
  } else if (const char* env = std::getenv("CMKFS_STATE_DIR"); env && *env) {
    config.state_dir = env;
  }
  if (config.state_dir.is_relative()) {
    std::error_code ec;
    auto absolute = std::filesystem::absolute(config.state_dir, ec);
    if (!ec) config.state_dir = absolute;
  }
  if (flags.log_level) config.log_level = *flags.log_level;
  if (flags.subscription) config.defaults.subscription = *flags.subscription;
  if (flags.resource_group) {
    config.defaults.resource_group = *flags.resource_group;
  }
  if (flags.region) config.defaults.region = *flags.region;
  if (flags.as_credential) {
    if (config.keystore.service.empty()) {
      return InvalidArgumentError(
          "--as " + EscapeControl(flags.as_credential->string()) +
          ": a credential file needs a vault service ([keystore] service); "
          "the embedded keystore takes an object id");
    }
    config.keystore.credential = *flags.as_credential;
  }
  config.ResolveDefaults();
  return config;
}

namespace {

bool IsInside(const std::filesystem::path& p,
              const std::filesystem::path& dir) {
  auto rel = p.lexically_normal().lexically_relative(dir.lexically_normal());
  return !rel.empty() && *rel.begin() != "..";
}

}  // namespace

Status CheckStateFiles(const Config& config) {
  const std::filesystem::path& dir = config.state_dir;
  CMKFS_RETURN_IF_ERROR(path_guard::PrepareStateDir(dir).WithContext(
      "unsafe state directory " + dir.string()));
  const std::filesystem::path& ks = config.keystore.dir;
  if (!ks.empty() && !IsInside(ks, dir)) {
    CMKFS_RETURN_IF_ERROR(path_guard::PrepareStateDir(ks).WithContext(
        "unsafe keystore directory " + ks.string()));
  }
  const std::filesystem::path& key = config.keystore.master_key_file;
  if (!key.empty() && !IsInside(key, dir) && !IsInside(key, ks)) {
    CMKFS_RETURN_IF_ERROR(
        path_guard::CheckAncestors(key.parent_path())
            .WithContext("unsafe directory for the vault master key " +
                         key.string()));
  }
  return Status::Ok();
}

namespace {

vault::ClientOptions VaultClientOptions(const Config& config) {
  vault::ClientOptions o;
  o.endpoint = config.keystore.service;
  o.credential = config.keystore.credential;
  o.credentials_dir = config.keystore.credentials_dir;
  return o;
}

// Service mode: the keystore is cmkvault at [keystore] service.
Result<std::unique_ptr<keystore::KeyStore>> ConnectVaultService(
    const Config& config) {
  if (config.keystore.credential.empty()) {
    return InvalidArgumentError(
        "[keystore] service is " + config.keystore.service +
        ": set [keystore] credential to a credential bundle issued by that "
        "cmkvault (or pass --as FILE)");
  }
  return vault::ConnectKeyStore(VaultClientOptions(config));
}

}  // namespace

Result<keystore::KeyStoreOptions> KeyStoreOptionsFor(const Config& config) {
  std::error_code ec;
  keystore::KeyStoreOptions ks;
  ks.dir = config.keystore.dir;
  CMKFS_ASSIGN_OR_RETURN(ks.master_key, keystore::ParseMasterKeySource(
                                            config.keystore.master_key));
  ks.master_key_file = config.keystore.master_key_file;
  ks.passphrase_file = config.keystore.passphrase_file;
  ks.tpm2_sealed_file = config.keystore.tpm2_sealed_file;
  ks.tpm2_tcti = config.keystore.tpm2_tcti;
  ks.tpm2_pcrs = config.keystore.tpm2_pcrs;
  ks.pkcs11 = config.pkcs11;
  ks.hsm_enabled = !config.pkcs11.module.empty() &&
                   std::filesystem::exists(config.pkcs11.module, ec) &&
                   std::filesystem::exists(config.pkcs11.pin_file, ec);
  return ks;
}

std::string MasterKeyPostureWarning(const Config& config) {
  auto options = KeyStoreOptionsFor(config);
  if (!options.ok()) return "";
  const keystore::MasterKeySource source =
      keystore::EffectiveMasterKeySource(*options);
  const std::string& key = config.keystore.master_key_file.string();
  struct stat key_st {
  }, data_st{};
  const bool key_exists = ::stat(key.c_str(), &key_st) == 0;
  if (source == keystore::MasterKeySource::kTpm2) {
    if (!key_exists) return "";
    return "master_key = tpm2, but the master key file " + key +
           " still exists next to the data; finish the migration with: "
           "cmkctl vault migrate-master-key --to tpm2";
  }
  if (source != keystore::MasterKeySource::kFile || !key_exists ||
      ::stat(config.state_dir.c_str(), &data_st) != 0 ||
      key_st.st_dev != data_st.st_dev) {
    return "";
  }
  return "the vault master key file " + key +
         " is on the same filesystem as the data in " +
         config.state_dir.string() +
         ": a copy of that filesystem opens every software key; seal the key "
         "to this host's TPM with: cmkctl vault migrate-master-key --to tpm2 "
         "(then set [keystore] master_key = \"tpm2\")";
}

Result<Services> OpenServices(const Config& config,
                              const KeyStoreWrapper& wrap_keystore) {
  std::error_code ec;
  if (std::filesystem::exists(config.state_dir, ec) &&
      !std::filesystem::is_directory(config.state_dir, ec)) {
    return InvalidArgumentError("state directory " + config.state_dir.string() +
                                " exists and is not a directory");
  }
  CMKFS_RETURN_IF_ERROR(CheckStateFiles(config));

  CMKFS_ASSIGN_OR_RETURN(keystore::KeyStoreOptions ks,
                         KeyStoreOptionsFor(config));
  Services services;
  auto keystore = keystore::OpenKeyStore(ks);
  if (!keystore.ok()) {
    return keystore.status().WithContext("open keystore " + ks.dir.string());
  }
  services.keystore = std::move(*keystore);
  if (!config.keystore.service.empty()) {
    // Customer vaults are the service's; the platform's own vault stays here.
    CMKFS_ASSIGN_OR_RETURN(auto remote, ConnectVaultService(config));
    services.keystore =
        SplitKeyStore(fs::EngineOptions().system_vault,
                      std::move(services.keystore), std::move(remote));
  }
  if (wrap_keystore) {
    services.keystore = wrap_keystore(std::move(services.keystore));
  }

  fs::EngineOptions eo;
  eo.dir = config.state_dir;
  eo.cache_bytes = config.engine.cache_bytes;
  eo.des_quota_per_region = config.limits.disk_encryption_sets_per_region;
  eo.max_disk_size = config.limits.max_disk_size;
  eo.defaults.subscription = config.defaults.subscription;
  eo.defaults.resource_group = config.defaults.resource_group;
  eo.defaults.region = config.defaults.region;
  if (!config.keystore.service.empty()) {
    // A DES's identity is the vault service's to mint (through the host
    // identity); its credential stays in credentials_dir.
    eo.mint_des_identity =
        [o = VaultClientOptions(config)](std::string_view des_name) {
          return vault::MintManagedIdentity(o, "des " + std::string(des_name));
        };
  }
  fs::EngineStores stores;
  stores.io =
      fs::NewPosixIoLayer({.direct = config.engine.backing_io ==
                                     Config::Engine::BackingIo::kDirect});
  auto engine = fs::OpenEngine(eo, services.keystore.get(), std::move(stores));
  if (!engine.ok()) {
    if (engine.status().kind() == ErrorKind::kBusy) {
      return BusyError("state directory " + config.state_dir.string() +
                       " is in use by another process (a cmkfs daemon not "
                       "answering on " +
                       ControlSocketPath(config).string() +
                       ", or another cmkctl): " + engine.status().message());
    }
    return engine.status().WithContext("open disk engine in " +
                                       config.state_dir.string());
  }
  services.engine = std::move(*engine);
  return services;
}

}  // namespace cmkfs::cli
