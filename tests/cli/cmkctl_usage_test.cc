// Usage errors, help and version: exit status 2 (or 0) and one line.
#include <gtest/gtest.h>

#include <algorithm>

#include "cli_support.h"

namespace cmkfs::cli::testing {
namespace {

class UsageTest : public CmkctlTest {
 protected:
  void ExpectUsage(std::vector<std::string> args, const std::string& line) {
    RunResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << line;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "cmkctl: " + line + "\n");
  }
};

TEST_F(UsageTest, UnknownCommands) {
  ExpectUsage({"frob"}, "unknown command 'frob'; run 'cmkctl help'");
  ExpectUsage({"disk", "frob"},
              "unknown command 'disk frob'; run 'cmkctl help'");
  ExpectUsage({"disk"},
              "'disk' needs a subcommand; accepted: create, update, resize, "
              "show, list, delete, export, move; run 'cmkctl help'");
  ExpectUsage({}, "no command given; run 'cmkctl help'");
}

TEST_F(UsageTest, UnknownFlagsListWhatIsAccepted) {
  ExpectUsage({"disk", "create", "d1", "--bogus", "1"},
              "unknown flag '--bogus' for 'disk create'; accepted: --size, "
              "--sku, --des, --source, --import, --guest-encrypted (and the "
              "global flags, see 'cmkctl help')");
  ExpectUsage({"key", "rotate", "v", "k", "--size=2048"},
              "unknown flag '--size' for 'key rotate'; accepted: no flags (and "
              "the global flags, see 'cmkctl help')");
  ExpectUsage({"-x", "disk", "list"}, "unknown flag '-x'; run 'cmkctl help'");
}

TEST_F(UsageTest, MissingAndExtraArguments) {
  ExpectUsage({"key", "create", "vault1"},
              "'key create' needs NAME; usage: cmkctl key create VAULT NAME "
              "[--kty RSA|RSA-HSM] [--size 2048|3072|4096]");
  ExpectUsage({"disk", "show", "a", "b"},
              "'disk show' got an unexpected argument 'b'; usage: cmkctl disk "
              "show DISK");
  ExpectUsage({"disk", "create", "d", "--size"},
              "flag '--size' for 'disk create' needs a value (SIZE)");
  ExpectUsage(
      {"vault", "set-policy", "v", "--object-id", "x", "--key-permissions"},
      "flag '--key-permissions' for 'vault set-policy' needs one or "
      "more values (PERM...)");
  ExpectUsage({"vault", "set-policy", "vault1", "--key-permissions", "get"},
              "'vault set-policy' needs --object-id ID");
}

TEST_F(UsageTest, GlobalFlagErrors) {
  ExpectUsage(
      {"disk", "list", "-o", "yaml"},
      "unknown output format 'yaml' for '-o'; accepted: table, json, tsv");
  ExpectUsage({"disk", "list", "--as"}, "flag '--as' needs a value");
  RunResult level = Ctl({"--log-level", "loud", "disk", "list"});
  EXPECT_EQ(level.exit_code, 2);
  EXPECT_TRUE(level.err.starts_with("cmkctl: --log-level: ")) << level.err;
}

TEST_F(UsageTest, HelpAndVersion) {
  for (auto args :
       std::vector<std::vector<std::string>>{{"help"}, {"--help"}, {"-h"}}) {
    RunResult r = RunCmkctl(args);
    EXPECT_EQ(r.exit_code, 0);
    for (const char* word :
         {"vault create", "vault set-policy", "vault audit", "key create",
          "key import", "key rotation-policy", "key set-attributes",
          "des create", "des update", "disk create", "disk export", "disk move",
          "snapshot create", "image create", "fsck"}) {
      EXPECT_NE(r.out.find(std::string("cmkctl ") + word), std::string::npos)
          << word;
    }
  }
  RunResult one = RunCmkctl({"disk", "create", "--help"});
  EXPECT_EQ(one.exit_code, 0);
  EXPECT_TRUE(one.out.starts_with("usage: cmkctl disk create DISK")) << one.out;
  RunResult v = RunCmkctl({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_TRUE(v.out.starts_with("cmkctl ")) << v.out;
  EXPECT_EQ(RunCmkctl({"version"}).out, v.out);
  // Help and version need no state directory.
  EXPECT_FALSE(std::filesystem::exists(state_dir()));
}

TEST_F(UsageTest, UnreadableConfigIsOneLine) {
  RunResult r =
      RunCmkctl({"--config", (tmp() / "absent.toml").string(), "disk", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("cmkctl: ")) << r.err;
  EXPECT_NE(r.err.find("absent.toml"), std::string::npos);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
}

TEST_F(UsageTest, StateDirFromEnvironment) {
  RunResult r = RunCmkctl({"vault", "create", "envvault"},
                          {"CMKFS_STATE_DIR=" + state_dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(CtlOk({"vault", "list"}).find("envvault"), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::cli::testing
