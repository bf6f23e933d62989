// What a user of the mount sees: layout, sizes, I/O semantics, errno values.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mount_support.h"

namespace cmkfs::testing {
namespace {
namespace stdfs = std::filesystem;

constexpr uint64_t kMiB = 1 << 20;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

std::string GetXattr(const stdfs::path& p, const char* name) {
  char buf[512];
  ssize_t n = getxattr(p.c_str(), name, buf, sizeof(buf));
  if (n < 0) return "<errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

class FuseMountTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    MustCmkctl({"disk", "create", "d1", "--size", "64M"});
    MustCmkctl(
        {"disk", "create", "small", "--size", "1M", "--sku", "Standard_LRS"});
    MustStartDaemon();
  }
};

TEST_F(FuseMountTest, LayoutSizesAndOwnership) {
  EXPECT_EQ(ListDir(mnt_),
            (std::set<std::string>{"disks", "images", "snapshots"}));
  EXPECT_EQ(ListDir(mnt_ / "disks"), (std::set<std::string>{"d1", "small"}));
  EXPECT_TRUE(ListDir(mnt_ / "snapshots").empty());
  struct stat st;
  ASSERT_EQ(stat(Disk("d1").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, static_cast<off_t>(64 * kMiB));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(stat(Disk("small").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kMiB));
  ASSERT_EQ(stat((mnt_ / "disks").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(FuseMountTest, UnknownNameIsEnoent) {
  struct stat st;
  EXPECT_EQ(stat(Disk("nope").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(open((mnt_ / "nothing").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(FuseMountTest, PreadPwriteRoundTripAnyAlignment) {
  Fd f(open(Disk("d1").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0) << strerror(errno);
  std::vector<uint8_t> a = PatternBlock("alpha", 1, 10000);
  ASSERT_EQ(pwrite(f.fd, a.data(), a.size(), 12345), (ssize_t)a.size());
  std::vector<uint8_t> b = PatternBlock("beta", 2, 3 * kMiB);
  ASSERT_EQ(pwrite(f.fd, b.data(), b.size(), 40 * kMiB + 7), (ssize_t)b.size());
  std::vector<uint8_t> got(a.size());
  ASSERT_EQ(pread(f.fd, got.data(), got.size(), 12345), (ssize_t)got.size());
  EXPECT_EQ(got, a);
  got.assign(b.size(), 0);
  ASSERT_EQ(pread(f.fd, got.data(), got.size(), 40 * kMiB + 7),
            (ssize_t)got.size());
  EXPECT_EQ(got, b);
  // Unwritten ranges read as zeros.
  std::vector<uint8_t> zeros(8192, 0xff);
  ASSERT_EQ(pread(f.fd, zeros.data(), zeros.size(), 20 * kMiB), 8192);
  EXPECT_EQ(zeros, std::vector<uint8_t>(8192, 0));
  // A separate open (no shared cache state in this process) sees the data.
  Fd g(open(Disk("d1").c_str(), O_RDONLY | O_DIRECT));
  ASSERT_GE(g.fd, 0);
  AlignedBuffer direct(16384);
  ASSERT_EQ(pread(g.fd, direct.data, direct.size, 8192), 16384);
  EXPECT_EQ(std::memcmp(direct.data + (12345 - 8192), a.data(), a.size()), 0);
}

TEST_F(FuseMountTest, ReadAtEndReturnsZeroAndWritePastEndFails) {
  Fd f(open(Disk("small").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0);
  char c;
  EXPECT_EQ(pread(f.fd, &c, 1, kMiB), 0);
  EXPECT_EQ(pread(f.fd, &c, 1, 5 * kMiB), 0);
  std::vector<uint8_t> buf(8192, 0x5a);
  errno = 0;
  EXPECT_EQ(pwrite(f.fd, buf.data(), buf.size(), kMiB), -1);
  EXPECT_EQ(errno, EFBIG);
  // A write crossing the end is short; the file never grows.
  EXPECT_EQ(pwrite(f.fd, buf.data(), buf.size(), kMiB - 4096), 4096);
  struct stat st;
  ASSERT_EQ(fstat(f.fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kMiB));
}

TEST_F(FuseMountTest, ODirectAlignedWorksUnalignedIsEinval) {
  Fd f(open(Disk("d1").c_str(), O_RDWR | O_DIRECT));
  ASSERT_GE(f.fd, 0) << strerror(errno);
  AlignedBuffer buf(kMiB);
  std::vector<uint8_t> pattern = PatternBlock("direct", 9, kMiB);
  std::memcpy(buf.data, pattern.data(), kMiB);
  ASSERT_EQ(pwrite(f.fd, buf.data, kMiB, 4 * kMiB), (ssize_t)kMiB);
  std::memset(buf.data, 0, kMiB);
  ASSERT_EQ(pread(f.fd, buf.data, kMiB, 4 * kMiB), (ssize_t)kMiB);
  EXPECT_EQ(std::memcmp(buf.data, pattern.data(), kMiB), 0);
  ASSERT_EQ(pwrite(f.fd, buf.data, 512, 4 * kMiB + 512), 512);
  errno = 0;
  EXPECT_EQ(pwrite(f.fd, buf.data, 4096, 4 * kMiB + 100), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(pread(f.fd, buf.data, 1000, 0), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(FuseMountTest, SnapshotIsReadOnlyAndPointInTime) {
  std::vector<uint8_t> before = PatternBlock("before", 1);
  {
    Fd f(open(Disk("d1").c_str(), O_RDWR));
    ASSERT_GE(f.fd, 0);
    ASSERT_EQ(pwrite(f.fd, before.data(), 4096, 0), 4096);
  }
  MustCmkctl({"snapshot", "create", "s1", "--source", "d1"});
  std::vector<uint8_t> after = PatternBlock("after", 2);
  {
    Fd f(open(Disk("d1").c_str(), O_RDWR));
    ASSERT_GE(f.fd, 0);
    ASSERT_EQ(pwrite(f.fd, after.data(), 4096, 0), 4096);
  }
  struct stat st;
  ASSERT_EQ(stat(Snapshot("s1").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(64 * kMiB));
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  errno = 0;
  EXPECT_EQ(open(Snapshot("s1").c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_EQ(open(Snapshot("s1").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  Fd s(open(Snapshot("s1").c_str(), O_RDONLY));
  ASSERT_GE(s.fd, 0);
  std::vector<uint8_t> got(4096);
  ASSERT_EQ(pread(s.fd, got.data(), 4096, 0), 4096);
  EXPECT_EQ(got, before);
  Fd d(open(Disk("d1").c_str(), O_RDONLY));
  ASSERT_EQ(pread(d.fd, got.data(), 4096, 0), 4096);
  EXPECT_EQ(got, after);
}

TEST_F(FuseMountTest, XattrsDescribeTheResource) {
  EXPECT_EQ(GetXattr(Disk("d1"), "user.cmkfs.sku"), "Premium_LRS");
  EXPECT_EQ(GetXattr(Disk("small"), "user.cmkfs.sku"), "Standard_LRS");
  EXPECT_EQ(GetXattr(Disk("d1"), "user.cmkfs.encryption"), "platform");
  EXPECT_EQ(GetXattr(Disk("d1"), "user.cmkfs.state"), "active");
  EXPECT_EQ(GetXattr(Disk("d1"), "user.cmkfs.des"), "");
  EXPECT_NE(GetXattr(Disk("d1"), "user.cmkfs.key_id").find("cmk://"),
            std::string::npos);
  EXPECT_EQ(GetXattr(Disk("d1"), "user.cmkfs.nothing"),
            "<errno " + std::to_string(ENODATA) + ">");
  char list[1024];
  ssize_t n = listxattr(Disk("d1").c_str(), list, sizeof(list));
  ASSERT_GT(n, 0);
  std::set<std::string> names;
  for (ssize_t i = 0; i < n; i += std::strlen(list + i) + 1)
    names.insert(list + i);
  EXPECT_EQ(names,
            (std::set<std::string>{"user.cmkfs.sku", "user.cmkfs.encryption",
                                   "user.cmkfs.des", "user.cmkfs.key_id",
                                   "user.cmkfs.state", "user.cmkfs.source"}));
  errno = 0;
  EXPECT_EQ(setxattr(Disk("d1").c_str(), "user.cmkfs.sku", "x", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
}

TEST_F(FuseMountTest, CustomerKeyDiskShowsDesAndKeyId) {
  CreateCustomerKeySetup();
  MustCmkctl({"disk", "create", "cmk", "--size", "4M", "--des", "des1"});
  EXPECT_EQ(GetXattr(Disk("cmk"), "user.cmkfs.encryption"), "customer");
  EXPECT_EQ(GetXattr(Disk("cmk"), "user.cmkfs.des"), "des1");
  EXPECT_EQ(GetXattr(Disk("cmk"), "user.cmkfs.key_id")
                .rfind("cmk://vault1/keys/key1/", 0),
            0u);
  Fd f(open(Disk("cmk").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0) << strerror(errno);
  std::vector<uint8_t> data = PatternBlock("customer", 3, 8192);
  ASSERT_EQ(pwrite(f.fd, data.data(), data.size(), 4096), 8192);
  ASSERT_EQ(fsync(f.fd), 0);
  std::vector<uint8_t> got(8192);
  ASSERT_EQ(pread(f.fd, got.data(), got.size(), 4096), 8192);
  EXPECT_EQ(got, data);
}

TEST_F(FuseMountTest, FallocatePunchHoleAndZeroRange) {
  Fd f(open(Disk("d1").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0);
  std::vector<uint8_t> data = PatternBlock("fill", 4, 4 * kMiB);
  ASSERT_EQ(pwrite(f.fd, data.data(), data.size(), 0), (ssize_t)data.size());
  ASSERT_EQ(
      fallocate(f.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kMiB, kMiB),
      0)
      << strerror(errno);
  std::vector<uint8_t> got(kMiB);
  ASSERT_EQ(pread(f.fd, got.data(), kMiB, kMiB), (ssize_t)kMiB);
  EXPECT_EQ(got, std::vector<uint8_t>(kMiB, 0));
  ASSERT_EQ(pread(f.fd, got.data(), kMiB, 0), (ssize_t)kMiB);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin()));
  // Zero range (unaligned edges) keeps the bytes around it.
  int zr = fallocate(f.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                     2 * kMiB + 100, 5000);
  if (zr == 0) {
    std::vector<uint8_t> around(5200);
    ASSERT_EQ(pread(f.fd, around.data(), around.size(), 2 * kMiB),
              (ssize_t)around.size());
    for (size_t i = 0; i < around.size(); ++i) {
      uint8_t expect = (i >= 100 && i < 5100) ? 0 : data[2 * kMiB + i];
      ASSERT_EQ(around[i], expect) << "at " << i;
    }
  } else {
    // Kernels before FUSE zero-range support refuse it themselves.
    EXPECT_EQ(errno, EOPNOTSUPP);
  }
  // Reserving within the size is accepted (thin), growing is refused.
  EXPECT_EQ(fallocate(f.fd, 0, 0, kMiB), 0) << strerror(errno);
  errno = 0;
  EXPECT_EQ(fallocate(f.fd, 0, 63 * kMiB, 2 * kMiB), -1);
  EXPECT_EQ(errno, EFBIG);
  struct stat st;
  ASSERT_EQ(fstat(f.fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(64 * kMiB));
}

TEST_F(FuseMountTest, SeekDataAndSeekHole) {
  Fd f(open(Disk("d1").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0);
  errno = 0;
  EXPECT_EQ(lseek(f.fd, 0, SEEK_DATA), -1);  // a fresh disk is all hole
  EXPECT_EQ(errno, ENXIO);
  std::vector<uint8_t> data = PatternBlock("seek", 5, kMiB);
  ASSERT_EQ(pwrite(f.fd, data.data(), data.size(), 32 * kMiB), (ssize_t)kMiB);
  off_t d = lseek(f.fd, 0, SEEK_DATA);
  ASSERT_GE(d, 0) << strerror(errno);
  EXPECT_LE(d, static_cast<off_t>(32 * kMiB));
  EXPECT_GT(d + static_cast<off_t>(4 * kMiB), static_cast<off_t>(32 * kMiB))
      << "data reported far before the written range";
  off_t h = lseek(f.fd, 32 * kMiB, SEEK_HOLE);
  ASSERT_GE(h, static_cast<off_t>(33 * kMiB)) << strerror(errno);
  EXPECT_LE(h, static_cast<off_t>(64 * kMiB));
  EXPECT_EQ(lseek(f.fd, 0, SEEK_HOLE), 0);
  errno = 0;
  EXPECT_EQ(lseek(f.fd, 64 * kMiB, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
}

TEST_F(FuseMountTest, FsyncFdatasyncAndStatfs) {
  Fd f(open(Disk("d1").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0);
  std::vector<uint8_t> data = PatternBlock("sync", 6, 65536);
  ASSERT_EQ(pwrite(f.fd, data.data(), data.size(), 0), 65536);
  EXPECT_EQ(fsync(f.fd), 0) << strerror(errno);
  EXPECT_EQ(fdatasync(f.fd), 0) << strerror(errno);
  Fd dir(open((mnt_ / "disks").c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_GE(dir.fd, 0);
  EXPECT_EQ(fsync(dir.fd), 0) << strerror(errno);
  struct statvfs sv;
  ASSERT_EQ(statvfs(mnt_.c_str(), &sv), 0);
  EXPECT_EQ(sv.f_bsize, 4096u);
  EXPECT_GT(sv.f_blocks, 0u);
  EXPECT_LE(sv.f_bfree, sv.f_blocks);
  struct statvfs backing;
  ASSERT_EQ(statvfs(state_.c_str(), &backing), 0);
  EXPECT_EQ(sv.f_blocks * sv.f_frsize, backing.f_blocks * backing.f_frsize);
}

TEST_F(FuseMountTest, TruncateChmodAndNamespaceChangesAreRefused) {
  errno = 0;
  EXPECT_EQ(truncate(Disk("d1").c_str(), 128 * kMiB), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(truncate(Disk("d1").c_str(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(chmod(Disk("d1").c_str(), 0644), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(open(Disk("new").c_str(), O_RDWR | O_CREAT, 0600), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(unlink(Disk("d1").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  struct stat st;
  ASSERT_EQ(stat(Disk("d1").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(64 * kMiB));
}

TEST_F(FuseMountTest, CmkctlChangesAppearWithoutRemount) {
  struct stat st;
  ASSERT_EQ(stat(Disk("d1").c_str(), &st), 0);  // cache the dentry
  MustCmkctl({"disk", "create", "live", "--size", "8M"});
  EXPECT_TRUE(ListDir(mnt_ / "disks").count("live"));
  ASSERT_EQ(stat(Disk("live").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(8 * kMiB));
  MustCmkctl({"disk", "resize", "live", "--size", "16M"});
  ASSERT_EQ(stat(Disk("live").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(16 * kMiB));
  MustCmkctl({"disk", "delete", "live"});
  EXPECT_FALSE(ListDir(mnt_ / "disks").count("live"));
  // The kernel's cached dentry is invalidated asynchronously (notifier
  // thread); within the 1 s entry timeout at the latest.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (stat(Disk("live").c_str(), &st) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(stat(Disk("live").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  MustCmkctl({"image", "create", "img", "--source", "d1"});
  EXPECT_TRUE(ListDir(mnt_ / "images").count("img"));
  ASSERT_EQ(stat(Image("img").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
}

TEST_F(FuseMountTest, DeletingAnOpenDiskFailsWithBusy) {
  Fd f(open(Disk("d1").c_str(), O_RDWR));
  ASSERT_GE(f.fd, 0);
  RunResult r = Cmkctl({"disk", "delete", "d1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
  EXPECT_NE(r.err.find("open"), std::string::npos) << r.err;
  struct stat st;
  EXPECT_EQ(stat(Disk("d1").c_str(), &st), 0);
  close(f.fd);
  f.fd = -1;
  MustCmkctl({"disk", "delete", "d1"});
  EXPECT_FALSE(ListDir(mnt_ / "disks").count("d1"));
}

TEST_F(FuseMountTest, WriterThreadsSnapshotIsPointInTime) {
  // Each writer fills its own region block by block, in order, and counts
  // the blocks acknowledged. A point-in-time snapshot holds, per writer, a
  // prefix of its blocks that includes every block acknowledged before the
  // snapshot command started, and no torn block. Every writer must have
  // written before the command and again after it returned (so the
  // snapshot was taken under writes), and none may hit an error.
  constexpr int kWriters = 4;
  constexpr uint64_t kRegionBlocks = 4096;  // 16 MiB each
  std::atomic<uint64_t> acked[kWriters];
  std::atomic<bool> stop{false};
  std::atomic<bool> snapshot_returned{false};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::string write_error;
  auto errors = [&] {  // writers may still run: read under the lock
    std::lock_guard lk(error_mu);
    return write_error;
  };
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    acked[w] = 0;
    writers.emplace_back([&, w] {
      auto fail = [&](const std::string& what) {
        std::lock_guard lk(error_mu);
        write_error += "writer " + std::to_string(w) + ": " + what + "; ";
        failed = true;
      };
      int fd = open(Disk("d1").c_str(), O_RDWR);
      if (fd < 0) return fail(std::string("open: ") + std::strerror(errno));
      for (uint64_t b = 0; b < kRegionBlocks && !stop; ++b) {
        std::vector<uint8_t> block = PatternBlock("w" + std::to_string(w), b);
        uint64_t off = (w * kRegionBlocks + b) * 4096;
        ssize_t n = pwrite(fd, block.data(), 4096, off);
        if (n != 4096) {
          fail("pwrite at " + std::to_string(off) + ": " +
               (n < 0 ? std::strerror(errno) : "short write"));
          break;
        }
        acked[w] = b + 1;
        // Paced until the snapshot returns, so the region outlasts it.
        if (!snapshot_returned)
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      close(fd);
    });
  }
  auto stop_writers = [&] {
    stop = true;
    for (auto& t : writers) t.join();
    writers.clear();
  };
  struct Joiner {
    decltype(stop_writers)& f;
    ~Joiner() { f(); }
  } joiner{stop_writers};
  // Waits (bounded) until writer w acknowledged more than `floor` blocks.
  auto wait_past = [&](int w, uint64_t floor) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (acked[w] <= floor && !failed && acked[w] < kRegionBlocks &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return acked[w] > floor;
  };
  for (int w = 0; w < kWriters; ++w)
    ASSERT_TRUE(wait_past(w, 16)) << "writer " << w << " made no progress "
                                  << "before the snapshot: " << errors();
  uint64_t before[kWriters];
  for (int w = 0; w < kWriters; ++w) before[w] = acked[w];
  MustCmkctl({"snapshot", "create", "pit", "--source", "d1"});
  uint64_t after[kWriters];
  for (int w = 0; w < kWriters; ++w) after[w] = acked[w];
  snapshot_returned = true;
  for (int w = 0; w < kWriters; ++w) {
    EXPECT_TRUE(wait_past(w, after[w]))
        << "writer " << w << " wrote nothing after the snapshot returned ("
        << after[w] << " of " << kRegionBlocks << " blocks): " << errors();
  }
  stop_writers();
  ASSERT_FALSE(failed) << errors();
  Fd s(open(Snapshot("pit").c_str(), O_RDONLY));
  ASSERT_GE(s.fd, 0);
  std::vector<uint8_t> got(4096);
  const std::vector<uint8_t> zero(4096, 0);
  for (int w = 0; w < kWriters; ++w) {
    uint64_t present = 0;
    bool in_prefix = true;
    for (uint64_t b = 0; b < kRegionBlocks; ++b) {
      ASSERT_EQ(pread(s.fd, got.data(), 4096, (w * kRegionBlocks + b) * 4096),
                4096);
      if (got == PatternBlock("w" + std::to_string(w), b)) {
        ASSERT_TRUE(in_prefix) << "writer " << w << " block " << b
                               << " present after a missing block";
        ++present;
      } else {
        ASSERT_EQ(got, zero) << "torn block: writer " << w << " block " << b;
        in_prefix = false;
      }
    }
    EXPECT_GE(present, before[w]) << "writer " << w;
    EXPECT_LE(present, after[w] + 1) << "writer " << w;
  }
}

}  // namespace
}  // namespace cmkfs::testing
