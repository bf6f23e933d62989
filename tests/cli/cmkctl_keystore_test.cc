// The keystore commands, run through the real cmkctl binary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "cli_support.h"
#include "cmkfs/keystore.h"

namespace cmkfs::cli::testing {
namespace {

const std::regex kKeyIdLine(R"(cmk://vault1/keys/key1/[0-9a-f]{32}\n)");

class KeystoreCommandsTest : public CmkctlTest {
 protected:
  void SetUp() override {
    CtlOk({"vault", "create", "vault1", "--purge-protection",
           "--retention-days", "7"});
  }
  std::string CreateKey() {
    std::string id =
        CtlOk({"key", "create", "vault1", "key1", "--size", "2048"});
    EXPECT_TRUE(std::regex_match(id, kKeyIdLine)) << id;
    return id.substr(0, id.size() - 1);
  }
};

TEST_F(KeystoreCommandsTest, VaultShowAndListAsJson) {
  RunResult r = Ctl({"vault", "show", "vault1", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json v = ParseJsonOrFail(r);
  EXPECT_EQ(v["name"].get<std::string>(), "vault1");
  EXPECT_TRUE(v["purge_protection"].get<bool>());
  EXPECT_EQ(v["retention_days"].get<int64_t>(), 7);
  EXPECT_EQ(v["sku"].get<std::string>(), "standard");
  EXPECT_FALSE(v["admin_identity"].get<std::string>().empty());

  Json list = ParseJsonOrFail(Ctl({"-o", "json", "vault", "list"}));
  ASSERT_TRUE(list.is_array());
  int found = 0;
  for (const auto& item : list) {
    if (item["name"].get<std::string>() == "vault1") ++found;
  }
  EXPECT_EQ(found, 1) << list.dump();

  std::string table = CtlOk({"vault", "list"});
  EXPECT_EQ(table.substr(0, 4), "NAME");
  EXPECT_NE(table.find("\nvault1 "), std::string::npos) << table;
}

TEST_F(KeystoreCommandsTest, KeyLifecycle) {
  std::string first = CreateKey();

  RunResult shown = Ctl({"key", "show", "vault1", "key1", "-o", "json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  Json key = ParseJsonOrFail(shown);
  EXPECT_EQ(key["key_id"].get<std::string>(), first);
  EXPECT_EQ(key["kty"].get<std::string>(), "RSA");
  EXPECT_EQ(key["bits"].get<int64_t>(), 2048);
  EXPECT_TRUE(key["enabled"].get<bool>());
  EXPECT_EQ(key["versions"].size(), 1u);

  std::string second = CtlOk({"key", "rotate", "vault1", "key1"});
  ASSERT_TRUE(std::regex_match(second, kKeyIdLine)) << second;
  second.pop_back();
  EXPECT_NE(second, first);

  // set-attributes without --version acts on the latest version only.
  CtlOk({"key", "set-attributes", "vault1", "key1", "--enabled", "false"});
  key = ParseJsonOrFail(Ctl({"key", "show", "vault1", "key1", "-o", "json"}));
  ASSERT_EQ(key["versions"].size(), 2u);
  EXPECT_TRUE(key["versions"][0]["enabled"].get<bool>());
  EXPECT_FALSE(key["versions"][1]["enabled"].get<bool>());
  std::string first_version = first.substr(first.rfind('/') + 1);
  Json v1 = ParseJsonOrFail(Ctl({"key", "show", "vault1", "key1", "--version",
                                 first_version, "-o", "json"}));
  EXPECT_TRUE(v1["enabled"].get<bool>());
  EXPECT_EQ(v1["key_id"].get<std::string>(), first);

  CtlOk({"key", "set-attributes", "vault1", "key1", "--version", first_version,
         "--expires", "2099-01-01T00:00:00Z"});
  v1 = ParseJsonOrFail(Ctl({"key", "show", "vault1", "key1", "--version",
                            first_version, "-o", "json"}));
  EXPECT_EQ(v1["expires"].get<std::string>(), "2099-01-01T00:00:00Z");

  // Delete, recover; purge refused under purge protection.
  CtlOk({"key", "delete", "vault1", "key1"});
  Json list = ParseJsonOrFail(Ctl({"key", "list", "vault1", "-o", "json"}));
  bool listed_deleted = list.size() == 0 || list[0]["deleted"].get<bool>();
  EXPECT_TRUE(listed_deleted) << list.dump();
  // Exactly the one error line: opening the engine queues audit entries that
  // the refused purge carries and puts back, without a log line of its own.
  RunResult purge = Ctl({"key", "purge", "vault1", "key1"});
  EXPECT_EQ(purge.exit_code, 1);
  EXPECT_EQ(purge.out, "");
  EXPECT_TRUE(std::regex_match(
      purge.err,
      std::regex("cmkctl: purge protection is on for vault vault1; the key is "
                 "purged automatically on [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+Z"
                 "\n")))
      << purge.err;
  CtlOk({"key", "recover", "vault1", "key1"});
  key = ParseJsonOrFail(Ctl({"key", "show", "vault1", "key1", "-o", "json"}));
  EXPECT_FALSE(key["deleted"].get<bool>());
}

TEST_F(KeystoreCommandsTest, PurgeWorksWithoutPurgeProtection) {
  CtlOk({"vault", "create", "vault2"});
  CtlOk({"key", "create", "vault2", "key2", "--size", "2048"});
  CtlOk({"key", "delete", "vault2", "key2"});
  CtlOk({"key", "purge", "vault2", "key2"});
  RunResult r = Ctl({"key", "recover", "vault2", "key2"});
  EXPECT_EQ(r.exit_code, 1);
}

TEST_F(KeystoreCommandsTest, AccessPoliciesDecideWhatAnIdentityMayDo) {
  CreateKey();
  const std::string who = "11111111-2222-3333-4444-555555555555";
  RunResult denied = Ctl({"--as", who, "key", "show", "vault1", "key1"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_TRUE(denied.err.starts_with("cmkctl: ")) << denied.err;

  // Several words after the flag, and comma-separated.
  std::string out = CtlOk({"vault", "set-policy", "vault1", "--object-id", who,
                           "--key-permissions", "get", "list,rotate"});
  EXPECT_NE(out.find(who), std::string::npos);
  Json v = ParseJsonOrFail(Ctl({"vault", "show", "vault1", "-o", "json"}));
  ASSERT_EQ(v["policies"].size(), 1u);
  EXPECT_EQ(v["policies"][0]["object_id"].get<std::string>(), who);
  std::vector<std::string> perms;
  for (const auto& p : v["policies"][0]["permissions"]) {
    perms.push_back(p.get<std::string>());
  }
  std::sort(perms.begin(), perms.end());
  EXPECT_EQ(perms, (std::vector<std::string>{"get", "list", "rotate"}));

  // --as before or after the command words.
  RunResult allowed = Ctl({"key", "show", "vault1", "key1", "--as", who});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  RunResult rotated = Ctl({"--as=" + who, "key", "rotate", "vault1", "key1"});
  EXPECT_EQ(rotated.exit_code, 0) << rotated.err;
  RunResult not_admin = Ctl({"--as", who, "vault", "set-policy", "vault1",
                             "--object-id", who, "--key-permissions", "purge"});
  EXPECT_EQ(not_admin.exit_code, 1);

  CtlOk({"vault", "delete-policy", "vault1", "--object-id", who});
  denied = Ctl({"key", "show", "vault1", "key1", "--as", who});
  EXPECT_EQ(denied.exit_code, 1);

  RunResult bad = Ctl({"vault", "set-policy", "vault1", "--object-id", who,
                       "--key-permissions", "get", "fly"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("fly"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("unwrapKey"), std::string::npos) << bad.err;
}

TEST_F(KeystoreCommandsTest, AuditFiltersByKeyAndTime) {
  CreateKey();
  CtlOk({"key", "create", "vault1", "other", "--size", "2048"});
  const std::string who = "99999999-2222-3333-4444-555555555555";
  Ctl({"--as", who, "key", "show", "vault1", "key1"});  // denied, audited
  Json all = ParseJsonOrFail(Ctl({"vault", "audit", "vault1", "-o", "json"}));
  ASSERT_TRUE(all.is_array());
  bool saw_denied = false;
  for (const auto& e : all) {
    EXPECT_TRUE(e.contains("time") && e.contains("identity") &&
                e.contains("operation") && e.contains("key_id") &&
                e.contains("result"));
    if (e["identity"].get<std::string>() == who &&
        e["result"].get<std::string>().starts_with("denied")) {
      saw_denied = true;
    }
  }
  EXPECT_TRUE(saw_denied) << all.dump();

  Json key1 = ParseJsonOrFail(
      Ctl({"vault", "audit", "vault1", "--key", "key1", "-o", "json"}));
  ASSERT_GT(key1.size(), 0u);
  EXPECT_LT(key1.size(), all.size());
  for (const auto& e : key1) {
    EXPECT_NE(e["key_id"].get<std::string>().find("/keys/key1"),
              std::string::npos)
        << e.dump();
  }
  Json future = ParseJsonOrFail(Ctl({"vault", "audit", "vault1", "--since",
                                     "2099-01-01T00:00:00Z", "-o", "json"}));
  EXPECT_EQ(future.size(), 0u);
  RunResult bad = Ctl({"vault", "audit", "vault1", "--since", "yesterday"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(bad.err.starts_with("cmkctl: --since: ")) << bad.err;
}

// Issue 14 item 8: `--as $'evil\n<a forged entry>'` printed a forged admin
// line in `vault audit`. An identity that is not an object id is refused
// before anything runs (and audited), and so is such an --object-id.
TEST_F(KeystoreCommandsTest, IdentityThatIsNotAnObjectIdIsRefused) {
  CreateKey();
  const std::string forged =
      "evil\n2020-01-01T00:00:00Z  admin  key.purge  cmk://vault1/keys/key1  "
      "ok";
  RunResult r = Ctl({"--as", forged, "key", "show", "vault1", "key1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "cmkctl: --as: 'evil\\n2020-01-01T00:00:00Z  admin  key.purge  "
            "cmk://vault1/keys/key1  ok' is not an object id; expected 36 "
            "characters of lowercase hex in groups of 8-4-4-4-12, e.g. "
            "0f8fad5b-d9cb-469f-a165-70867728950e\n");
  for (const std::string& bad :
       {std::string("someone-else"), std::string(""),
        std::string("11111111-2222-3333-4444-55555555555G"),
        std::string("11111111-2222-3333-4444-5555555555555"),
        std::string("11111111-2222-3333-4444-55555555555\n")}) {
    RunResult b = Ctl({"--as=" + bad, "key", "show", "vault1", "key1"});
    EXPECT_EQ(b.exit_code, 2) << bad;
    EXPECT_NE(b.err.find("is not an object id"), std::string::npos) << b.err;
  }
  RunResult policy = Ctl({"vault", "set-policy", "vault1", "--object-id",
                          forged, "--key-permissions", "get"});
  EXPECT_EQ(policy.exit_code, 2);
  EXPECT_TRUE(policy.err.starts_with("cmkctl: --object-id: 'evil\\n2020"))
      << policy.err;
  Json audit = ParseJsonOrFail(Ctl({"vault", "audit", "vault1", "-o", "json"}));
  for (const auto& e : audit) {
    EXPECT_EQ(e["identity"].get<std::string>().find("evil"), std::string::npos)
        << e.dump();
  }
}

// Text already stored (by an older version, or by the keystore API) still
// prints on one line: every table cell escapes control characters.
TEST_F(KeystoreCommandsTest, AuditTableEscapesStoredControlCharacters) {
  CreateKey();
  {
    keystore::KeyStoreOptions o;
    o.dir = std::filesystem::path(state_dir()) / "vault";
    o.master_key_file = std::filesystem::path(state_dir()) / "vault.key";
    auto ks = keystore::OpenKeyStore(o);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    EXPECT_FALSE((*ks)
                     ->GetKey("evil\n2020-01-01T00:00:00Z  admin  key.purge  "
                              "cmk://vault1/keys/key1  ok\x1b[2K",
                              "vault1", "key1")
                     .ok());
  }
  std::string table = CtlOk({"vault", "audit", "vault1"});
  EXPECT_NE(table.find("evil\\n2020-01-01T00:00:00Z"), std::string::npos)
      << table;
  EXPECT_NE(table.find("ok\\x1b[2K"), std::string::npos) << table;
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_FALSE(line.starts_with("2020-01-01")) << "forged line: " << line;
  }
}

// Issue 14 item 7: the PEM file was read without a limit into an unwiped
// stringstream. Past 64 KiB it is refused, naming the file and the limit.
TEST_F(KeystoreCommandsTest, ImportRefusesAPemFileOverTheLimit) {
  const std::string big = (tmp() / "big.pem").string();
  {
    std::ofstream out(big);
    out << "-----BEGIN PRIVATE KEY-----\n"
        << std::string(64 * 1024, 'A') << "\n-----END PRIVATE KEY-----\n";
  }
  RunResult r = Ctl({"key", "import", "vault1", "big", "--pem", big});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "cmkctl: PEM file " + big +
                       " is larger than the limit of 64 KiB (65536 bytes)\n");
  EXPECT_EQ(Ctl({"key", "show", "vault1", "big"}).exit_code, 1);
  RunResult missing = Ctl({"key", "import", "vault1", "big", "--pem",
                           (tmp() / "absent.pem").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "cmkctl: PEM file " + (tmp() / "absent.pem").string() +
                             " not found\n");
}

TEST_F(KeystoreCommandsTest, ImportAndRotationPolicy) {
  // A PEM key made by cmkctl's keystore is not exportable, so import one
  // made by openssl.
  std::string pem = (tmp() / "k.pem").string();
  ASSERT_EQ(
      std::system(("openssl genrsa -out " + pem + " 2048 2>/dev/null").c_str()),
      0);
  std::string id = CtlOk({"key", "import", "vault1", "imported", "--pem", pem});
  EXPECT_TRUE(std::regex_match(
      id, std::regex(R"(cmk://vault1/keys/imported/[0-9a-f]{32}\n)")))
      << id;
  RunResult missing =
      Ctl({"key", "import", "vault1", "x", "--pem", pem + ".absent"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find(".absent"), std::string::npos);

  CreateKey();
  Json p = ParseJsonOrFail(
      Ctl({"key", "rotation-policy", "vault1", "key1", "--rotate-after", "P90D",
           "--notify-before", "1h", "-o", "json"}));
  EXPECT_EQ(p["rotate_after"].get<std::string>(), "90d");
  EXPECT_EQ(p["notify_before"].get<std::string>(), "1h");
  EXPECT_TRUE(p["expires_in"].is_null());
  Json key =
      ParseJsonOrFail(Ctl({"key", "show", "vault1", "key1", "-o", "json"}));
  EXPECT_EQ(key["rotation_policy"]["rotate_after"].get<std::string>(), "90d");
  RunResult bad = Ctl(
      {"key", "rotation-policy", "vault1", "key1", "--rotate-after", "soon"});
  EXPECT_EQ(bad.exit_code, 2);
}

TEST_F(KeystoreCommandsTest, KeyRefusals) {
  RunResult size = Ctl({"key", "create", "vault1", "k", "--size", "1024"});
  EXPECT_EQ(size.exit_code, 2);
  EXPECT_EQ(size.err,
            "cmkctl: --size: RSA key size '1024' is not supported; accepted: "
            "2048, 3072, 4096\n");
  RunResult hsm = Ctl({"key", "create", "vault1", "k", "--kty", "RSA-HSM"});
  EXPECT_EQ(hsm.exit_code, 1);
  EXPECT_TRUE(hsm.err.starts_with("cmkctl: ")) << hsm.err;
  RunResult kty = Ctl({"key", "create", "vault1", "k", "--kty", "EC"});
  EXPECT_EQ(kty.exit_code, 2);
  RunResult no_vault = Ctl({"key", "create", "nosuchvault", "k"});
  EXPECT_EQ(no_vault.exit_code, 1);
  EXPECT_NE(no_vault.err.find("nosuchvault"), std::string::npos);
  RunResult enabled =
      Ctl({"key", "set-attributes", "vault1", "k", "--enabled", "maybe"});
  EXPECT_EQ(enabled.exit_code, 2);
  RunResult nothing = Ctl({"key", "set-attributes", "vault1", "k"});
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_NE(nothing.err.find("--enabled"), std::string::npos);
  RunResult dup = Ctl({"vault", "create", "vault1"});
  EXPECT_EQ(dup.exit_code, 1);
  RunResult retention =
      Ctl({"vault", "create", "vault3", "--retention-days", "3"});
  EXPECT_EQ(retention.exit_code, 1);
}

}  // namespace
}  // namespace cmkfs::cli::testing
