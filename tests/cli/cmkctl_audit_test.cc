// The storage host's audit of operations that read or move a customer's data
// (issue 17 item 4): `disk export`, `disk update --des`, `des update
// --key-id` and `disk create --source` are recorded in the platform vault's
// audit with the local caller (the uid the kernel reports), and the unwrap
// behind them in the customer's vault under the DES identity, also naming
// that caller.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "cli_support.h"
#include "cmkfs/cli.h"
#include "cmkfs/config.h"

namespace cmkfs::cli::testing {
namespace {

class HostAuditTest : public CmkctlTest {
 protected:
  void SetUp() override {
    CtlOk({"vault", "create", "cust", "--purge-protection"});
    CtlOk({"key", "create", "cust", "k1", "--size", "2048"});
    CtlOk({"key", "create", "cust", "k2", "--size", "2048"});
    des1_ = Des("des1", "k1");
    des2_ = Des("des2", "k2");
    CtlOk({"disk", "create", "d1", "--size", "1M", "--des", "des1"});
  }

  std::string Des(const std::string& name, const std::string& key) {
    std::string id =
        CtlOk({"des", "create", name, "--key-id", "cmk://cust/keys/" + key});
    while (!id.empty() && id.back() == '\n') id.pop_back();
    CtlOk({"vault", "set-policy", "cust", "--object-id", id,
           "--key-permissions", "get", "wrapKey", "unwrapKey"});
    return id;
  }

  // The entries of `vault`'s audit whose operation is `operation`, read
  // through the keystore (the -o json list leaves out the caller fields).
  std::vector<keystore::AuditEntry> Entries(const std::string& vault,
                                            const std::string& operation) {
    cmkfs::Config c;
    c.state_dir = state_dir();
    c.ResolveDefaults();
    auto services = OpenServices(c);
    EXPECT_TRUE(services.ok()) << services.status().ToString();
    std::vector<keystore::AuditEntry> out;
    if (!services.ok()) return out;
    auto all = services->keystore->ReadAudit(vault, {});
    EXPECT_TRUE(all.ok()) << all.status().ToString();
    if (!all.ok()) return out;
    for (const auto& e : *all) {
      if (e.operation == operation) out.push_back(e);
    }
    return out;
  }

  static std::string Dump(const std::vector<keystore::AuditEntry>& es) {
    std::string s;
    for (const auto& e : es) {
      s += e.identity + " " + e.operation + " " + e.result + " caller " +
           e.caller_object_id + "\n";
    }
    return s;
  }

  const std::string uid_ = "uid:" + std::to_string(::getuid()) + " pid:";
  std::string des1_;
  std::string des2_;
};

TEST_F(HostAuditTest, ExportIsAuditedWithTheLocalCallerAndTheDesIdentity) {
  const std::string file = (tmp() / "d1.raw").string();
  RunResult exported = Ctl({"disk", "export", "d1", file});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  auto host = Entries("cmkfs-system", "disk.export");
  ASSERT_EQ(host.size(), 1u) << Dump(host);
  EXPECT_EQ(host[0].identity, des1_);
  EXPECT_EQ(host[0].result, "ok; disk d1 to " + file);
  EXPECT_TRUE(host[0].caller_object_id.starts_with(uid_)) << Dump(host);
  // The unwrap it took, in the customer's vault: the DES identity, and the
  // same local caller.
  auto unwraps = Entries("cust", "unwrapKey");
  ASSERT_FALSE(unwraps.empty());
  const keystore::AuditEntry& last = unwraps.back();
  EXPECT_EQ(last.identity, des1_);
  EXPECT_TRUE(last.caller_object_id.starts_with(uid_)) << Dump(unwraps);
}

// Re-keying a disk needs the old key at that moment: with k1 disabled, the
// disk cannot be moved to des2 (k2) to escape the revocation, and the
// attempt is in the host's audit.
TEST_F(HostAuditTest, ARevokedKeyCannotBeEscapedByRekeying) {
  CtlOk({"key", "set-attributes", "cust", "k1", "--enabled", "false"});
  RunResult moved = Ctl({"disk", "update", "d1", "--des", "des2"});
  EXPECT_EQ(moved.exit_code, 1) << moved.out;
  auto host = Entries("cmkfs-system", "disk.update-des");
  ASSERT_EQ(host.size(), 1u) << Dump(host);
  EXPECT_TRUE(host[0].result.starts_with("error: ")) << Dump(host);
  EXPECT_NE(host[0].result.find("; disk d1 to disk encryption set des2"),
            std::string::npos);
  EXPECT_TRUE(host[0].caller_object_id.starts_with(uid_));
  Json shown = ParseJsonOrFail(Ctl({"disk", "show", "d1", "-o", "json"}));
  EXPECT_EQ(shown["des"].get<std::string>(), "des1") << shown.dump();

  CtlOk({"key", "set-attributes", "cust", "k1", "--enabled", "true"});
  CtlOk({"disk", "update", "d1", "--des", "des2"});
  host = Entries("cmkfs-system", "disk.update-des");
  ASSERT_EQ(host.size(), 2u) << Dump(host);
  EXPECT_EQ(host[1].identity, des2_);
  EXPECT_EQ(host[1].result, "ok; disk d1 to disk encryption set des2");
}

TEST_F(HostAuditTest, KeySwitchAndCloneAreAudited) {
  CtlOk({"des", "update", "des1", "--key-id", "cmk://cust/keys/k2"});
  auto rekeyed = Entries("cmkfs-system", "des.update-key");
  ASSERT_EQ(rekeyed.size(), 1u) << Dump(rekeyed);
  EXPECT_EQ(rekeyed[0].identity, des1_);
  EXPECT_TRUE(rekeyed[0].result.starts_with(
      "ok; disk encryption set des1 to key cmk://cust/keys/k2"))
      << Dump(rekeyed);
  EXPECT_TRUE(rekeyed[0].caller_object_id.starts_with(uid_));

  CtlOk({"snapshot", "create", "s1", "--source", "d1"});
  CtlOk({"disk", "create", "d2", "--source", "s1", "--des", "des1"});
  auto cloned = Entries("cmkfs-system", "disk.create-from-source");
  ASSERT_EQ(cloned.size(), 1u) << Dump(cloned);
  EXPECT_EQ(cloned[0].result, "ok; disk d2 from s1");
  EXPECT_EQ(cloned[0].identity, des1_);
}

}  // namespace
}  // namespace cmkfs::cli::testing
