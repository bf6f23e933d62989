// cmkfs command-line parsing (no mount needed).
#include <gtest/gtest.h>

#include "daemon.h"

namespace cmkfs::daemon {
namespace {

TEST(DaemonArgs, MountpointFlagsAndFuseOptionsInAnyOrder) {
  auto a = ParseDaemonArgs({"-o", "allow_other,ro", "/mnt/x", "--state-dir",
                            "/s", "-f", "-onoatime", "--log-level=debug"});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->action, DaemonArgs::Action::kRun);
  EXPECT_EQ(a->mountpoint, "/mnt/x");
  EXPECT_TRUE(a->foreground);
  EXPECT_EQ(a->fuse_options,
            (std::vector<std::string>{"allow_other", "ro", "noatime"}));
  ASSERT_TRUE(a->flags.state_dir.has_value());
  EXPECT_EQ(*a->flags.state_dir, "/s");
  EXPECT_EQ(a->flags.log_level.value_or(""), "debug");
}

TEST(DaemonArgs, VersionAndHelpWinOverEverythingElse) {
  EXPECT_EQ(ParseDaemonArgs({"/mnt", "--version"})->action,
            DaemonArgs::Action::kVersion);
  EXPECT_EQ(ParseDaemonArgs({"--help", "--bogus"})->action,
            DaemonArgs::Action::kHelp);
}

TEST(DaemonArgs, DebugImpliesForeground) {
  auto a = ParseDaemonArgs({"-d", "/mnt"});
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->fuse_debug);
  EXPECT_TRUE(a->foreground);
}

TEST(DaemonArgs, MountpointMayComeFromTheConfig) {
  auto a = ParseDaemonArgs({"--config", "/etc/cmkfs/cmkfs.toml"});
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->mountpoint.empty());
}

TEST(DaemonArgs, ErrorsSayWhatIsAccepted) {
  auto unknown = ParseDaemonArgs({"/mnt", "--frobnicate"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("--frobnicate"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("--state-dir"), std::string::npos);
  auto two = ParseDaemonArgs({"/a", "/b"});
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("/b"), std::string::npos);
  auto dangling = ParseDaemonArgs({"/mnt", "-o"});
  ASSERT_FALSE(dangling.ok());
  EXPECT_NE(dangling.status().message().find("-o"), std::string::npos);
  EXPECT_FALSE(ParseDaemonArgs({"/mnt", "--state-dir"}).ok());
}

TEST(DaemonArgs, DoubleDashEndsFlags) {
  auto a = ParseDaemonArgs({"--", "-weird-dir"});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->mountpoint, "-weird-dir");
}

// `cmkfs __complete WORDS...`, what the bash completion script asks.
TEST(DaemonArgs, CompletionOffersTheFlagsItParsesAndAMountpoint) {
  EXPECT_EQ(CompleteDaemonWords({"--f"}), "--foreground\n");
  EXPECT_EQ(CompleteDaemonWords({"--"}),
            "--config\n--state-dir\n--log-level\n--foreground\n--debug\n"
            "--version\n--help\n");
  EXPECT_EQ(CompleteDaemonWords({"--log-level", "e"}), "error\n");
  EXPECT_EQ(CompleteDaemonWords({"--config", ""}), ":files\n");
  EXPECT_EQ(CompleteDaemonWords({"--state-dir", "/s", ""}), ":dirs\n");
  EXPECT_EQ(CompleteDaemonWords({"-o", ""}), "");
  EXPECT_EQ(CompleteDaemonWords({"-o", "ro", "--d"}), "--debug\n");
  // Every flag it offers parses.
  for (const char* flag : {"--foreground", "--debug", "-f", "-d"}) {
    EXPECT_TRUE(ParseDaemonArgs({flag, "/mnt"}).ok()) << flag;
  }
}

}  // namespace
}  // namespace cmkfs::daemon
