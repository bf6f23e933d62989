// cmkctl/cmkfs in service mode: [keystore] service selects cmkvault, the
// credential is a file, and --as FILE swaps it (docs/vault-api.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cmkfs/cli.h"
#include "cmkfs/crypto.h"
#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

using Json = nlohmann::json;

class ServiceModeTest : public ::testing::Test {
 protected:
  std::filesystem::path WriteConfig(const std::string& keystore_table) {
    const auto path = tmp_.path() / "cmkfs.toml";
    std::ofstream(path) << "state_dir = \"" << (tmp_.path() / "state").string()
                        << "\"\n[keystore]\n"
                        << keystore_table;
    return path;
  }
  Result<cli::Services> Open(const std::vector<std::string>& flags_args,
                             const std::string& keystore_table) {
    cli::GlobalFlags flags;
    std::vector<std::string> args = flags_args;
    CMKFS_RETURN_IF_ERROR(cli::ExtractGlobalFlags(args, &flags));
    flags.config_file = WriteConfig(keystore_table);
    CMKFS_ASSIGN_OR_RETURN(Config config, cli::LoadEffectiveConfig(flags));
    return cli::OpenServices(config);
  }
  std::string ServiceTable() {
    return "service = \"" + service_.tcp_endpoint() + "\"\ncredential = \"" +
           service_.admin_bundle().string() + "\"\ncredentials_dir = \"" +
           service_.credentials_dir().string() + "\"\n";
  }

  TempDir tmp_;
  TestVaultService service_;
};

TEST_F(ServiceModeTest, KeystoreServiceSelectsTheVaultService) {
  auto services = Open({}, ServiceTable());
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  cli::CommandContext ctx;
  ctx.keystore = services->keystore.get();
  ctx.engine = services->engine.get();
  cli::CommandOutput made = cli::RunCommand({"vault", "create", "owned"}, ctx);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  // The vault is in the service; the storage host keeps only the platform's
  // own vault.
  auto in_service = service_.Connect()->GetVault("owned");
  EXPECT_TRUE(in_service.ok()) << in_service.status().ToString();
  auto listed = services->keystore->ListVaults();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> names;
  for (const auto& v : *listed) names.push_back(v.spec.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"cmkfs-system", "owned"}));
  EXPECT_EQ(service_.Connect()->GetVault("cmkfs-system").status().kind(),
            ErrorKind::kNotFound);
  // `vault show` places the key in the service, not on this host.
  ctx.config.keystore.service = service_.tcp_endpoint();
  ASSERT_EQ(
      cli::RunCommand({"key", "create", "owned", "k1", "--size", "2048"}, ctx)
          .exit_code,
      0);
  cli::CommandOutput shown =
      cli::RunCommand({"vault", "show", "owned", "-o", "json"}, ctx);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  Json v = Json::parse(shown.out);
  ASSERT_EQ(v["keys"].size(), 1u) << shown.out;
  EXPECT_EQ(v["keys"][0]["location"].get<std::string>(),
            "the vault service at " + service_.tcp_endpoint() +
                " (never on this host)");
}

TEST_F(ServiceModeTest, AsFileUsesThatCredential) {
  Identity host = service_.Issue("storage host");
  auto services = Open({"--as", service_.BundleOf(host.object_id).string()},
                       ServiceTable());
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  cli::CommandContext ctx;
  ctx.keystore = services->keystore.get();
  ctx.engine = services->engine.get();
  cli::CommandOutput made = cli::RunCommand({"vault", "create", "hosts"}, ctx);
  EXPECT_NE(made.exit_code, 0);
  EXPECT_NE(made.err.find("identity " + host.object_id +
                          " is not an admin of this vault service"),
            std::string::npos)
      << made.err;
}

TEST_F(ServiceModeTest, AsFileWithoutAServiceIsRefused) {
  auto services = Open({"--as", "/etc/cmkfs/host.pem"}, "");
  EXPECT_EQ(services.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(services.status().message().find(
                "a credential file needs a vault service ([keystore] service)"),
            std::string::npos)
      << services.status().message();
}

TEST_F(ServiceModeTest, ServiceWithoutACredentialIsRefused) {
  auto services = Open({}, "service = \"" + service_.tcp_endpoint() + "\"\n");
  EXPECT_EQ(services.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(services.status().message().find("set [keystore] credential"),
            std::string::npos)
      << services.status().message();
}

// In service mode with a host identity: `des create` has the service mint
// the DES identity (its credential lands in credentials_dir), and `doctor`
// says the customer's key lives in the service, which enforces revocation;
// a missing DES credential is a failed check.
TEST_F(ServiceModeTest, DesCreateMintsTheIdentityAndDoctorReportsTheService) {
  Identity host = service_.Issue("storage host", Role::kHost);
  auto owner = service_.Connect();
  keystore::testing::MakeVault(*owner, "customer", /*purge_protection=*/true);
  keystore::testing::ImportFixtureKey(*owner, "customer", "disk-key");
  const auto creds = tmp_.path() / "host-creds";
  cli::GlobalFlags flags;
  std::vector<std::string> args = {"--as",
                                   service_.BundleOf(host.object_id).string()};
  ASSERT_TRUE(cli::ExtractGlobalFlags(args, &flags).ok());
  flags.config_file = WriteConfig("service = \"" + service_.tcp_endpoint() +
                                  "\"\ncredential = \"/nonexistent\"\n"
                                  "credentials_dir = \"" +
                                  creds.string() + "\"\n");
  auto config = cli::LoadEffectiveConfig(flags);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto services = cli::OpenServices(*config);
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  cli::CommandContext ctx;
  ctx.config = *config;
  ctx.keystore = services->keystore.get();
  ctx.engine = services->engine.get();
  cli::CommandOutput made =
      cli::RunCommand({"des", "create", "des1", "--key-id",
                       "cmk://customer/keys/disk-key", "-o", "json"},
                      ctx);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string des_id =
      Json::parse(made.out)["identity"].get<std::string>();
  EXPECT_TRUE(std::filesystem::exists(creds / (des_id + ".pem")));

  cli::CommandOutput doctor = cli::RunCommand({"doctor", "-o", "json"}, ctx);
  ASSERT_EQ(doctor.exit_code, 0) << doctor.err;
  Json d = Json::parse(doctor.out);
  EXPECT_EQ(d["mode"].get<std::string>(), "service");
  EXPECT_EQ(d["vault_service"].get<std::string>(), service_.tcp_endpoint());
  EXPECT_EQ(d["host_identity"].get<std::string>(), host.object_id);
  ASSERT_EQ(d["disk_encryption_sets"].size(), 1u) << d.dump();
  EXPECT_EQ(d["disk_encryption_sets"][0]["identity"].get<std::string>(),
            des_id);
  EXPECT_EQ(d["disk_encryption_sets"][0]["private_key"].get<std::string>(),
            "in the vault service at " + service_.tcp_endpoint() +
                " (never on this host)");
  EXPECT_TRUE(d["revocation_enforced_by"].get<std::string>().starts_with(
      "the vault service at " + service_.tcp_endpoint()))
      << d.dump();

  std::filesystem::remove(creds / (des_id + ".pem"));
  cli::CommandOutput broken = cli::RunCommand({"doctor", "-o", "json"}, ctx);
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_NE(broken.err.find("disk encryption set des1: no credential for its "
                            "identity at " +
                            (creds / (des_id + ".pem")).string()),
            std::string::npos)
      << broken.err;
}

// cmkctl and cmkfs link gRPC (service mode), and with it libssl: their
// load-time initialisation must not allocate through OpenSSL before
// core/crypto.cc installs the wiping allocator (OpenSSL then refuses it).
// This binary links the same libraries through cmkfs_cli.
TEST(ServiceModeLinking, GrpcAndLibsslLeaveTheWipingAllocatorInstalled) {
  EXPECT_TRUE(crypto::OpenSslFreesAreWiped())
      << "a library loaded with gRPC allocated through OpenSSL before "
         "main(); OpenSSL frees are no longer wiped";
}

}  // namespace
}  // namespace cmkfs::vault::testing
