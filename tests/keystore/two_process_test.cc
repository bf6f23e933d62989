// Another process changes a key; this process sees it on its next read.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::TestKeyStore;

// Runs the helper binary (fork + immediate execv: the child never touches
// this process's LMDB environment). Returns its exit status.
int RunHelper(const TestKeyStore& ks, const std::string& action,
              const KeyId& id) {
  std::string dir = ks.dir().string(), key = ks.key_file().string();
  std::string id_text = id.ToString();
  std::string path = KEYSTORE_HELPER_PATH;
  char* argv[] = {path.data(),    dir.data(),
                  key.data(),     const_cast<char*>(action.c_str()),
                  id_text.data(), nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(argv[0], argv);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(TwoProcessTest, DisableInAnotherProcessIsSeenOnNextPoll) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  auto v1 = ks.ImportKey("vault1", "k");
  ASSERT_TRUE(ks->SetAccessPolicy("", "vault1", "des-1",
                                  Permission::kGet | Permission::kUnwrapKey)
                  .ok());
  auto before = ks->ChangeCounter();
  ASSERT_TRUE(before.ok());
  std::vector<UsabilityQuery> q = {{"des-1", v1.id}};
  ASSERT_TRUE(ks->CheckUsable(q)[0].ok());

  ASSERT_EQ(RunHelper(ks, "disable", v1.id), 0);

  auto after = ks->ChangeCounter();
  ASSERT_TRUE(after.ok());
  EXPECT_GT(*after, *before);
  auto usable = ks->CheckUsable(q);
  EXPECT_EQ(usable[0].kind(), ErrorKind::kKeyUnavailable);
  EXPECT_NE(usable[0].message().find("key version disabled"),
            std::string::npos);
  std::vector<uint8_t> dek(32, 1);
  EXPECT_EQ(ks->WrapKey("", v1.id, dek, {}).status().kind(),
            ErrorKind::kKeyUnavailable);

  ASSERT_EQ(RunHelper(ks, "enable", v1.id), 0);
  EXPECT_GT(*ks->ChangeCounter(), *after);
  EXPECT_TRUE(ks->CheckUsable(q)[0].ok());

  const uint64_t before_delete = *ks->ChangeCounter();
  ASSERT_EQ(RunHelper(ks, "delete", v1.id), 0);
  EXPECT_GT(*ks->ChangeCounter(), before_delete);
  EXPECT_NE(ks->CheckUsable(q)[0].message().find("key deleted"),
            std::string::npos);
  // The other process's audit entries are in the shared trail.
  auto audit = ks->ReadAudit("vault1", {});
  EXPECT_EQ(audit->back().operation, "key.delete");
}

TEST(TwoProcessTest, HelperWithWrongMasterKeyIsRefused) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  auto v1 = ks.ImportKey("vault1", "k");
  testing::TempDir other;
  std::string dir = ks.dir().string();
  std::string key = (other.path() / "other.key").string();
  std::string id = v1.id.ToString();
  std::string path = KEYSTORE_HELPER_PATH;
  std::string action = "disable";
  char* argv[] = {path.data(),   dir.data(), key.data(),
                  action.data(), id.data(),  nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(argv[0], argv);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_TRUE(
      ks->CheckUsable(std::vector<UsabilityQuery>{{"", v1.id}})[0].ok());
}

}  // namespace
}  // namespace cmkfs::keystore
