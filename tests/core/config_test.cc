#include "cmkfs/config.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "cmkfs/log.h"

namespace cmkfs {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The example of CLI.md plus the other documented keys.
constexpr std::string_view kFullConfig = R"(state_dir = "/srv/cmkfs"
log_level = "debug"
[keystore]
dir = "/srv/cmkfs/v"
master_key_file = "/srv/cmkfs/v.key"
passphrase_file = "/etc/cmkfs/pass"
[watcher]
poll_interval = "1s"
auto_rotation_window = "PT2M"
on_seal = "/usr/local/bin/stop-vm"
[defaults]
subscription = "sub1"
resource_group = "rg1"
region = "westeurope"
[limits]
disk_encryption_sets_per_region = 5
max_disk_size = "1T"
[pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "tok"
pin_file = "/etc/cmkfs/hsm.pin"
[mount]
uid = 1000
gid = 1001
mode = "0640"
allow_other = true
mountpoint = "/mnt/cmkfs"
[engine]
cache = "64M"
fuse_threads = 8
)";

// The example of CLI.md, verbatim.
constexpr std::string_view kCliExample = R"(state_dir = "/var/lib/cmkfs"
[keystore]
dir = "/var/lib/cmkfs/vault"              # default: <state_dir>/vault
master_key_file = "/var/lib/cmkfs/vault.key"
[watcher]
poll_interval = "5s"                       # "1s" must work
auto_rotation_window = "1h"
on_seal = ""                               # command run with the disk name as its argument
[defaults]
subscription = "default"
resource_group = "default"
region = "local"
[limits]
disk_encryption_sets_per_region = 1000
[pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "cmkfs"
pin_file = "/etc/cmkfs/hsm.pin"
[mount]
uid = 0
gid = 0
mode = "0600"
allow_other = false
)";

Config Parse(std::string_view text) {
  Result<Config> c = ParseConfig(text, "test.toml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : Config{};
}

std::string ErrorOf(std::string_view text) {
  Result<Config> c = ParseConfig(text, "cmkfs.toml");
  EXPECT_FALSE(c.ok()) << text;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().kind(), ErrorKind::kInvalidArgument);
  return c.status().message();
}

TEST(Config, FullFileParsesToTheRightValues) {
  Config c = Parse(kFullConfig);
  EXPECT_EQ(c.state_dir, "/srv/cmkfs");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.keystore.dir, "/srv/cmkfs/v");
  EXPECT_EQ(c.keystore.master_key_file, "/srv/cmkfs/v.key");
  EXPECT_EQ(c.keystore.passphrase_file, "/etc/cmkfs/pass");
  EXPECT_EQ(c.watcher.poll_interval, seconds(1));
  EXPECT_EQ(c.watcher.auto_rotation_window, std::chrono::minutes(2));
  EXPECT_EQ(c.watcher.on_seal, "/usr/local/bin/stop-vm");
  EXPECT_EQ(c.defaults.subscription, "sub1");
  EXPECT_EQ(c.defaults.resource_group, "rg1");
  EXPECT_EQ(c.defaults.region, "westeurope");
  EXPECT_EQ(c.limits.disk_encryption_sets_per_region, 5u);
  EXPECT_EQ(c.limits.max_disk_size, 1ull << 40);
  EXPECT_EQ(c.pkcs11.module, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(c.pkcs11.token_label, "tok");
  EXPECT_EQ(c.pkcs11.pin_file, "/etc/cmkfs/hsm.pin");
  EXPECT_EQ(c.mount.uid, 1000u);
  EXPECT_EQ(c.mount.gid, 1001u);
  EXPECT_EQ(c.mount.mode, 0640u);
  EXPECT_TRUE(c.mount.allow_other);
  EXPECT_EQ(c.mount.mountpoint, "/mnt/cmkfs");
  EXPECT_EQ(c.engine.cache_bytes, 64u << 20);
  EXPECT_EQ(c.engine.fuse_threads, 8u);
}

TEST(Config, CliMdExampleIsAccepted) {
  Config c = Parse(kCliExample);
  EXPECT_EQ(c.state_dir, "/var/lib/cmkfs");
  EXPECT_EQ(c.keystore.dir, "/var/lib/cmkfs/vault");
  EXPECT_EQ(c.keystore.master_key_file, "/var/lib/cmkfs/vault.key");
  EXPECT_EQ(c.watcher.poll_interval, seconds(5));
  EXPECT_EQ(c.watcher.auto_rotation_window, hours(1));
  EXPECT_EQ(c.watcher.on_seal, "");
  EXPECT_EQ(c.defaults.region, "local");
  EXPECT_EQ(c.limits.disk_encryption_sets_per_region, 1000u);
  EXPECT_EQ(c.pkcs11.token_label, "cmkfs");
  EXPECT_EQ(c.mount.mode, 0600u);
  EXPECT_FALSE(c.mount.allow_other);
}

// docs/config.md's example lists every key with its default value.
TEST(Config, DocumentedExampleParsesToTheDefaults) {
  std::ifstream in(std::string(CMKFS_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  std::string doc = buf.str();
  size_t start = doc.find("```toml\n", doc.find("## Example"));
  ASSERT_NE(start, std::string::npos);
  start += 8;
  size_t end = doc.find("```", start);
  Config c = Parse(std::string_view(doc).substr(start, end - start));
  Config d;
  d.ResolveDefaults();
  EXPECT_EQ(c.state_dir, d.state_dir);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.keystore.dir, d.keystore.dir);
  EXPECT_EQ(c.keystore.master_key_file, d.keystore.master_key_file);
  EXPECT_EQ(c.watcher.poll_interval, d.watcher.poll_interval);
  EXPECT_EQ(c.watcher.auto_rotation_window, d.watcher.auto_rotation_window);
  EXPECT_EQ(c.defaults.subscription, d.defaults.subscription);
  EXPECT_EQ(c.defaults.resource_group, d.defaults.resource_group);
  EXPECT_EQ(c.defaults.region, d.defaults.region);
  EXPECT_EQ(c.limits.disk_encryption_sets_per_region,
            d.limits.disk_encryption_sets_per_region);
  EXPECT_EQ(c.limits.max_disk_size, d.limits.max_disk_size);
  EXPECT_EQ(c.pkcs11.module, d.pkcs11.module);
  EXPECT_EQ(c.pkcs11.token_label, d.pkcs11.token_label);
  EXPECT_EQ(c.pkcs11.pin_file, d.pkcs11.pin_file);
  EXPECT_EQ(c.mount.uid, d.mount.uid);
  EXPECT_EQ(c.mount.gid, d.mount.gid);
  EXPECT_EQ(c.mount.mode, d.mount.mode);
  EXPECT_EQ(c.mount.allow_other, d.mount.allow_other);
  EXPECT_EQ(c.engine.cache_bytes, d.engine.cache_bytes);
  EXPECT_EQ(c.engine.fuse_threads, d.engine.fuse_threads);
  EXPECT_EQ(c.engine.backing_io, d.engine.backing_io);
  EXPECT_EQ(c.metrics.kind, d.metrics.kind);
}

TEST(Config, EmptyFileGivesTheDocumentedDefaults) {
  Config c = Parse("");
  EXPECT_EQ(c.state_dir, "/var/lib/cmkfs");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.watcher.poll_interval, seconds(5));
  EXPECT_EQ(c.watcher.auto_rotation_window, hours(1));
  EXPECT_EQ(c.limits.disk_encryption_sets_per_region, 1000u);
  EXPECT_EQ(c.limits.max_disk_size, 64ull << 40);
  EXPECT_EQ(c.mount.mode, 0600u);
  EXPECT_EQ(c.engine.cache_bytes, 32u << 20);
  EXPECT_TRUE(c.keystore.dir.empty());
  c.state_dir = "/tmp/x";
  c.ResolveDefaults();
  EXPECT_EQ(c.keystore.dir, "/tmp/x/vault");
  EXPECT_EQ(c.keystore.master_key_file, "/tmp/x/vault.key");
}

TEST(Config, ResolveDefaultsKeepsExplicitPaths) {
  Config c = Parse(kFullConfig);
  c.ResolveDefaults();
  EXPECT_EQ(c.keystore.dir, "/srv/cmkfs/v");
  EXPECT_EQ(c.keystore.master_key_file, "/srv/cmkfs/v.key");
}

TEST(Config, OctalIntegerModeAndIsoDurationsAreAccepted) {
  Config c =
      Parse("[mount]\nmode = 0o750\n[watcher]\npoll_interval = \"PT0.5S\"\n");
  EXPECT_EQ(c.mount.mode, 0750u);
  EXPECT_EQ(c.watcher.poll_interval, milliseconds(500));
}

TEST(Config, UnknownTopLevelKey) {
  EXPECT_EQ(ErrorOf("log_level = \"info\"\nstatedir = \"/x\"\n"),
            "cmkfs.toml:2: unknown key 'statedir'; known top-level keys: "
            "state_dir, log_level, keystore, watcher, defaults, limits, "
            "pkcs11, mount, engine, metrics");
}

TEST(Config, UnknownKeyInATable) {
  EXPECT_EQ(
      ErrorOf("[watcher]\npoll_interval = \"5s\"\npol_interval = \"1s\"\n"),
      "cmkfs.toml:3: unknown key 'watcher.pol_interval'; known keys in "
      "[watcher]: poll_interval, auto_rotation_window, on_seal, "
      "unreachable_grace");
  EXPECT_EQ(ErrorOf("\n[mount.extra]\nx = 1\n"),
            "cmkfs.toml:2: unknown key 'mount.extra'; known keys in [mount]: "
            "uid, gid, mode, allow_other, mountpoint");
  EXPECT_EQ(ErrorOf("[watchr]\n"),
            "cmkfs.toml:1: unknown key 'watchr'; known top-level keys: "
            "state_dir, log_level, keystore, watcher, defaults, limits, "
            "pkcs11, mount, engine, metrics");
}

TEST(Config, WrongType) {
  EXPECT_EQ(ErrorOf("[mount]\nuid = \"root\"\n"),
            "cmkfs.toml:2: key 'mount.uid': expected an integer, got string");
  EXPECT_EQ(ErrorOf("[mount]\nallow_other = 1\n"),
            "cmkfs.toml:2: key 'mount.allow_other': expected a boolean (true "
            "or false), got integer");
  EXPECT_EQ(ErrorOf("state_dir = 5\n"),
            "cmkfs.toml:1: key 'state_dir': expected a string, got integer");
  EXPECT_EQ(ErrorOf("watcher = \"x\"\n"),
            "cmkfs.toml:1: key 'watcher': expected a table, got string");
}

TEST(Config, OutOfRange) {
  EXPECT_EQ(ErrorOf("[limits]\ndisk_encryption_sets_per_region = 0\n"),
            "cmkfs.toml:2: key 'limits.disk_encryption_sets_per_region': 0 is "
            "out of range (1..1000000)");
  EXPECT_EQ(ErrorOf("[limits]\nmax_disk_size = \"2097152T\"\n"),
            "cmkfs.toml:2: key 'limits.max_disk_size': 2305843009213693952 "
            "bytes is not accepted: use a multiple of 4096 bytes from 1 MiB "
            "to 1 EiB");
  EXPECT_EQ(ErrorOf("[limits]\nmax_disk_size = 1048577\n"),
            "cmkfs.toml:2: key 'limits.max_disk_size': 1048577 bytes is not "
            "accepted: use a multiple of 4096 bytes from 1 MiB to 1 EiB");
  EXPECT_EQ(ErrorOf("[limits]\nmax_disk_size = \"99999999999999999999\"\n"),
            "cmkfs.toml:2: key 'limits.max_disk_size': size "
            "'99999999999999999999' is too large: sizes up to 16 EiB - 1 "
            "(18446744073709551615 bytes) are accepted");
  EXPECT_EQ(ErrorOf("[mount]\n\ngid = -1\n"),
            "cmkfs.toml:3: key 'mount.gid': -1 is out of range "
            "(0..4294967294)");
}

TEST(Config, BadDuration) {
  EXPECT_EQ(ErrorOf("[watcher]\npoll_interval = \"5 seconds\"\n"),
            "cmkfs.toml:2: key 'watcher.poll_interval': invalid duration '5 "
            "seconds': expected a number with ms, s, m, h, d or w (e.g. "
            "500ms, 30s, 5m, 1h, 1h30m) or an ISO 8601 duration (e.g. P90D, "
            "PT1H30M, P1Y2M3DT4H)");
  EXPECT_EQ(ErrorOf("[watcher]\npoll_interval = 42\n"),
            "cmkfs.toml:2: key 'watcher.poll_interval': expected a duration "
            "such as \"5s\" or \"PT5S\", got 42");
  EXPECT_EQ(ErrorOf("[watcher]\npoll_interval = \"50ms\"\n"),
            "cmkfs.toml:2: key 'watcher.poll_interval': 50ms is below the "
            "minimum of 100ms");
}

TEST(Config, BadMode) {
  const std::string expected =
      "key 'mount.mode': expected a string of octal digits such as \"0600\" "
      "or an octal integer such as 0o600, got ";
  EXPECT_EQ(ErrorOf("[mount]\nmode = \"0689\"\n"),
            "cmkfs.toml:2: " + expected + "\"0689\"");
  EXPECT_EQ(ErrorOf("[mount]\nmode = \"rw-------\"\n"),
            "cmkfs.toml:2: " + expected + "\"rw-------\"");
  EXPECT_EQ(ErrorOf("[mount]\nmode = 600\n"),
            "cmkfs.toml:2: " + expected + "600");
  EXPECT_EQ(ErrorOf("[mount]\nmode = \"17777\"\n"),
            "cmkfs.toml:2: " + expected + "\"17777\"");
}

// Key custody keys (#18): the master key source, the TPM and the PKCS#11
// module's init parameters.
TEST(Config, KeyCustodyKeys) {
  Config c = Parse(
      "[keystore]\nmaster_key = \"tpm2\"\ntpm2_tcti = \"swtpm:path=/run/s\"\n"
      "tpm2_pcrs = \"0,7\"\ntpm2_sealed_file = \"/srv/v.tpm2\"\n"
      "[pkcs11]\ninit_args = \"configdir='sql:/etc/cmkfs/nssdb'\"\n");
  EXPECT_EQ(c.keystore.master_key, "tpm2");
  EXPECT_EQ(c.keystore.tpm2_tcti, "swtpm:path=/run/s");
  EXPECT_EQ(c.keystore.tpm2_pcrs, "0,7");
  EXPECT_EQ(c.keystore.tpm2_sealed_file, "/srv/v.tpm2");
  EXPECT_EQ(c.pkcs11.init_args, "configdir='sql:/etc/cmkfs/nssdb'");
  Config d = Parse("");
  EXPECT_EQ(d.keystore.master_key, "");
  EXPECT_EQ(d.keystore.tpm2_tcti, "device:/dev/tpmrm0");
  d.state_dir = "/tmp/x";
  d.ResolveDefaults();
  EXPECT_EQ(d.keystore.tpm2_sealed_file, "/tmp/x/vault.tpm2");
  EXPECT_EQ(ErrorOf("[keystore]\nmaster_key = \"hsm\"\n"),
            "cmkfs.toml:2: key 'keystore.master_key': 'hsm' is not a master "
            "key source; expected file, passphrase or tpm2");
}

TEST(Config, BadLogLevel) {
  EXPECT_EQ(ErrorOf("log_level = \"verbose\"\n"),
            "cmkfs.toml:1: key 'log_level': 'verbose' is not a log level; "
            "expected trace, debug, info, warn, error or off");
}

TEST(Config, BadCacheSize) {
  EXPECT_EQ(ErrorOf("[engine]\ncache = \"lots\"\n"),
            "cmkfs.toml:2: key 'engine.cache': invalid size 'lots': expected "
            "bytes or a number with K, M, G or T (e.g. 64M, 10G)");
}

TEST(Config, BackingIo) {
  using BackingIo = Config::Engine::BackingIo;
  EXPECT_EQ(Parse("").engine.backing_io, BackingIo::kBuffered);
  EXPECT_EQ(Parse("[engine]\nbacking_io = \"direct\"\n").engine.backing_io,
            BackingIo::kDirect);
  EXPECT_EQ(Parse("[engine]\nbacking_io = \"buffered\"\n").engine.backing_io,
            BackingIo::kBuffered);
  EXPECT_EQ(ErrorOf("[engine]\nbacking_io = \"o_direct\"\n"),
            "cmkfs.toml:2: key 'engine.backing_io': 'o_direct' is not a "
            "backing I/O mode; expected buffered or direct");
  EXPECT_EQ(ErrorOf("[engine]\nbacking_io = true\n"),
            "cmkfs.toml:2: key 'engine.backing_io': expected a string, got "
            "boolean");
}

TEST(Config, MetricsListenForms) {
  Config off = Parse("");
  EXPECT_EQ(off.metrics.kind, Config::Metrics::Kind::kOff);
  EXPECT_EQ(Parse("[metrics]\nlisten = \"off\"\n").metrics.kind,
            Config::Metrics::Kind::kOff);
  EXPECT_EQ(Parse("[metrics]\nlisten = \"\"\n").metrics.kind,
            Config::Metrics::Kind::kOff);
  Config tcp = Parse("[metrics]\nlisten = \"127.0.0.1:9469\"\n");
  EXPECT_EQ(tcp.metrics.kind, Config::Metrics::Kind::kTcp);
  EXPECT_EQ(tcp.metrics.host, "127.0.0.1");
  EXPECT_EQ(tcp.metrics.port, 9469);
  Config v6 = Parse("[metrics]\nlisten = \"[::1]:65535\"\n");
  EXPECT_EQ(v6.metrics.host, "::1");
  EXPECT_EQ(v6.metrics.port, 65535);
  EXPECT_EQ(Parse("[metrics]\nlisten = \"localhost:1\"\n").metrics.host,
            "localhost");
  Config unix_socket =
      Parse("[metrics]\nlisten = \"unix:/run/cmkfs/metrics.sock\"\n");
  EXPECT_EQ(unix_socket.metrics.kind, Config::Metrics::Kind::kUnix);
  EXPECT_EQ(unix_socket.metrics.socket_path, "/run/cmkfs/metrics.sock");
}

TEST(Config, BadMetricsListenNamesTheKeyAndTheAcceptedForms) {
  const std::string accepted =
      "; expected \"HOST:PORT\" (e.g. \"127.0.0.1:9469\" or "
      "\"[::1]:9469\", port 1..65535), \"unix:/absolute/path\" or \"off\"";
  const std::string key = "cmkfs.toml:2: key 'metrics.listen': ";
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"9469\"\n"),
            key + "'9469' is not accepted" + accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"127.0.0.1:0\"\n"),
            key + "'127.0.0.1:0' has a bad port" + accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"127.0.0.1:70000\"\n"),
            key + "'127.0.0.1:70000' has a bad port" + accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"127.0.0.1:http\"\n"),
            key + "'127.0.0.1:http' has a bad port" + accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"::1:9469\"\n"),
            key + "'::1:9469' has a bad host" + accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"[fe80::1%eth0]:9469\"\n"),
            key + "'[fe80::1%eth0]:9469' has a bad IPv6 address" + accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = \"unix:run/m.sock\"\n"),
            key +
                "'unix:run/m.sock' is not accepted: the socket path must be "
                "absolute" +
                accepted);
  EXPECT_EQ(
      ErrorOf("[metrics]\nlisten = \"unix:/" + std::string(107, 'x') + "\"\n"),
      key + "'unix:/" + std::string(107, 'x') +
          "' is not accepted: the socket path is longer than 107 bytes" +
          accepted);
  EXPECT_EQ(ErrorOf("[metrics]\nlisten = 9469\n"),
            key + "expected a string, got integer");
  EXPECT_EQ(ErrorOf("[metrics]\nport = 9469\n"),
            "cmkfs.toml:2: unknown key 'metrics.port'; known keys in "
            "[metrics]: listen");
}

TEST(Config, TomlSyntaxErrorNamesFileLineAndColumn) {
  std::string m =
      ErrorOf("log_level = \"info\"\n[watcher\npoll_interval = \"5s\"\n");
  EXPECT_EQ(m,
            "cmkfs.toml:2:9: Error while parsing table header: expected ']', "
            "saw '\\n'");
  m = ErrorOf("state_dir = \"/a\"\nstate_dir = \"/b\"\n");
  EXPECT_EQ(m.rfind("cmkfs.toml:2:", 0), 0u) << m;
  EXPECT_NE(m.find("state_dir"), std::string::npos) << m;
}

TEST(Config, LoadConfigFile) {
  char tmpl[] = "/tmp/cmkfs-config-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::filesystem::path dir = tmpl;
  std::filesystem::path file = dir / "cmkfs.toml";
  Result<Config> missing = LoadConfigFile(file);
  EXPECT_EQ(missing.status().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "config file " + file.string() + " not found");
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("[watcher]\npoll_interval = \"1s\"\nbogus = 1\n", f);
  fclose(f);
  Result<Config> bad = LoadConfigFile(file);
  EXPECT_EQ(bad.status().message().rfind(file.string() + ":3: unknown key "
                                                         "'watcher.bogus'",
                                         0),
            0u)
      << bad.status().message();
  f = fopen(file.c_str(), "w");
  fputs(std::string(kFullConfig).c_str(), f);
  fclose(f);
  Result<Config> good = LoadConfigFile(file);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->watcher.poll_interval, seconds(1));
  std::filesystem::remove_all(dir);
}

// The config names on_seal and the PKCS#11 module, which run as root: a
// config file that someone else can write is refused before it is read.
TEST(Config, LoadConfigFileRefusesAnUntrustedFile) {
  char tmpl[] = "/tmp/cmkfs-config-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::filesystem::path dir = tmpl;
  std::filesystem::path file = dir / "cmkfs.toml";
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("[watcher]\non_seal = \"/tmp/evil.sh\"\n", f);
  fclose(f);
  ASSERT_EQ(chmod(file.c_str(), 0666), 0);
  Result<Config> writable = LoadConfigFile(file);
  ASSERT_FALSE(writable.ok());
  EXPECT_EQ(writable.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(
      writable.status().message().rfind(
          "config file " + file.string() + " (owner uid " +
              std::to_string(geteuid()) + ", mode 0666) must be owned by ",
          0),
      0u)
      << writable.status().message();
  ASSERT_EQ(chmod(file.c_str(), 0644), 0);
  EXPECT_TRUE(LoadConfigFile(file).ok());
  if (geteuid() == 0) {
    ASSERT_EQ(chown(file.c_str(), 65534, 65534), 0);
    Result<Config> foreign = LoadConfigFile(file);
    EXPECT_EQ(foreign.status().message().rfind(
                  "config file " + file.string() +
                      " (owner uid 65534, mode 0644) must be owned by root",
                  0),
              0u)
        << foreign.status().message();
  }
  std::filesystem::remove_all(dir);
}

TEST(Logging, UnknownLevelIsRefusedWithTheLevels) {
  Status s = InitLogging("verbose", true);
  EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "unknown log level 'verbose': expected trace, debug, info, warn, "
            "error or off");
}

TEST(Logging, StderrLinesCarryUtcTimeLevelAndLogger) {
  ASSERT_TRUE(InitLogging("info", true).ok());
  testing::internal::CaptureStderr();
  spdlog::debug("not shown");
  spdlog::info("disk {} sealed", "d1");
  spdlog::default_logger()->flush();
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(std::regex_match(
      out,
      std::regex(
          R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info \[cmkfs\] disk d1 sealed\n)")))
      << out;
  ASSERT_TRUE(InitLogging("off", true).ok());
  testing::internal::CaptureStderr();
  spdlog::error("hidden");
  spdlog::default_logger()->flush();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

// Found by fuzz_config: TOML++ quotes the offending character, here a newline.
TEST(Config, ErrorQuotingInputStaysOnOneLine) {
  auto config = ParseConfig("[watcher]\non_seal = t\n", "cmkfs.toml");
  ASSERT_FALSE(config.ok());
  const std::string m = config.status().message();
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(m.rfind("cmkfs.toml:2:", 0), 0u) << m;
}

TEST(Logging, SyslogSinkInitialises) {
  EXPECT_TRUE(InitLogging("warn", false).ok());
  EXPECT_EQ(spdlog::get_level(), spdlog::level::warn);
  EXPECT_TRUE(InitLogging("info", true).ok());
}

}  // namespace
}  // namespace cmkfs
