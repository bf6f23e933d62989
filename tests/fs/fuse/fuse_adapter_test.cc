// The FUSE adapter against a fake ResourceView: no keystore, no engine, no
// daemon process. The adapter is mounted in this process and served on a
// thread; the test drives the mount with plain system calls, as QEMU or a
// shell would, and checks what reached the fake (offsets, syncs, discards)
// and the errno the caller got for each engine error (fs/fuse/fuse_adapter.h).
#include "fuse_adapter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/mutex.h"
#include "cmkfs/volume.h"
#include "mount_support.h"
#include "support/memory_volume.h"

namespace cmkfs::fuse {
namespace {

namespace stdfs = std::filesystem;
using fs::ResourceKind;

constexpr uint64_t kMiB = 1 << 20;

// One resource of the fake: its bytes (a memory volume), what every I/O call
// answers instead of doing the I/O (set to make it fail), and what reached it.
struct FakeResource {
  fs::ResourceInfo info;
  std::unique_ptr<fs::Volume> volume;
  Mutex mu;
  Status io_error GUARDED_BY(mu);  // OK: I/O is served
  std::atomic<int> syncs{0};
  std::vector<std::pair<uint64_t, uint64_t>> discards GUARDED_BY(mu);
  std::vector<std::pair<uint64_t, uint64_t>> zeroes GUARDED_BY(mu);

  Status IoError() {
    MutexLock lock(&mu);
    return io_error;
  }
};

// A DiskHandle over a FakeResource (any alignment, as the engine's).
class FakeHandle : public fs::DiskHandle {
 public:
  FakeHandle(std::shared_ptr<FakeResource> r, bool writable)
      : r_(std::move(r)), writable_(writable) {}

  uint64_t size() const override { return r_->volume->Size(); }
  bool writable() const override { return writable_; }

  Result<size_t> Read(uint64_t offset, std::span<uint8_t> buf) override {
    CMKFS_RETURN_IF_ERROR(r_->IoError());
    if (offset >= size()) return size_t{0};
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size(), size() - offset));
    CMKFS_RETURN_IF_ERROR(r_->volume->Read(offset, buf.first(n), nullptr));
    return n;
  }
  Result<size_t> Write(uint64_t offset,
                       std::span<const uint8_t> data) override {
    CMKFS_RETURN_IF_ERROR(r_->IoError());
    if (!writable_) return Status(ErrorKind::kReadOnly, "read-only handle");
    CMKFS_RETURN_IF_ERROR(r_->volume->Write(offset, data));
    return data.size();
  }
  Status Discard(uint64_t offset, uint64_t length) override {
    CMKFS_RETURN_IF_ERROR(r_->IoError());
    {
      MutexLock lock(&r_->mu);
      r_->discards.emplace_back(offset, length);
    }
    return r_->volume->Zero(offset, length, /*unmap=*/true);
  }
  Status ZeroRange(uint64_t offset, uint64_t length) override {
    CMKFS_RETURN_IF_ERROR(r_->IoError());
    {
      MutexLock lock(&r_->mu);
      r_->zeroes.emplace_back(offset, length);
    }
    return r_->volume->Zero(offset, length, /*unmap=*/false);
  }
  Status Sync() override {
    CMKFS_RETURN_IF_ERROR(r_->IoError());
    r_->syncs.fetch_add(1);
    return r_->volume->Flush();
  }
  Result<uint64_t> SeekData(uint64_t offset) override {
    return Seek(offset, /*data=*/true);
  }
  Result<uint64_t> SeekHole(uint64_t offset) override {
    return Seek(offset, /*data=*/false);
  }

 private:
  Result<uint64_t> Seek(uint64_t offset, bool data) {
    CMKFS_RETURN_IF_ERROR(r_->IoError());
    CMKFS_ASSIGN_OR_RETURN(std::optional<uint64_t> pos,
                           fs::FindBlockRun(*r_->volume, offset, size(), data));
    if (pos) return *pos;
    if (data) return Status(ErrorKind::kNotFound, "no data after the offset");
    return size();
  }

  std::shared_ptr<FakeResource> r_;
  bool writable_;
};

// The fake engine: resources in a map, opened as FakeHandles; snapshots and
// images refuse writable opens, as the engine does.
class FakeResources : public fs::ResourceView {
 public:
  std::shared_ptr<FakeResource> Add(ResourceKind kind, const std::string& name,
                                    uint64_t size) {
    auto r = std::make_shared<FakeResource>();
    r->info.kind = kind;
    r->info.name = name;
    r->info.size = size;
    r->volume = fs::NewMemoryVolume(size);
    {
      MutexLock lock(&mu_);
      resources_[{kind, name}] = r;
    }
    Notify(kind, name);
    return r;
  }
  void Remove(ResourceKind kind, const std::string& name) {
    {
      MutexLock lock(&mu_);
      resources_.erase({kind, name});
    }
    Notify(kind, name);
  }
  // What Open answers instead of opening (OK: opens).
  void SetOpenError(Status s) {
    MutexLock lock(&mu_);
    open_error_ = std::move(s);
  }
  fs::PoolStats stats{.capacity_bytes = 64 * kMiB * 1024,
                      .free_bytes = 48 * kMiB * 1024,
                      .allocated_bytes = 16 * kMiB * 1024};

  Result<fs::ResourceInfo> Get(ResourceKind kind,
                               std::string_view name) override {
    MutexLock lock(&mu_);
    auto it = resources_.find({kind, std::string(name)});
    if (it == resources_.end())
      return Status(ErrorKind::kNotFound, "no such resource");
    return it->second->info;
  }
  Result<std::vector<fs::ResourceInfo>> List(ResourceKind kind) override {
    MutexLock lock(&mu_);
    std::vector<fs::ResourceInfo> out;
    for (const auto& [key, r] : resources_)
      if (key.first == kind) out.push_back(r->info);
    return out;
  }
  Result<fs::PoolStats> Stats() override { return stats; }
  Result<std::shared_ptr<fs::DiskHandle>> Open(ResourceKind kind,
                                               std::string_view name,
                                               bool writable) override {
    MutexLock lock(&mu_);
    if (!open_error_.ok()) return open_error_;
    auto it = resources_.find({kind, std::string(name)});
    if (it == resources_.end())
      return Status(ErrorKind::kNotFound, "no such resource");
    if (writable && kind != ResourceKind::kDisk)
      return Status(ErrorKind::kReadOnly, "snapshots and images are read-only");
    return std::shared_ptr<fs::DiskHandle>(
        std::make_shared<FakeHandle>(it->second, writable));
  }
  void SetChangeListener(
      std::function<void(ResourceKind, std::string_view)> listener) override {
    MutexLock lock(&mu_);
    listener_ = std::move(listener);
  }

 private:
  void Notify(ResourceKind kind, const std::string& name) {
    std::function<void(ResourceKind, std::string_view)> listener;
    {
      MutexLock lock(&mu_);
      listener = listener_;
    }
    if (listener) listener(kind, name);
  }

  Mutex mu_;
  std::map<std::pair<ResourceKind, std::string>, std::shared_ptr<FakeResource>>
      resources_ GUARDED_BY(mu_);
  Status open_error_ GUARDED_BY(mu_);
  std::function<void(ResourceKind, std::string_view)> listener_ GUARDED_BY(mu_);
};

class FuseAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "mounting needs root and /dev/fuse";
    char tmpl[] = "/tmp/cmkfs-adapter-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    mnt_ = tmpl;
    disk_ = fake_.Add(ResourceKind::kDisk, "d1", 8 * kMiB);
    snapshot_ = fake_.Add(ResourceKind::kSnapshot, "s1", 4 * kMiB);
    fake_.Add(ResourceKind::kImage, "i1", 4 * kMiB);
    auto mount = FuseMount::Mount(&fake_, mnt_, MountOptions{});
    ASSERT_TRUE(mount.ok()) << mount.status().ToString();
    mount_ = std::move(mount).value();
    run_ = std::thread([this] { run_status_ = mount_->Run(); });
    // Served once a lookup through the mount answers.
    for (int i = 0; i < 500 && !stdfs::exists(mnt_ / "disks"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(stdfs::exists(mnt_ / "disks")) << "the mount never answered";
  }

  void TearDown() override {
    if (mount_) {
      mount_->RequestExit();
      if (run_.joinable()) run_.join();
      mount_->Unmount();
      EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
      mount_.reset();
    }
    std::error_code ec;
    stdfs::remove(mnt_, ec);
  }

  std::string Disk() const { return (mnt_ / "disks" / "d1").string(); }

  std::set<std::string> Names(const std::string& dir) const {
    return testing::ListDir(mnt_ / dir);
  }

  // The errno of a 4 KiB O_DIRECT pwrite and pread at 0 while every I/O of
  // the disk answers `error`.
  std::pair<int, int> ErrnoOfIo(ErrorKind kind) {
    {
      MutexLock lock(&disk_->mu);
      disk_->io_error =
          kind == ErrorKind::kOk ? Status() : Status(kind, "injected");
    }
    int fd = open(Disk().c_str(), O_RDWR | O_DIRECT);
    EXPECT_GE(fd, 0) << strerror(errno);
    testing::AlignedBuffer buf(4096);
    errno = 0;
    int write_errno = pwrite(fd, buf.data, buf.size, 0) < 0 ? errno : 0;
    errno = 0;
    int read_errno = pread(fd, buf.data, buf.size, 0) < 0 ? errno : 0;
    {
      MutexLock lock(&disk_->mu);
      disk_->io_error = Status();
    }
    close(fd);
    return {write_errno, read_errno};
  }

  FakeResources fake_;
  std::shared_ptr<FakeResource> disk_;
  std::shared_ptr<FakeResource> snapshot_;
  stdfs::path mnt_;
  std::unique_ptr<FuseMount> mount_;
  std::thread run_;
  Status run_status_;
};

TEST_F(FuseAdapterTest, EachKindIsListedInItsDirectoryWithItsSizeAndMode) {
  EXPECT_EQ(Names("disks"), std::set<std::string>{"d1"});
  EXPECT_EQ(Names("snapshots"), std::set<std::string>{"s1"});
  EXPECT_EQ(Names("images"), std::set<std::string>{"i1"});
  struct stat st;
  ASSERT_EQ(stat(Disk().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 8 * kMiB);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(stat((mnt_ / "snapshots" / "s1").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kMiB);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  EXPECT_FALSE(stdfs::exists(mnt_ / "disks" / "nope"));
}

TEST_F(FuseAdapterTest, WritesReachTheEngineAtTheirOffsetAndReadsComeFromIt) {
  int fd = open(Disk().c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << strerror(errno);
  const std::string text = "written through the mount";
  ASSERT_EQ(pwrite(fd, text.data(), text.size(), 12345),
            static_cast<ssize_t>(text.size()));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  std::string got(text.size(), '\0');
  ASSERT_TRUE(
      disk_->volume
          ->Read(12345,
                 std::span<uint8_t>(reinterpret_cast<uint8_t*>(got.data()),
                                    got.size()),
                 nullptr)
          .ok());
  EXPECT_EQ(got, text);

  // Bytes put into the engine behind the mount's back read back directly.
  const std::string behind = "written into the engine";
  ASSERT_TRUE(
      disk_->volume
          ->Write(kMiB, std::span<const uint8_t>(
                            reinterpret_cast<const uint8_t*>(behind.data()),
                            behind.size()))
          .ok());
  fd = open(Disk().c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(fd, 0) << strerror(errno);
  testing::AlignedBuffer buf(4096);
  ASSERT_EQ(pread(fd, buf.data, buf.size, kMiB), 4096);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data), behind.size()),
            behind);
  close(fd);
}

TEST_F(FuseAdapterTest, FsyncAndCloseAfterAWriteSyncTheHandle) {
  int fd = open(Disk().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "x", 1, 0), 1);
  ASSERT_EQ(fsync(fd), 0);
  EXPECT_EQ(disk_->syncs.load(), 1);
  ASSERT_EQ(fdatasync(fd), 0);
  EXPECT_EQ(disk_->syncs.load(), 2);
  ASSERT_EQ(pwrite(fd, "y", 1, 1), 1);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(disk_->syncs.load(), 3) << "close after a write must sync";
  // A read-only open and close syncs nothing.
  fd = open(Disk().c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(disk_->syncs.load(), 3);
}

TEST_F(FuseAdapterTest, EngineErrorsReachTheCallerAsTheDocumentedErrno) {
  // Sealed (the key is unavailable), a failing store, and a full pool.
  EXPECT_EQ(ErrnoOfIo(ErrorKind::kKeyUnavailable), std::make_pair(EIO, EIO));
  EXPECT_EQ(ErrnoOfIo(ErrorKind::kIOError), std::make_pair(EIO, EIO));
  EXPECT_EQ(ErrnoOfIo(ErrorKind::kCorruption), std::make_pair(EIO, EIO));
  EXPECT_EQ(ErrnoOfIo(ErrorKind::kNoSpace), std::make_pair(ENOSPC, ENOSPC));
  // After the errors, I/O works again on the same file.
  EXPECT_EQ(ErrnoOfIo(ErrorKind::kOk), std::make_pair(0, 0));
}

TEST_F(FuseAdapterTest, ASealedResourceCannotBeOpened) {
  fake_.SetOpenError(Status(ErrorKind::kKeyUnavailable, "sealed"));
  errno = 0;
  EXPECT_LT(open(Disk().c_str(), O_RDONLY), 0);
  EXPECT_EQ(errno, EIO);
  fake_.SetOpenError(Status());
  int fd = open(Disk().c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  close(fd);
}

TEST_F(FuseAdapterTest, SnapshotsOpenReadOnly) {
  const std::string snap = (mnt_ / "snapshots" / "s1").string();
  errno = 0;
  EXPECT_LT(open(snap.c_str(), O_RDWR), 0);
  EXPECT_EQ(errno, EROFS);
  int fd = open(snap.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char c;
  EXPECT_EQ(pread(fd, &c, 1, 0), 1);
  close(fd);
}

TEST_F(FuseAdapterTest, TheFileNeverGrowsAndAWriteAcrossTheEndIsShort) {
  int fd = open(Disk().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const off_t size = static_cast<off_t>(8 * kMiB);
  errno = 0;
  EXPECT_LT(pwrite(fd, "abcd", 4, size), 0);
  EXPECT_EQ(errno, EFBIG);
  EXPECT_EQ(pwrite(fd, "abcdefgh", 8, size - 4), 4);
  errno = 0;
  EXPECT_NE(ftruncate(fd, size * 2), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_NE(fallocate(fd, 0, 0, size * 2), 0);
  EXPECT_EQ(errno, EFBIG);
  close(fd);
  struct stat st;
  ASSERT_EQ(stat(Disk().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, size);
}

TEST_F(FuseAdapterTest, UnalignedDirectIoIsRefusedWithEinval) {
  int fd = open(Disk().c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0);
  testing::AlignedBuffer buf(8192);
  errno = 0;
  EXPECT_LT(pread(fd, buf.data, 512, 100), 0);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_LT(pwrite(fd, buf.data, 100, 4096), 0);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(pread(fd, buf.data, 512, 512), 512);
  close(fd);
}

TEST_F(FuseAdapterTest, PunchHoleAndZeroRangeReachTheHandleWithTheirRange) {
  int fd = open(Disk().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::string data(3 * 4096, 'z');
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 4096),
            static_cast<ssize_t>(data.size()));
  ASSERT_EQ(
      fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192), 0)
      << strerror(errno);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, 12288, 100), 0)
      << strerror(errno);
  {
    MutexLock lock(&disk_->mu);
    EXPECT_EQ(disk_->discards,
              (std::vector<std::pair<uint64_t, uint64_t>>{{4096, 8192}}));
    EXPECT_EQ(disk_->zeroes,
              (std::vector<std::pair<uint64_t, uint64_t>>{{12288, 100}}));
  }
  // A punch hole must keep the size (fallocate(2)); other modes are unknown.
  errno = 0;
  EXPECT_NE(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), 0);
  EXPECT_EQ(errno, EOPNOTSUPP);
  errno = 0;
  EXPECT_NE(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), 0);
  EXPECT_EQ(errno, EOPNOTSUPP);
  close(fd);
  fd = open(Disk().c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(fd, 0);
  testing::AlignedBuffer buf(4 * 4096);
  ASSERT_EQ(pread(fd, buf.data, buf.size, 0), 4 * 4096);
  for (size_t i = 0; i < buf.size; ++i) {
    char want = (i >= 12288 + 100) ? 'z' : '\0';
    ASSERT_EQ(static_cast<char>(buf.data[i]), want) << "at byte " << i;
  }
  close(fd);
}

TEST_F(FuseAdapterTest, SeekDataAndSeekHoleFollowTheEngine) {
  int fd = open(Disk().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  errno = 0;
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), -1) << "an unwritten disk has no data";
  EXPECT_EQ(errno, ENXIO);
  ASSERT_EQ(pwrite(fd, "data", 4, static_cast<off_t>(kMiB)), 4);
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), static_cast<off_t>(kMiB));
  EXPECT_EQ(lseek(fd, static_cast<off_t>(kMiB), SEEK_HOLE),
            static_cast<off_t>(kMiB + 4096));
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 0);
  errno = 0;
  EXPECT_EQ(lseek(fd, static_cast<off_t>(8 * kMiB), SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  close(fd);
}

TEST_F(FuseAdapterTest, ResourcesAppearAndGoWithoutARemount) {
  fake_.Add(ResourceKind::kDisk, "d2", 2 * kMiB);
  EXPECT_EQ(Names("disks"), (std::set<std::string>{"d1", "d2"}));
  struct stat st;
  ASSERT_EQ(stat((mnt_ / "disks" / "d2").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 2 * kMiB);
  fake_.Remove(ResourceKind::kDisk, "d2");
  EXPECT_EQ(Names("disks"), std::set<std::string>{"d1"});
  // The adapter invalidates the kernel's entry from its notifier thread;
  // without the notice the entry would stay for its 1 s timeout, so 0.5 s
  // is the bound.
  int err = 0;
  for (int i = 0; i < 50; ++i) {
    errno = 0;
    if (stat((mnt_ / "disks" / "d2").c_str(), &st) != 0 && errno == ENOENT) {
      err = ENOENT;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(err, ENOENT) << "a removed disk is still visible after 0.5 s";
}

TEST_F(FuseAdapterTest, StatfsReportsThePool) {
  struct statvfs st;
  ASSERT_EQ(statvfs(mnt_.c_str(), &st), 0);
  EXPECT_EQ(st.f_frsize, 4096u);
  EXPECT_EQ(st.f_blocks * st.f_frsize, fake_.stats.capacity_bytes);
  EXPECT_EQ(st.f_bfree * st.f_frsize, fake_.stats.free_bytes);
}

TEST_F(FuseAdapterTest, TheNamespaceCannotBeChanged) {
  errno = 0;
  EXPECT_LT(open((mnt_ / "disks" / "new").c_str(), O_CREAT | O_RDWR, 0600), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_NE(unlink(Disk().c_str()), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_NE(rename(Disk().c_str(), (mnt_ / "disks" / "d9").c_str()), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_NE(chmod(Disk().c_str(), 0666), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(Names("disks"), std::set<std::string>{"d1"});
}

}  // namespace
}  // namespace cmkfs::fuse
