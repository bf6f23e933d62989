// Key custody through the real cmkctl: `vault show` says where the master key
// and each key's private half live, `vault migrate-master-key --to tpm2`
// moves a file key into a (software) TPM, and the daemon's start-up warning
// about a master key file next to the data.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cli_support.h"
#include "cmkfs/cli.h"
#include "swtpm.h"
#include "test_tokens.h"

namespace cmkfs::cli::testing {
namespace {

namespace stdfs = std::filesystem;

class CustodyTest : public CmkctlTest {
 protected:
  // A trusted config file (0600 in our private temp dir) with `body`.
  std::string Config(const std::string& body) {
    const stdfs::path p = tmp() / "cmkfs.toml";
    std::ofstream(p, std::ios::trunc) << body;
    stdfs::permissions(p, stdfs::perms::owner_read | stdfs::perms::owner_write);
    return p.string();
  }
  RunResult CtlWith(const std::string& config, std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config});
    return Ctl(std::move(args));
  }
  Json ShowVault(const std::string& config) {
    RunResult r = CtlWith(config, {"vault", "show", "vlt1", "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ParseJsonOrFail(r);
  }
};

TEST_F(CustodyTest, FileKeyIsShownAsAFile) {
  CtlOk({"vault", "create", "vlt1"});
  CtlOk({"key", "create", "vlt1", "k1", "--size", "2048"});
  const std::string cfg = Config("");
  Json v = ShowVault(cfg);
  EXPECT_EQ(v["master_key"].get<std::string>(), "file");
  EXPECT_EQ(v["master_key_location"].get<std::string>(),
            "in the file " + state_dir() + "/vault.key");
  ASSERT_EQ(v["keys"].size(), 1u) << v.dump();
  EXPECT_EQ(v["keys"][0]["name"].get<std::string>(), "k1");
  EXPECT_EQ(v["keys"][0]["private_key"].get<std::string>(),
            "software, sealed by file");
  // The table form has the same rows and a keys sub-table.
  RunResult table = CtlWith(cfg, {"vault", "show", "vlt1"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("master_key "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("\nkeys:\nNAME"), std::string::npos) << table.out;
}

TEST_F(CustodyTest, MigrationToTheTpmAndTheTpmPosture) {
  test_tokens::Swtpm tpm(tmp() / "tpm");
  ASSERT_TRUE(tpm.started());
  CtlOk({"vault", "create", "vlt1"});
  CtlOk({"key", "create", "vlt1", "k1", "--size", "2048"});
  const std::string tpm_keys =
      "tpm2_tcti = \"" + tpm.tcti() + "\"\ntpm2_pcrs = \"7\"\n";
  const std::string before = Config("[keystore]\n" + tpm_keys);
  RunResult m = CtlWith(
      before, {"vault", "migrate-master-key", "--to", "tpm2", "-o", "json"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  Json j = ParseJsonOrFail(m);
  EXPECT_EQ(j["removed_key_file"].get<std::string>(),
            state_dir() + "/vault.key");
  EXPECT_FALSE(stdfs::exists(state_dir() + "/vault.key"));
  EXPECT_TRUE(stdfs::exists(state_dir() + "/vault.tpm2"));

  const std::string after =
      Config("[keystore]\nmaster_key = \"tpm2\"\n" + tpm_keys);
  Json v = ShowVault(after);
  EXPECT_EQ(v["master_key"].get<std::string>(), "tpm2");
  EXPECT_EQ(v["master_key_location"].get<std::string>(),
            "sealed to the TPM 2.0 at " + tpm.tcti() + " (blob " + state_dir() +
                "/vault.tpm2, PCRs 7)");
  ASSERT_EQ(v["keys"].size(), 1u) << v.dump();
  EXPECT_EQ(v["keys"][0]["private_key"].get<std::string>(),
            "software, sealed by tpm2");
  // Keys still work: a second key and a rotation under the TPM key.
  CtlOk({"--config", after, "key", "rotate", "vlt1", "k1"});
  // Without --to tpm2: a usage error naming the destination.
  RunResult bad = CtlWith(after, {"vault", "migrate-master-key"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("needs --to tpm2"), std::string::npos) << bad.err;
}

TEST_F(CustodyTest, HsmKeysNameTheirTokenAndModule) {
  auto token = test_tokens::Get(test_tokens::Kind::kSoftHsm,
                                test_tokens::Transport::kDirect);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  const std::string cfg =
      Config("[pkcs11]\nmodule = \"" + token->config.module.string() +
             "\"\ntoken_label = \"" + token->config.token_label +
             "\"\npin_file = \"" + token->config.pin_file.string() + "\"\n");
  ASSERT_EQ(
      CtlWith(cfg, {"vault", "create", "vlt1", "--sku", "premium"}).exit_code,
      0);
  RunResult k = CtlWith(cfg, {"key", "create", "vlt1", "hk", "--kty", "RSA-HSM",
                              "--size", "2048"});
  ASSERT_EQ(k.exit_code, 0) << k.err;
  Json v = ShowVault(cfg);
  ASSERT_EQ(v["keys"].size(), 1u) << v.dump();
  EXPECT_EQ(v["keys"][0]["private_key"].get<std::string>(), "pkcs11");
  EXPECT_EQ(v["keys"][0]["location"].get<std::string>(),
            "PKCS#11 token 'cmkfs' via " + token->config.module.string());
}

// The daemon's start-up warning (cli::MasterKeyPostureWarning, logged once
// by the daemon at start).
// `cmkctl doctor` in embedded mode says plainly that revocation rests with
// this host: the master key file is next to the data, and so is every
// customer key's private half.
TEST_F(CustodyTest, DoctorReportsTheEmbeddedPosture) {
  CtlOk({"vault", "create", "vlt1", "--purge-protection"});
  CtlOk({"key", "create", "vlt1", "k1", "--size", "2048"});
  CtlOk({"des", "create", "des1", "--key-id", "cmk://vlt1/keys/k1"});
  const std::string cfg = Config("");
  RunResult r = CtlWith(cfg, {"doctor", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json d = ParseJsonOrFail(r);
  EXPECT_EQ(d["mode"].get<std::string>(), "embedded") << d.dump();
  EXPECT_TRUE(d["vault_service"].is_null());
  EXPECT_EQ(d["state_dir_permissions"].get<std::string>(), "ok");
  EXPECT_EQ(d["master_key"].get<std::string>(), "file");
  EXPECT_TRUE(d["master_key_next_to_data"].get<bool>());
  ASSERT_EQ(d["warnings"].size(), 1u) << d.dump();
  ASSERT_EQ(d["disk_encryption_sets"].size(), 1u) << d.dump();
  EXPECT_EQ(d["disk_encryption_sets"][0]["name"].get<std::string>(), "des1");
  EXPECT_TRUE(d["disk_encryption_sets"][0]["private_key"]
                  .get<std::string>()
                  .starts_with("on this host: sealed in the vault LMDB"))
      << d.dump();
  EXPECT_TRUE(d["revocation_enforced_by"].get<std::string>().starts_with(
      "this host only"))
      << d.dump();
  EXPECT_TRUE(d["problems"].empty());
  // No key bytes: the master key file's content is nowhere in the report.
  std::ifstream key_file(state_dir() + "/vault.key", std::ios::binary);
  std::string key((std::istreambuf_iterator<char>(key_file)), {});
  ASSERT_FALSE(key.empty());
  EXPECT_EQ(r.out.find(key), std::string::npos);
  // The table form.
  RunResult table = CtlWith(cfg, {"doctor"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("revocation_enforced_by"), std::string::npos)
      << table.out;
}

TEST_F(CustodyTest, WarningForAKeyFileNextToTheData) {
  cmkfs::Config c;
  c.state_dir = state_dir();
  c.ResolveDefaults();
  CtlOk({"vault", "create", "vlt1"});  // makes vault.key in the state dir
  EXPECT_EQ(MasterKeyPostureWarning(c),
            "the vault master key file " + state_dir() +
                "/vault.key is on the same filesystem as the data in " +
                state_dir() +
                ": a copy of that filesystem opens every software key; seal "
                "the key to this host's TPM with: cmkctl vault "
                "migrate-master-key --to tpm2 (then set [keystore] master_key "
                "= \"tpm2\")");
  cmkfs::Config tpm = c;
  tpm.keystore.master_key = "tpm2";
  EXPECT_NE(MasterKeyPostureWarning(tpm).find(
                "still exists next to the data; finish the migration with: "
                "cmkctl vault migrate-master-key --to tpm2"),
            std::string::npos);
  stdfs::remove(state_dir() + "/vault.key");
  EXPECT_EQ(MasterKeyPostureWarning(tpm), "");
  cmkfs::Config pass = c;
  pass.keystore.passphrase_file = tmp() / "vault.pass";
  EXPECT_EQ(MasterKeyPostureWarning(pass), "");
  // A key file on another filesystem than the data: no warning.
  struct stat shm {
  }, data{};
  if (::stat("/dev/shm", &shm) == 0 &&
      ::stat(state_dir().c_str(), &data) == 0 && shm.st_dev != data.st_dev) {
    cmkfs::Config elsewhere = c;
    elsewhere.keystore.master_key_file =
        "/dev/shm/cmkfs-custody-test-" + std::to_string(::getpid()) + ".key";
    std::ofstream(elsewhere.keystore.master_key_file) << std::string(32, 'k');
    EXPECT_EQ(MasterKeyPostureWarning(elsewhere), "");
    stdfs::remove(elsewhere.keystore.master_key_file);
  }
}

}  // namespace
}  // namespace cmkfs::cli::testing
