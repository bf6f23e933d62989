// RunCommand in-process, as the daemon's control socket runs it.
#include <gtest/gtest.h>

#include <fstream>

#include "cli_support.h"
#include "cmkfs/cli.h"

namespace cmkfs::cli::testing {
namespace {

class RunCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GlobalFlags flags;
    flags.state_dir = dir_.path() / "state";
    auto config = LoadEffectiveConfig(flags);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto services = OpenServices(*config);
    ASSERT_TRUE(services.ok()) << services.status().message();
    services_ = std::move(*services);
    ctx_.config = *config;
    ctx_.keystore = services_.keystore.get();
    ctx_.engine = services_.engine.get();
    ctx_.cancel = &cancel_;
  }
  CommandOutput Run(std::vector<std::string> args) {
    return RunCommand(args, ctx_);
  }
  Json RunJson(std::vector<std::string> args) {
    args.push_back("-o");
    args.push_back("json");
    CommandOutput out = Run(args);
    EXPECT_EQ(out.exit_code, 0) << out.err;
    auto parsed = ParseJson(out.out);
    EXPECT_TRUE(parsed.ok()) << parsed.status().message() << "\n" << out.out;
    return parsed.ok() ? *parsed : Json();
  }

  TempDir dir_;
  Services services_;
  CommandContext ctx_;
  std::atomic<bool> cancel_{false};
};

TEST_F(RunCommandTest, CancelledImportLeavesNoDiskAndExits130) {
  std::string file = (dir_.path() / "in.raw").string();
  {
    std::ofstream f(file, std::ios::binary);
    std::string data(1 << 20, 'x');
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  cancel_ = true;  // what SIGINT (or a client hang-up) does
  CommandOutput out = Run({"disk", "create", "d1", "--import", file});
  EXPECT_EQ(out.exit_code, 130);
  EXPECT_TRUE(out.err.starts_with("cmkctl: ")) << out.err;
  EXPECT_NE(out.err.find("cancel"), std::string::npos) << out.err;
  EXPECT_FALSE(services_.engine->Get(fs::ResourceKind::kDisk, "d1").ok());

  cancel_ = false;
  ASSERT_EQ(Run({"disk", "create", "d1", "--import", file}).exit_code, 0);
  cancel_ = true;
  std::string exported = (dir_.path() / "out.raw").string();
  out = Run({"disk", "export", "d1", exported});
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_FALSE(std::filesystem::exists(exported)) << "half-written export left";
}

TEST_F(RunCommandTest, EveryCommandsJsonParses) {
  RunJson({"vault", "create", "vault1", "--purge-protection"});
  RunJson({"vault", "list"});
  Json key = RunJson({"key", "create", "vault1", "key1", "--size", "2048"});
  EXPECT_TRUE(
      key["key_id"].get<std::string>().starts_with("cmk://vault1/keys/key1/"));
  RunJson({"key", "rotate", "vault1", "key1"});
  RunJson({"key", "list", "vault1"});
  RunJson({"key", "set-attributes", "vault1", "key1", "--not-before",
           "2020-01-01T00:00:00+02:00"});
  RunJson({"key", "rotation-policy", "vault1", "key1"});
  Json des =
      RunJson({"des", "create", "des1", "--key-id", "cmk://vault1/keys/key1"});
  RunJson({"vault", "set-policy", "vault1", "--object-id",
           des["identity"].get<std::string>(), "--key-permissions",
           "get,wrapKey,unwrapKey"});
  RunJson({"des", "list"});
  RunJson({"disk", "create", "d1", "--size", "1G", "--des", "des1"});
  RunJson({"disk", "create", "d2", "--size", "1G"});
  RunJson({"disk", "update", "d2", "--des", "des1"});
  RunJson({"snapshot", "create", "s1", "--source", "d1"});
  RunJson({"image", "create", "i1", "--source", "d1"});
  RunJson({"disk", "list"});
  RunJson({"snapshot", "list"});
  RunJson({"image", "show", "i1"});
  RunJson({"vault", "audit", "vault1"});
  RunJson({"vault", "set-policy", "vault1", "--object-id",
           "0f8fad5b-d9cb-469f-a165-70867728950e", "--key-permissions", "get"});
  RunJson({"vault", "delete-policy", "vault1", "--object-id",
           "0f8fad5b-d9cb-469f-a165-70867728950e"});
  RunJson({"stats"});
  RunJson({"fsck"});
  RunJson({"version"});
  Json d2 = RunJson({"disk", "show", "d2"});
  EXPECT_EQ(d2["encryption"].get<std::string>(), "customer");
  RunJson({"disk", "delete", "d2"});
}

TEST_F(RunCommandTest, WithoutServicesOnlyHelpAndUsageWork) {
  CommandContext empty;
  EXPECT_EQ(RunCommand({"help"}, empty).exit_code, 0);
  EXPECT_EQ(RunCommand({"nope"}, empty).exit_code, 2);
  CommandOutput out = RunCommand({"disk", "list"}, empty);
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_TRUE(out.err.starts_with("cmkctl: internal: ")) << out.err;
}

}  // namespace
}  // namespace cmkfs::cli::testing
