#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli_support.h"
#include "cmkfs/cli.h"

namespace cmkfs::cli {
namespace {

using testing::TempDir;

const std::string kId = "0f8fad5b-d9cb-469f-a165-70867728950e";

TEST(GlobalFlagsTest, ExtractedBeforeAndAfterCommandWords) {
  std::vector<std::string> args = {
      "--state-dir", "/tmp/s", "--as=" + kId, "key",
      "create",      "v1",     "k1",          "-o",
      "json",        "--size", "2048",        "--subscription=sub1",
      "--region",    "eu",     "--log-level", "debug",
      "--config",    "/c.toml"};
  GlobalFlags flags;
  ASSERT_TRUE(ExtractGlobalFlags(args, &flags).ok());
  EXPECT_EQ(args, (std::vector<std::string>{"key", "create", "v1", "k1",
                                            "--size", "2048"}));
  EXPECT_EQ(flags.state_dir, std::filesystem::path("/tmp/s"));
  EXPECT_EQ(flags.as_identity, kId);
  EXPECT_EQ(flags.output, "json");
  EXPECT_EQ(flags.subscription, "sub1");
  EXPECT_EQ(flags.region, "eu");
  EXPECT_EQ(flags.log_level, "debug");
  EXPECT_EQ(flags.config_file, std::filesystem::path("/c.toml"));
  EXPECT_FALSE(flags.resource_group.has_value());
}

TEST(GlobalFlagsTest, OutputEqualsFormAndDoubleDash) {
  std::vector<std::string> args = {"disk", "list", "--output=json",
                                   "--",   "--as", "x"};
  GlobalFlags flags;
  ASSERT_TRUE(ExtractGlobalFlags(args, &flags).ok());
  EXPECT_EQ(flags.output, "json");
  EXPECT_EQ(flags.as_identity, "");
  EXPECT_EQ(args,
            (std::vector<std::string>{"disk", "list", "--", "--as", "x"}));
}

// The identity goes into audit entries: nothing but an object id passes,
// here in cmkctl and in the daemon, which parses the same flags.
TEST(GlobalFlagsTest, RefusesAnIdentityThatIsNotAnObjectId) {
  for (const std::string& bad :
       {std::string("abc"), std::string("evil\nforged line"),
        std::string("0F8FAD5B-D9CB-469F-A165-70867728950E"),
        std::string("0f8fad5b-d9cb-469f-a165-70867728950e "),
        std::string("0f8fad5bd9cb-469f-a165-70867728950e-")}) {
    std::vector<std::string> args = {"disk", "list", "--as", bad};
    GlobalFlags flags;
    Status s = ExtractGlobalFlags(args, &flags);
    EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("' is not an object id; expected 36 "),
              std::string::npos)
        << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
    EXPECT_EQ(flags.as_identity, "");
  }
}

TEST(GlobalFlagsTest, RefusesMissingValueAndUnknownFormat) {
  GlobalFlags flags;
  std::vector<std::string> args = {"disk", "list", "--state-dir"};
  Status s = ExtractGlobalFlags(args, &flags);
  EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(s.message(), "flag '--state-dir' needs a value");
  args = {"-o", "yaml", "disk", "list"};
  s = ExtractGlobalFlags(args, &flags);
  EXPECT_EQ(s.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(
      s.message(),
      "unknown output format 'yaml' for '-o'; accepted: table, json, tsv");
}

TEST(GlobalFlagsTest, ResourceGroupIsKeptForDiskMove) {
  std::vector<std::string> args = {
      "disk", "move", "d1", "--resource-group", "rg2", "--subscription", "s2"};
  GlobalFlags flags;
  ASSERT_TRUE(ExtractGlobalFlags(args, &flags).ok());
  EXPECT_EQ(flags.resource_group, "rg2");
  EXPECT_EQ(flags.subscription, "s2");
  EXPECT_EQ(args, (std::vector<std::string>{"disk", "move", "d1"}));
}

class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
    ::unsetenv(name);
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(EffectiveConfigTest, FlagBeatsEnvironmentBeatsConfigFile) {
  EnvGuard g1("CMKFS_CONFIG"), g2("CMKFS_STATE_DIR");
  TempDir dir;
  auto file = dir.path() / "cmkfs.toml";
  std::ofstream(file) << "state_dir = \""
                      << (dir.path() / "from-config").string()
                      << "\"\n[defaults]\nregion = \"westeurope\"\n";
  GlobalFlags flags;
  flags.config_file = file;
  auto config = LoadEffectiveConfig(flags);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->state_dir, dir.path() / "from-config");
  EXPECT_EQ(config->keystore.dir, dir.path() / "from-config" / "vault");
  EXPECT_EQ(config->defaults.region, "westeurope");

  ::setenv("CMKFS_STATE_DIR", (dir.path() / "from-env").c_str(), 1);
  config = LoadEffectiveConfig(flags);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->state_dir, dir.path() / "from-env");
  EXPECT_EQ(config->keystore.master_key_file,
            dir.path() / "from-env" / "vault.key");

  flags.state_dir = dir.path() / "from-flag";
  config = LoadEffectiveConfig(flags);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->state_dir, dir.path() / "from-flag");
  EXPECT_EQ(config->keystore.dir, dir.path() / "from-flag" / "vault");

  // $CMKFS_CONFIG is used when --config is absent.
  GlobalFlags no_file;
  ::setenv("CMKFS_CONFIG", file.c_str(), 1);
  config = LoadEffectiveConfig(no_file);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->defaults.region, "westeurope");
}

TEST(EffectiveConfigTest, MissingOrBadConfigFileIsAnError) {
  EnvGuard g1("CMKFS_CONFIG"), g2("CMKFS_STATE_DIR");
  TempDir dir;
  GlobalFlags flags;
  flags.config_file = dir.path() / "absent.toml";
  auto config = LoadEffectiveConfig(flags);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().kind(), ErrorKind::kNotFound);
  EXPECT_NE(config.status().message().find("absent.toml"), std::string::npos);

  std::ofstream(dir.path() / "bad.toml") << "[watcher]\npoll_interval = 42\n";
  flags.config_file = dir.path() / "bad.toml";
  config = LoadEffectiveConfig(flags);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("poll_interval"), std::string::npos);
}

TEST(EffectiveConfigTest, ScopeFlagsOverrideConfigDefaults) {
  EnvGuard g1("CMKFS_CONFIG"), g2("CMKFS_STATE_DIR");
  GlobalFlags flags;
  flags.state_dir = "/tmp/x";
  flags.subscription = "s1";
  flags.region = "r1";
  auto config = LoadEffectiveConfig(flags);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->defaults.subscription, "s1");
  EXPECT_EQ(config->defaults.region, "r1");
  EXPECT_EQ(config->defaults.resource_group, "default");
}

// The daemon resolves file names in its own working directory: cmkctl makes
// exactly the file arguments absolute, found by their place in the command
// table (issue 14, item 5: text matching rewrote the wrong word).
TEST(AbsoluteFileArgsTest, RewritesTheFilePositionalNotAnEqualFlagValue) {
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(AbsoluteFileArgs(
                {"--subscription", "o.raw", "disk", "export", "d1", "o.raw"}),
            (std::vector<std::string>{"--subscription", "o.raw", "disk",
                                      "export", "d1", cwd + "/o.raw"}));
  EXPECT_EQ(AbsoluteFileArgs({"disk", "export", "d1", "d1"}),
            (std::vector<std::string>{"disk", "export", "d1", cwd + "/d1"}));
  EXPECT_EQ(AbsoluteFileArgs(
                {"snapshot", "export", "s1", "-o", "json", "/abs/s1.raw"}),
            (std::vector<std::string>{"snapshot", "export", "s1", "-o", "json",
                                      "/abs/s1.raw"}));
}

TEST(AbsoluteFileArgsTest, RewritesFileFlagValuesOnly) {
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(AbsoluteFileArgs({"disk", "create", "img.raw", "--import=img.raw",
                              "--size", "1G"}),
            (std::vector<std::string>{"disk", "create", "img.raw",
                                      "--import=" + cwd + "/img.raw", "--size",
                                      "1G"}));
  EXPECT_EQ(
      AbsoluteFileArgs({"key", "import", "k.pem", "k.pem", "--pem", "k.pem"}),
      (std::vector<std::string>{"key", "import", "k.pem", "k.pem", "--pem",
                                cwd + "/k.pem"}));
  // A line that does not parse, or has no file, is left as it is.
  const std::vector<std::string> odd = {"disk", "export", "d1"};
  EXPECT_EQ(AbsoluteFileArgs(odd), odd);
  const std::vector<std::string> list = {"disk", "list", "--as", "x.raw"};
  EXPECT_EQ(AbsoluteFileArgs(list), list);
}

}  // namespace
}  // namespace cmkfs::cli
