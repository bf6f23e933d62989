// Files cmkfs trusts with its privileges (config, PKCS#11 module, PIN and
// passphrase files): the attacks of issue 14 item 9, each refused with one
// line naming the file, what was found and what is accepted.
#include "cmkfs/file_trust.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace cmkfs {
namespace {

namespace stdfs = std::filesystem;

constexpr uid_t kNobody = 65534;

class FileTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/cmkfs-file-trust-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
  }
  stdfs::path Write(const std::string& name, const std::string& text,
                    mode_t mode) {
    stdfs::path p = dir_ / name;
    std::ofstream(p, std::ios::trunc) << text;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }
  static std::string Owners() {
    return ::geteuid() == 0 ? "root"
                            : "root or uid " + std::to_string(::geteuid());
  }
  stdfs::path dir_;
};

TEST_F(FileTrustTest, AcceptsOwnFilesAndReturnsTheResolvedPath) {
  stdfs::path conf = Write("cmkfs.toml", "", 0644);
  stdfs::path pin = Write("hsm.pin", "1234\n", 0600);
  stdfs::create_symlink(conf, dir_ / "link.toml");
  auto shared =
      CheckTrustedFile(dir_ / "link.toml", "config file", FileSecrecy::kShared);
  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  EXPECT_EQ(*shared, stdfs::canonical(conf));
  EXPECT_TRUE(CheckTrustedFile(pin, "PIN file", FileSecrecy::kPrivate).ok());
}

TEST_F(FileTrustTest, RefusesFilesOthersCanWrite) {
  stdfs::path conf = Write("cmkfs.toml", "", 0666);
  auto r = CheckTrustedFile(conf, "config file", FileSecrecy::kShared);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "config file " + conf.string() + " (owner uid " +
                std::to_string(::geteuid()) + ", mode 0666) must be owned by " +
                Owners() +
                " and not writable by group or others; fix it with: chown "
                "root " +
                conf.string() + " && chmod go-w " + conf.string());
  ::chmod(conf.c_str(), 0620);
  EXPECT_FALSE(
      CheckTrustedFile(conf, "config file", FileSecrecy::kShared).ok());
}

// The PIN file of the issue was 0644 and accepted.
TEST_F(FileTrustTest, RefusesSecretFilesOthersCanRead) {
  stdfs::path pin = Write("hsm.pin", "1234\n", 0644);
  auto r = CheckTrustedFile(pin, "PKCS#11 PIN file", FileSecrecy::kPrivate);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "PKCS#11 PIN file " + pin.string() + " (owner uid " +
                std::to_string(::geteuid()) + ", mode 0644) must be owned by " +
                Owners() +
                " and not accessible by group or others; fix it with: chown "
                "root " +
                pin.string() + " && chmod 600 " + pin.string());
  ::chmod(pin.c_str(), 0640);
  EXPECT_FALSE(
      CheckTrustedFile(pin, "PKCS#11 PIN file", FileSecrecy::kPrivate).ok());
}

TEST_F(FileTrustTest, RefusesFilesInDirectoriesOthersCanWrite) {
  stdfs::create_directory(dir_ / "open");
  ASSERT_EQ(::chmod((dir_ / "open").c_str(), 0777), 0);
  stdfs::path conf = Write("open/cmkfs.toml", "", 0644);
  auto r = CheckTrustedFile(conf, "config file", FileSecrecy::kShared);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "config file " + conf.string() + " is not trusted: directory " +
                (dir_ / "open").string() + " (owner uid " +
                std::to_string(::geteuid()) + ", mode 0777) must be owned by " +
                Owners() + " and not writable by group or others");
  // A symlink into such a directory does not help.
  stdfs::create_symlink(conf, dir_ / "link.toml");
  EXPECT_FALSE(
      CheckTrustedFile(dir_ / "link.toml", "config file", FileSecrecy::kShared)
          .ok());
}

TEST_F(FileTrustTest, RefusesFilesOfAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  stdfs::path module = Write("libtoken.so", "", 0644);
  ASSERT_EQ(::chown(module.c_str(), kNobody, kNobody), 0);
  auto r = CheckTrustedFile(module, "PKCS#11 module", FileSecrecy::kShared);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "PKCS#11 module " + module.string() +
                " (owner uid 65534, mode 0644) must be owned by root and not "
                "writable by group or others; fix it with: chown root " +
                module.string() + " && chmod go-w " + module.string());
  // Nor in a directory of another user, even a sticky one.
  ASSERT_EQ(::chown(module.c_str(), 0, 0), 0);
  ASSERT_EQ(::chown(dir_.c_str(), kNobody, kNobody), 0);
  EXPECT_FALSE(
      CheckTrustedFile(module, "PKCS#11 module", FileSecrecy::kShared).ok());
  ASSERT_EQ(::chown(dir_.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);
  EXPECT_TRUE(
      CheckTrustedFile(module, "PKCS#11 module", FileSecrecy::kShared).ok())
      << "a root-owned sticky directory such as /tmp is trusted";
}

TEST_F(FileTrustTest, MissingFileIsNotFound) {
  auto r =
      CheckTrustedFile(dir_ / "absent", "config file", FileSecrecy::kShared);
  EXPECT_EQ(r.status().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(r.status().message(),
            "config file " + (dir_ / "absent").string() + " not found");
}

TEST_F(FileTrustTest, ReadsIntoLockedMemoryUpToTheLimit) {
  stdfs::path pem = Write("key.pem", std::string(100, 'k'), 0600);
  auto exact = ReadFileToSecret(pem, "PEM file", 100);
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  EXPECT_EQ(exact->size(), 100u);
  EXPECT_EQ(exact->data()[99], 'k');
  auto over = ReadFileToSecret(pem, "PEM file", 99);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(over.status().message(), "PEM file " + pem.string() +
                                         " is larger than the limit of 99 B "
                                         "(99 bytes)");
  auto empty = ReadFileToSecret(Write("empty", "", 0600), "PEM file", 10);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(ReadFileToSecret(dir_ / "absent", "PEM file", 10).status().kind(),
            ErrorKind::kNotFound);
}

}  // namespace
}  // namespace cmkfs
