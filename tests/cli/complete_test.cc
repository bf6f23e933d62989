// `cmkctl __complete WORDS...` and `cmkfs __complete WORDS...`: the
// candidates the bash completion script offers, against a real state dir.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli_support.h"

namespace cmkfs::cli::testing {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

using Words = std::vector<std::string>;

class CompleteTest : public CmkctlTest {
 protected:
  // The candidates for the last of `words`; completion never fails.
  Words Complete(Words words) {
    words.insert(words.begin(), "__complete");
    RunResult r = RunCmkctl(words);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    return Lines(r.out);
  }
  // With --state-dir of this test first.
  Words InState(Words words) {
    words.insert(words.begin(), {"--state-dir", state_dir()});
    return Complete(std::move(words));
  }
  void MakeResources() {
    CtlOk({"vault", "create", "vault1", "--purge-protection"});
    CtlOk({"vault", "create", "vault2"});
    key1_ = CtlOk({"key", "create", "vault1", "key1", "--size", "2048"});
    key1_.pop_back();  // the newline
    identity_ =
        CtlOk({"des", "create", "des1", "--key-id", "cmk://vault1/keys/key1"});
    identity_.pop_back();
    CtlOk({"disk", "create", "d1", "--size", "4M"});
    CtlOk({"disk", "create", "d2", "--size", "4M"});
    CtlOk({"snapshot", "create", "s1", "--source", "d1"});
    CtlOk({"image", "create", "i1", "--source", "s1"});
  }
  std::string key1_;
  std::string identity_;
};

TEST_F(CompleteTest, CommandsAndSubcommandsComeFromTheCommandTable) {
  EXPECT_EQ(Complete({""}),
            (Words{"vault", "key", "des", "disk", "snapshot", "image", "fsck",
                   "stats", "doctor", "help", "version"}));
  EXPECT_EQ(Complete({"d"}), (Words{"des", "disk", "doctor"}));
  EXPECT_EQ(Complete({"snapshot", ""}),
            (Words{"create", "show", "list", "delete", "export"}));
  EXPECT_EQ(Complete({"key", "set"}), (Words{"set-attributes"}));
  // Global flags before the command words are skipped with their values.
  EXPECT_EQ(Complete({"-o", "json", "--log-level", "off", "im"}),
            (Words{"image"}));
  EXPECT_EQ(Complete({"help", "sn"}), (Words{"snapshot"}));
  EXPECT_EQ(Complete({"nonsense", ""}), Words{});
}

TEST_F(CompleteTest, FlagsOfTheCurrentCommandAndTheGlobalFlags) {
  EXPECT_EQ(
      Complete({"disk", "create", "d9", "--s"}),
      (Words{"--size", "--sku", "--source", "--state-dir", "--subscription"}));
  EXPECT_EQ(Complete({"key", "create", "v", "k", "--k"}), (Words{"--kty"}));
  EXPECT_EQ(Complete({"--ver"}), (Words{"--version"}));
  EXPECT_EQ(Complete({"-o", ""}), (Words{"table", "json", "tsv"}));
  EXPECT_EQ(Complete({"--output=t"}), (Words{"table", "tsv"}));
  EXPECT_EQ(Complete({"--log-level", "w"}), (Words{"warn"}));
  EXPECT_EQ(Complete({"key", "create", "v", "k", "--kty", ""}),
            (Words{"RSA", "RSA-HSM"}));
  EXPECT_EQ(Complete({"disk", "create", "d", "--sku", "S"}),
            (Words{"StandardSSD_LRS", "Standard_LRS"}));
  EXPECT_EQ(Complete({"key", "set-attributes", "v", "k", "--enabled", ""}),
            (Words{"true", "false"}));
  EXPECT_EQ(Complete({"vault", "set-policy", "v", "--key-permissions", "get",
                      "wrap"}),
            (Words{"wrapKey"}));
  // File and directory names are the shell's to complete.
  EXPECT_EQ(Complete({"--state-dir", "/t"}), (Words{":dirs"}));
  EXPECT_EQ(Complete({"--config", ""}), (Words{":files"}));
  EXPECT_EQ(Complete({"disk", "export", "d1", ""}), (Words{":files"}));
  EXPECT_EQ(Complete({"key", "import", "v", "k", "--pem", "x"}),
            (Words{":files"}));
}

TEST_F(CompleteTest, ResourceNamesOfTheStateDirectory) {
  MakeResources();
  // cmkfs-system holds the platform keys; `vault list` shows it too.
  EXPECT_EQ(InState({"vault", "show", ""}),
            (Words{"cmkfs-system", "vault1", "vault2"}));
  EXPECT_EQ(InState({"vault", "show", "v"}), (Words{"vault1", "vault2"}));
  EXPECT_EQ(InState({"key", "show", "vault1", ""}), (Words{"key1"}));
  EXPECT_EQ(InState({"key", "show", "vault2", ""}), Words{});
  EXPECT_EQ(InState({"des", "show", ""}), (Words{"des1"}));
  EXPECT_EQ(InState({"disk", "delete", ""}), (Words{"d1", "d2"}));
  EXPECT_EQ(InState({"snapshot", "show", ""}), (Words{"s1"}));
  EXPECT_EQ(InState({"image", "export", ""}), (Words{"i1"}));
  EXPECT_EQ(InState({"disk", "create", "d3", "--des", ""}), (Words{"des1"}));
  EXPECT_EQ(InState({"disk", "create", "d3", "--source", ""}),
            (Words{"snapshots/s1", "images/i1"}));
  EXPECT_EQ(InState({"image", "create", "i2", "--source", ""}),
            (Words{"d1", "d2", "s1"}));
  EXPECT_EQ(InState({"snapshot", "create", "s2", "--source", "d"}),
            (Words{"d1", "d2"}));
  EXPECT_EQ(InState({"des", "update", "des1", "--key-id", "cmk://v"}),
            (Words{"cmk://vault1/keys/key1", key1_}));
  EXPECT_EQ(InState({"key", "show", "vault1", "key1", "--version", ""}),
            (Words{key1_.substr(key1_.rfind('/') + 1)}));
  EXPECT_EQ(InState({"vault", "set-policy", "vault1", "--object-id", ""}),
            (Words{identity_}));
  // A new resource's name is not completed.
  EXPECT_EQ(InState({"disk", "create", ""}), Words{});
  // The state directory named after the command words counts too, and so
  // does $CMKFS_STATE_DIR.
  EXPECT_EQ(Complete({"disk", "show", "--state-dir", state_dir(), "d"}),
            (Words{"d1", "d2"}));
  RunResult env = RunCmkctl({"__complete", "des", "show", ""},
                            {"CMKFS_STATE_DIR=" + state_dir()});
  EXPECT_EQ(env.out, "des1\n");
}

TEST_F(CompleteTest, FailuresGiveNoCandidatesAndCreateNothing) {
  const std::string absent = (tmp() / "absent").string();
  EXPECT_EQ(Complete({"--state-dir", absent, "disk", "show", ""}), Words{});
  EXPECT_FALSE(std::filesystem::exists(absent));
  // An unknown vault, an identity the vault does not know, a bad config.
  MakeResources();
  EXPECT_EQ(InState({"key", "show", "nope", ""}), Words{});
  EXPECT_EQ(InState({"--as", "00000000-0000-0000-0000-000000000000", "key",
                     "show", "vault1", ""}),
            Words{});
  EXPECT_EQ(InState({"--config", absent, "disk", "show", ""}), Words{});
}

}  // namespace
}  // namespace cmkfs::cli::testing
