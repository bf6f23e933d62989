// master_key = tpm2 against a real software TPM 2.0: swtpm, started by each
// test on unix sockets of its own and stopped in teardown.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"
#include "swtpm.h"

namespace cmkfs::keystore {
namespace {

namespace stdfs = std::filesystem;
using testing::Bytes;
using testing::Pem;
using testing::TempDir;

using test_tokens::Swtpm;

class Tpm2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    tpm_ = std::make_unique<Swtpm>(tmp_.path() / "tpm");
    ASSERT_TRUE(tpm_->started()) << "swtpm did not start";
  }

  // A fresh TPM: new state, so a new owner seed.
  void ReplaceTpm() {
    tpm_.reset();
    tpm_ = std::make_unique<Swtpm>(tmp_.path() /
                                   ("tpm" + std::to_string(++tpms_)));
  }

  KeyStoreOptions Options(const stdfs::path& state, std::string pcrs = "") {
    KeyStoreOptions o;
    o.dir = state / "vault";
    o.master_key = MasterKeySource::kTpm2;
    o.master_key_file = state / "vault.key";
    o.tpm2_sealed_file = state / "vault.tpm2";
    o.tpm2_tcti = tpm_->tcti();
    o.tpm2_pcrs = std::move(pcrs);
    return o;
  }

  // A vault with one key; returns the key version and a wrapped DEK.
  void MakeVaultWithKey(const KeyStoreOptions& o) {
    auto ks = OpenKeyStore(o);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    VaultSpec spec;
    spec.name = "vlt";
    ASSERT_TRUE((*ks)->CreateVault(spec).ok());
    auto v = (*ks)->ImportKey("", "vlt", "k", Pem("rsa2048"), KeyType::kRsa);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    id_ = v->id;
    auto blob = (*ks)->WrapKey("", id_, dek_, Bytes("disk"));
    ASSERT_TRUE(blob.ok());
    blob_ = *blob;
  }

  void ExpectUnwraps(const KeyStoreOptions& o) {
    auto ks = OpenKeyStore(o);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    auto out = (*ks)->UnwrapKey("", id_, blob_, Bytes("disk"));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(crypto::ConstantTimeEquals(out->span(), dek_));
  }

  stdfs::path state() const { return tmp_.path() / "state"; }

  TempDir tmp_;
  std::unique_ptr<Swtpm> tpm_;
  int tpms_ = 0;
  KeyId id_;
  std::vector<uint8_t> blob_;
  const std::vector<uint8_t> dek_ = std::vector<uint8_t>(64, 0x3c);
};

TEST_F(Tpm2Test, CreatesASealedKeyAndUnsealsItAfterRestart) {
  KeyStoreOptions o = Options(state());
  MakeVaultWithKey(o);
  EXPECT_TRUE(stdfs::exists(o.tpm2_sealed_file));
  EXPECT_FALSE(stdfs::exists(o.master_key_file)) << "no key file is made";
  // The TPM restarts (same state): the vault opens.
  tpm_.reset();
  tpm_ = std::make_unique<Swtpm>(tmp_.path() / "tpm");
  ExpectUnwraps(o);
}

TEST_F(Tpm2Test, AnotherTpmRefusesWithAClearError) {
  KeyStoreOptions o = Options(state());
  MakeVaultWithKey(o);
  ReplaceTpm();
  o.tpm2_tcti = tpm_->tcti();
  auto ks = OpenKeyStore(o);
  ASSERT_EQ(ks.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_NE(ks.status().message().find(
                "' did not seal this vault master key (another TPM, or its "
                "owner hierarchy was cleared)"),
            std::string::npos)
      << ks.status().message();
}

TEST_F(Tpm2Test, PcrChangeRefusesToUnseal) {
  KeyStoreOptions o = Options(state(), "7,11");
  MakeVaultWithKey(o);
  ExpectUnwraps(o);  // same PCR values: opens
  ASSERT_EQ(std::system(("tpm2_pcrextend -T " + tpm_->tcti() + " 11:sha256=" +
                         std::string(64, '1') + " >/dev/null 2>&1")
                            .c_str()),
            0);
  auto ks = OpenKeyStore(o);
  ASSERT_EQ(ks.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_NE(ks.status().message().find(
                "refuses to unseal the vault master key: PCRs 7,11 differ"),
            std::string::npos)
      << ks.status().message();
}

// Attack: the whole state directory (vault and sealed blob) copied to
// another machine opens nothing there: not with that machine's TPM, not
// without a TPM, and no file of the copy is the master key.
TEST_F(Tpm2Test, CopyOfTheStateDirectoryWithoutTheTpmUnwrapsNothing) {
  KeyStoreOptions o = Options(state());
  MakeVaultWithKey(o);
  const stdfs::path copy = tmp_.path() / "stolen";
  stdfs::copy(state(), copy, stdfs::copy_options::recursive);
  ReplaceTpm();
  KeyStoreOptions stolen = Options(copy);
  EXPECT_EQ(OpenKeyStore(stolen).status().kind(),
            ErrorKind::kFailedPrecondition);
  stolen.tpm2_tcti = "swtpm:path=" + (tmp_.path() / "no-tpm.sock").string();
  EXPECT_EQ(OpenKeyStore(stolen).status().kind(),
            ErrorKind::kFailedPrecondition);
  // Every 32-byte window of the sealed blob and of every other small file
  // of the copy, tried as the master key file: none opens the vault. (The
  // LMDB file holds only AES-GCM sealed material: AtRestTest.)
  KeyStoreOptions guess = stolen;
  guess.master_key = MasterKeySource::kFile;
  guess.master_key_file = tmp_.path() / "guess.key";
  size_t tried = 0;
  for (const auto& e : stdfs::recursive_directory_iterator(copy)) {
    if (!e.is_regular_file()) continue;
    if (e.file_size() > 4096) continue;
    std::vector<uint8_t> bytes = testing::ReadFileBytes(e.path());
    for (size_t off = 0; off + 32 <= bytes.size(); ++off) {
      {
        std::ofstream f(guess.master_key_file, std::ios::trunc);
        f.write(reinterpret_cast<const char*>(bytes.data() + off), 32);
      }
      stdfs::permissions(guess.master_key_file, stdfs::perms::owner_read);
      auto ks = OpenKeyStore(guess);
      EXPECT_FALSE(ks.ok()) << e.path() << " offset " << off;
      stdfs::remove(guess.master_key_file);
      ++tried;
    }
  }
  EXPECT_GT(tried, 0u);
  // The copy, given the original TPM, opens: the refusals above are about
  // the TPM, not a broken copy.
  tpm_.reset();
  tpm_ = std::make_unique<Swtpm>(tmp_.path() / "tpm");
  KeyStoreOptions copy_with_tpm = Options(copy);
  ExpectUnwraps(copy_with_tpm);
}

TEST_F(Tpm2Test, MissingTpmDeviceIsNamed) {
  KeyStoreOptions o = Options(state());
  o.tpm2_tcti = "device:/nonexistent/tpmrm0";
  auto ks = OpenKeyStore(o);
  ASSERT_EQ(ks.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(ks.status().message().rfind(
                "TPM2-sealed vault master key " + o.tpm2_sealed_file.string() +
                    ": TPM 2.0 unreachable through TCTI "
                    "'device:/nonexistent/tpmrm0': ",
                0),
            0u)
      << ks.status().message();
  EXPECT_NE(ks.status().message().find("set [keystore] tpm2_tcti"),
            std::string::npos);
}

TEST_F(Tpm2Test, BadPcrListIsRefused) {
  auto ks = OpenKeyStore(Options(state(), "7,x"));
  ASSERT_EQ(ks.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(ks.status().message().find(
                "invalid TPM2 PCR list '7,x': use PCR numbers 0 to 23"),
            std::string::npos)
      << ks.status().message();
}

TEST_F(Tpm2Test, ExistingFileVaultNeedsTheMigration) {
  KeyStoreOptions file = Options(state());
  file.master_key = MasterKeySource::kFile;
  MakeVaultWithKey(file);
  auto ks = OpenKeyStore(Options(state()));
  ASSERT_EQ(ks.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_NE(
      ks.status().message().find("cmkctl vault migrate-master-key --to tpm2"),
      std::string::npos)
      << ks.status().message();
}

TEST_F(Tpm2Test, MigrationMovesTheFileKeyIntoTheTpm) {
  KeyStoreOptions file = Options(state());
  file.master_key = MasterKeySource::kFile;
  MakeVaultWithKey(file);
  std::vector<std::string> steps;
  Status s = MigrateMasterKeyToTpm2(
      Options(state()), [&](std::string_view st) { steps.emplace_back(st); });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(steps, (std::vector<std::string>{"sealed-file-written",
                                             "key-file-removed"}));
  EXPECT_FALSE(stdfs::exists(file.master_key_file));
  ExpectUnwraps(Options(state()));
  // Again: nothing left to do, still fine.
  EXPECT_TRUE(MigrateMasterKeyToTpm2(Options(state())).ok());
}

// A crash (the process dies) right after a step: the vault still opens, and
// running the migration again finishes it.
void CrashAt(const KeyStoreOptions& o, const std::string& at) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    (void)MigrateMasterKeyToTpm2(o, [&](std::string_view step) {
      if (step == at) ::_exit(42);
    });
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 42) << "the migration did not reach " << at;
}

TEST_F(Tpm2Test, CrashAfterWritingTheSealedFileLeavesAUsableVault) {
  KeyStoreOptions file = Options(state());
  file.master_key = MasterKeySource::kFile;
  MakeVaultWithKey(file);
  CrashAt(Options(state()), "sealed-file-written");
  EXPECT_TRUE(stdfs::exists(file.master_key_file));
  EXPECT_TRUE(stdfs::exists(file.tpm2_sealed_file));
  ExpectUnwraps(file);              // the old configuration works
  ExpectUnwraps(Options(state()));  // and the new one
  ASSERT_TRUE(MigrateMasterKeyToTpm2(Options(state())).ok());
  EXPECT_FALSE(stdfs::exists(file.master_key_file));
  ExpectUnwraps(Options(state()));
}

TEST_F(Tpm2Test, CrashAfterRemovingTheKeyFileLeavesAUsableVault) {
  KeyStoreOptions file = Options(state());
  file.master_key = MasterKeySource::kFile;
  MakeVaultWithKey(file);
  CrashAt(Options(state()), "key-file-removed");
  EXPECT_FALSE(stdfs::exists(file.master_key_file));
  ExpectUnwraps(Options(state()));
}

TEST_F(Tpm2Test, MigrationWithoutAKeyFileSaysSo) {
  Status s = MigrateMasterKeyToTpm2(Options(state()));
  EXPECT_EQ(s.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("nothing to migrate: neither the master key "
                              "file ",
                              0),
            0u)
      << s.message();
}

}  // namespace
}  // namespace cmkfs::keystore
