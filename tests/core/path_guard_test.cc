#include "cmkfs/path_guard.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace cmkfs::path_guard {
namespace {

namespace stdfs = std::filesystem;

class PathGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (stdfs::temp_directory_path() / "cmkfs-pg-XXXXXX");
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    state_ = root_ / "state";
    ASSERT_TRUE(PrepareStateDir(state_).ok());
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(root_, ec);
  }
  void Touch(const stdfs::path& p, mode_t mode) {
    std::ofstream(p) << "x";
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }
  stdfs::path root_, state_;
};

mode_t ModeOf(const stdfs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST_F(PathGuardTest, CreatesDirectories0700WhateverTheUmask) {
  mode_t old = ::umask(0);
  Status s = PrepareStateDir(root_ / "a" / "b");
  ::umask(old);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(ModeOf(root_ / "a"), 0700u);
  EXPECT_EQ(ModeOf(root_ / "a" / "b"), 0700u);
  EXPECT_EQ(ModeOf(state_), 0700u);
}

TEST_F(PathGuardTest, AcceptsOwnFilesAndASocket) {
  Touch(state_ / "data.mdb", 0644);
  ASSERT_TRUE(MakePrivateDir(state_ / "meta").ok());
  Touch(state_ / "meta" / "lock.mdb", 0600);
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sock = (state_ / "control.sock").string();
  ASSERT_LT(sock.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, sock.data(), sock.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  Status s = CheckStateDir(state_);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST_F(PathGuardTest, RefusesAWritableFileNamingItsMode) {
  Touch(state_ / "pool.0", 0666);
  Status s = CheckStateDir(state_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.kind(), ErrorKind::kPermissionDenied);
  EXPECT_NE(s.message().find((state_ / "pool.0").string()), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("mode 0666"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
}

TEST_F(PathGuardTest, RefusesAFileOfAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root (CI runs as root)";
  Touch(state_ / "vault.key", 0600);
  ASSERT_EQ(::chown((state_ / "vault.key").c_str(), 65534, 65534), 0);
  Status s = CheckStateDir(state_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("vault.key is owned by uid 65534, mode 0600"),
            std::string::npos)
      << s.message();
  // The state directory itself pre-created by another user (the attack).
  ASSERT_EQ(::chown((state_ / "vault.key").c_str(), 0, 0), 0);
  ASSERT_EQ(::chown(state_.c_str(), 65534, 65534), 0);
  s = PrepareStateDir(state_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(state_.string() + " is owned by uid 65534"),
            std::string::npos)
      << s.message();
}

TEST_F(PathGuardTest, RefusesASymlinkAnywhereInside) {
  ASSERT_TRUE(MakePrivateDir(state_ / "extents").ok());
  stdfs::create_symlink("/etc/shadow", state_ / "extents" / "pool.0");
  Status s = CheckStateDir(state_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("extents/pool.0 is a symbolic link"),
            std::string::npos)
      << s.message();
}

TEST_F(PathGuardTest, RefusesAGroupWritableAncestor) {
  ASSERT_EQ(::chmod(root_.c_str(), 0775), 0);
  Status s = CheckStateDir(state_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(root_.string() + " is writable by group"),
            std::string::npos)
      << s.message();
  // Sticky alone is not enough: root_ is not owned by root unless we are.
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(root_.c_str(), 01777), 0);
    EXPECT_FALSE(CheckStateDir(state_).ok());
  }
}

TEST_F(PathGuardTest, AcceptsARootOwnedStickyAncestorLikeTmp) {
  struct stat st {};
  ASSERT_EQ(::stat("/tmp", &st), 0);
  ASSERT_TRUE(st.st_mode & S_ISVTX) << "/tmp is not sticky on this machine";
  Status s = CheckAncestors(state_);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST_F(PathGuardTest, OpenNoFollowRefusesASymlinkAndSetsTheMode) {
  Touch(root_ / "target", 0600);
  stdfs::create_symlink(root_ / "target", state_ / "cmkfs.pid");
  auto fd = OpenNoFollow(state_ / "cmkfs.pid", O_WRONLY | O_CREAT | O_TRUNC);
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(fd.status().message().find("is a symbolic link"), std::string::npos)
      << fd.status().message();

  mode_t old = ::umask(0);
  auto made =
      OpenNoFollow(state_ / "export.raw", O_WRONLY | O_CREAT | O_EXCL, 0600);
  ::umask(old);
  ASSERT_TRUE(made.ok()) << made.status().message();
  ::close(*made);
  EXPECT_EQ(ModeOf(state_ / "export.raw"), 0600u);
  auto again = OpenNoFollow(state_ / "export.raw", O_WRONLY | O_CREAT | O_EXCL);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().kind(), ErrorKind::kAlreadyExists);
}

}  // namespace
}  // namespace cmkfs::path_guard
