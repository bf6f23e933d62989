// cmkfs.toml: typed settings with documented defaults (docs/config.md).
// Unknown keys, wrong types and out-of-range values are errors that name the
// file, the line and the key.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs {

// The largest disk (and snapshot or image) size: [limits] max_disk_size,
// 64 TiB unless configured, at most 1 EiB so that no size arithmetic of the
// engine or of the FUSE edge (off_t) can overflow.
constexpr uint64_t kDefaultMaxDiskSize = 64ull << 40;
constexpr uint64_t kMinMaxDiskSize = 1ull << 20;
constexpr uint64_t kMaxMaxDiskSize = 1ull << 60;

struct Config {
  std::filesystem::path state_dir = "/var/lib/cmkfs";
  std::string log_level = "info";  // trace|debug|info|warn|error|off

  struct Keystore {
    std::filesystem::path dir;              // default: <state_dir>/vault
    std::filesystem::path master_key_file;  // default: <state_dir>/vault.key
    // When set, the master key is derived from the passphrase in this file
    // (scrypt) instead of read from master_key_file.
    std::filesystem::path passphrase_file;
    // Where the master key comes from: "file", "passphrase" or "tpm2"; empty
    // = "passphrase" when passphrase_file is set, else "file".
    std::string master_key;
    // master_key = "tpm2": the sealed blob, the TCTI and the PCRs it is
    // bound to ("7", "0,7"; empty = none).
    std::filesystem::path tpm2_sealed_file;  // default: <state_dir>/vault.tpm2
    std::string tpm2_tcti = "device:/dev/tpmrm0";
    std::string tpm2_pcrs;
    // Service mode (docs/vault-api.md): the cmkvault endpoint, "host:port" or
    // "unix:/path"; empty = embedded keystore (the default). `credential` is
    // the credential bundle used when no --as is given; `credentials_dir`
    // holds one bundle per further identity (<object-id>.pem, e.g. DES ones).
    std::string service;
    std::filesystem::path credential;
    std::filesystem::path credentials_dir;
  } keystore;

  struct Watcher {
    std::chrono::milliseconds poll_interval{std::chrono::seconds(5)};
    std::chrono::milliseconds auto_rotation_window{std::chrono::hours(1)};
    std::string on_seal;  // command, run with the disk name as its argument
    // How long open disks keep working while the keystore (the vault service)
    // cannot be reached; then they seal (docs/watcher.md).
    std::chrono::milliseconds unreachable_grace{std::chrono::minutes(5)};
  } watcher;

  struct Defaults {
    std::string subscription = "default";
    std::string resource_group = "default";
    std::string region = "local";
  } defaults;

  struct Limits {
    uint32_t disk_encryption_sets_per_region = 1000;
    uint64_t max_disk_size = kDefaultMaxDiskSize;  // "64T"
  } limits;

  struct Pkcs11 {
    std::filesystem::path module = "/usr/lib/softhsm/libsofthsm2.so";
    std::string token_label = "cmkfs";
    std::filesystem::path pin_file = "/etc/cmkfs/hsm.pin";
    // Passed to C_Initialize in CK_C_INITIALIZE_ARGS.pReserved when not
    // empty (NSS softokn's "configdir='sql:/path' ..." parameters).
    std::string init_args;
  } pkcs11;

  struct Mount {
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint32_t mode = 0600;
    bool allow_other = false;
    std::filesystem::path mountpoint;  // used by the systemd unit
  } mount;

  struct Engine {
    uint64_t cache_bytes = 32ull << 20;  // extent-map cache ("32M")
    uint32_t fuse_threads = 0;           // 0 = automatic
    // backing_io: "buffered" (through the host's page cache) or "direct"
    // (O_DIRECT: the pool's data is not cached by the host).
    enum class BackingIo { kBuffered, kDirect };
    BackingIo backing_io = BackingIo::kBuffered;
  } engine;

  // [metrics] listen: where the daemon serves Prometheus metrics
  // (docs/metrics.md). Off unless configured.
  struct Metrics {
    enum class Kind { kOff, kTcp, kUnix };
    Kind kind = Kind::kOff;
    std::string host;   // kTcp: IPv4 or IPv6 literal (no brackets) or a name
    uint16_t port = 0;  // kTcp: 1..65535
    std::filesystem::path socket_path;  // kUnix: absolute
    std::string listen = "off";         // as written, for messages
  } metrics;

  // Fills the path defaults that depend on state_dir.
  void ResolveDefaults();
};

// Parses a [metrics] listen value: "off" (or ""), "HOST:PORT" with HOST an
// IPv4 address, a bracketed IPv6 address or a host name, or
// "unix:/ABSOLUTE/PATH". InvalidArgument saying what is accepted otherwise.
Result<Config::Metrics> ParseMetricsListen(std::string_view text);

// Parses TOML text; keys not in the text keep their defaults, and
// ResolveDefaults is left to the caller (after any --state-dir override).
// `source_name` (usually the file path) prefixes errors:
// "FILE:LINE: key 'watcher.poll_interval': expected a duration such as
// \"5s\" or \"PT5S\", got 42".
Result<Config> ParseConfig(std::string_view toml_text,
                           std::string_view source_name);
// Reads and parses a file; NotFound with the path if it does not exist.
// The file must be trusted (CheckTrustedFile, cmkfs/file_trust.h): it names
// commands (on_seal) and a module that run as the daemon's user.
Result<Config> LoadConfigFile(const std::filesystem::path& path);

}  // namespace cmkfs
