// Low-level libfuse adapter. Lock order: Adapter::nodes_mu_ is a leaf lock
// (no engine call and no fuse_reply_* / notify call is made while holding
// it); notify_mu_ guards only the notification queue. Every handler replies
// exactly once, as its last action, and catches everything.
#define FUSE_USE_VERSION 312

#include "fuse_adapter.h"

#include <fuse_lowlevel.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/mutex.h"

namespace cmkfs::fuse {
namespace {

using fs::ResourceKind;

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;  // 1
constexpr fuse_ino_t kDisksIno = 2;
constexpr fuse_ino_t kSnapshotsIno = 3;
constexpr fuse_ino_t kImagesIno = 4;
constexpr fuse_ino_t kFirstResourceIno = 16;
constexpr double kCacheTimeout = 1.0;  // seconds; changes are also notified
constexpr size_t kMaxIo = 1u << 20;
// FUSE workers when [engine] fuse_threads is 0 (docs/daemon.md).
constexpr unsigned kDefaultWorkerThreads = 10;
constexpr uint64_t kDirectIoAlignment = 512;
constexpr uint64_t kBlockSize = 4096;

// The per-thread buffer a read's plaintext is decrypted into: secret memory
// (mlocked, kept out of core dumps, wiped when the thread ends), grown to
// the largest read the thread has served; each read wipes it after its
// reply.
uint8_t* PlaintextBuffer(size_t size) {
  thread_local crypto::SecretBytes buffer;
  if (buffer.size() < size) {
    buffer =
        crypto::SecretBytes((size + kBlockSize - 1) / kBlockSize * kBlockSize);
  }
  return buffer.data();
}

constexpr ResourceKind kAllKinds[] = {
    ResourceKind::kDisk, ResourceKind::kSnapshot, ResourceKind::kImage};

fuse_ino_t DirIno(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kDisk:
      return kDisksIno;
    case ResourceKind::kSnapshot:
      return kSnapshotsIno;
    case ResourceKind::kImage:
      return kImagesIno;
  }
  return kDisksIno;
}

std::optional<ResourceKind> KindOfDir(fuse_ino_t ino) {
  switch (ino) {
    case kDisksIno:
      return ResourceKind::kDisk;
    case kSnapshotsIno:
      return ResourceKind::kSnapshot;
    case kImagesIno:
      return ResourceKind::kImage;
    default:
      return std::nullopt;
  }
}

struct Node {
  ResourceKind kind = ResourceKind::kDisk;
  std::string name;
  uint64_t nlookup = 0;
  bool detached = false;  // deleted: no longer reachable by name
};

struct OpenFile {
  std::shared_ptr<fs::DiskHandle> handle;
  std::atomic<bool> dirty{false};  // written since the last Sync
  IoSink* sink = nullptr;          // MountOptions::io_observer's, or null
};

// Times one engine call of a request for the file's IoSink, if it has one.
class IoTimer {
 public:
  IoTimer(const OpenFile* file, IoOp op)
      : sink_(file->sink),
        op_(op),
        start_(sink_ != nullptr ? std::chrono::steady_clock::now()
                                : std::chrono::steady_clock::time_point{}) {}
  void Done(uint64_t bytes, bool ok) {
    if (sink_ == nullptr) return;
    sink_->Record(op_, bytes, std::chrono::steady_clock::now() - start_, ok);
  }

 private:
  IoSink* const sink_;
  const IoOp op_;
  const std::chrono::steady_clock::time_point start_;
};

// DiskHandle::Sync, reported as kFlush.
Status TimedSync(OpenFile* file) {
  IoTimer timer(file, IoOp::kFlush);
  Status s = file->handle->Sync();
  timer.Done(0, s.ok());
  return s;
}

struct DirEntry {
  std::string name;
  fuse_ino_t ino = 0;
  bool is_dir = false;
};
struct DirListing {
  std::vector<DirEntry> entries;
};

OpenFile* FileOf(fuse_file_info* fi) {
  return reinterpret_cast<OpenFile*>(static_cast<uintptr_t>(fi->fh));
}

bool UnalignedDirect(const fuse_file_info* fi, uint64_t off, uint64_t size) {
  return fi != nullptr && (fi->flags & O_DIRECT) != 0 &&
         (off % kDirectIoAlignment != 0 || size % kDirectIoAlignment != 0);
}

constexpr std::string_view kXattrPrefix = "user.cmkfs.";
constexpr const char* kXattrNames[] = {
    "user.cmkfs.sku",    "user.cmkfs.encryption", "user.cmkfs.des",
    "user.cmkfs.key_id", "user.cmkfs.state",      "user.cmkfs.source"};

std::optional<std::string> XattrValue(const fs::ResourceInfo& info,
                                      std::string_view name) {
  if (name == "user.cmkfs.sku") return std::string(fs::DiskSkuName(info.sku));
  if (name == "user.cmkfs.encryption")
    return std::string(fs::EncryptionTypeName(info.encryption));
  if (name == "user.cmkfs.des") return info.des;
  if (name == "user.cmkfs.key_id") return info.key_id.ToString();
  if (name == "user.cmkfs.state")
    return std::string(info.state == fs::ResourceState::kSealed ? "sealed"
                                                                : "active");
  if (name == "user.cmkfs.source") return info.source;
  return std::nullopt;
}

class Adapter final : public FuseMount {
 public:
  Adapter(fs::ResourceView* engine, std::filesystem::path mountpoint,
          MountOptions options)
      : engine_(engine),
        mountpoint_(std::move(mountpoint)),
        options_(std::move(options)) {}

  ~Adapter() override { Unmount(); }

  Status Start();
  Status Run() override;
  void Unmount() override;
  void RequestExit() override;

  // --- request handlers (static trampolines below) -------------------------
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Forget(fuse_ino_t ino, uint64_t nlookup) EXCLUDES(nodes_mu_);
  void GetAttr(fuse_req_t req, fuse_ino_t ino);
  void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set);
  void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi);
  void Write(fuse_req_t req, const char* buf, size_t size, off_t off,
             fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_file_info* fi);
  void Release(fuse_req_t req, fuse_file_info* fi);
  void Fsync(fuse_req_t req, fuse_file_info* fi);
  void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void ReadDir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi);
  void ReleaseDir(fuse_req_t req, fuse_file_info* fi);
  void StatFs(fuse_req_t req);
  void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void Fallocate(fuse_req_t req, int mode, off_t offset, off_t length,
                 fuse_file_info* fi);
  void Lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi);
  void Init(fuse_conn_info* conn);

 private:
  std::optional<Node> FindNode(fuse_ino_t ino) EXCLUDES(nodes_mu_);
  fuse_ino_t InternNode(ResourceKind kind, const std::string& name,
                        bool count_lookup) EXCLUDES(nodes_mu_);
  void FillResourceStat(fuse_ino_t ino, const fs::ResourceInfo& info,
                        struct stat* st) const;
  void FillDirStat(fuse_ino_t ino, struct stat* st) const;
  // Resolves `ino` to a resource's current info; errno on failure.
  int ResourceInfoOf(fuse_ino_t ino, fs::ResourceInfo* info);

  void OnEngineChange(ResourceKind kind, std::string_view name)
      EXCLUDES(notify_mu_);
  void NotifierLoop() EXCLUDES(notify_mu_, nodes_mu_, run_mu_);
  void StopNotifier() EXCLUDES(notify_mu_);

  fs::ResourceView* engine_;
  std::filesystem::path mountpoint_;
  MountOptions options_;
  std::vector<std::string> argv_store_;
  std::vector<char*> argv_;
  fuse_args args_ = FUSE_ARGS_INIT(0, nullptr);
  timespec mount_time_{};

  // The adapter's four locks are leaves: none is held while another is
  // taken, or across an engine call or a reply to the kernel. notify_mu_ is
  // also taken in the engine's change listener (OnEngineChange), which the
  // engine calls with none of its own locks held.

  // Files still open when the session ends get no RELEASE: they are closed
  // (synced) by Unmount, before the engine goes away.
  Mutex files_mu_;
  std::unordered_set<OpenFile*> open_files_ GUARDED_BY(files_mu_);
  std::unordered_set<DirListing*> open_dirs_ GUARDED_BY(files_mu_);

  Mutex nodes_mu_;
  std::unordered_map<fuse_ino_t, Node> nodes_ GUARDED_BY(nodes_mu_);
  std::map<std::pair<int, std::string>, fuse_ino_t> by_name_
      GUARDED_BY(nodes_mu_);
  fuse_ino_t next_ino_ GUARDED_BY(nodes_mu_) = kFirstResourceIno;

  Mutex notify_mu_;
  CondVar notify_cv_;
  std::deque<std::pair<ResourceKind, std::string>> notify_queue_
      GUARDED_BY(notify_mu_);
  bool notify_stop_ GUARDED_BY(notify_mu_) = false;
  std::thread notifier_;

  // The session: set by Start, cleared by Unmount; RequestExit may run at
  // any time, so it is read under run_mu_ (the loop and the notifier take a
  // copy: they run between Start and Unmount).
  Mutex run_mu_;
  fuse_session* se_ GUARDED_BY(run_mu_) = nullptr;
  bool running_ GUARDED_BY(run_mu_) = false;
  pthread_t run_thread_ GUARDED_BY(run_mu_){};
};

Adapter* Self(fuse_req_t req) {
  return static_cast<Adapter*>(fuse_req_userdata(req));
}

// Runs a handler body; an escaping exception becomes EIO. Bodies reply as
// their last action, so a throw can only happen before the reply.
template <typename F>
void Guarded(fuse_req_t req, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    spdlog::error("fuse: internal error: {}", e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    spdlog::error("fuse: internal error");
    fuse_reply_err(req, EIO);
  }
}

// ---------------------------------------------------------------------------

std::optional<Node> Adapter::FindNode(fuse_ino_t ino) {
  MutexLock lock(&nodes_mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

fuse_ino_t Adapter::InternNode(ResourceKind kind, const std::string& name,
                               bool count_lookup) {
  MutexLock lock(&nodes_mu_);
  auto key = std::make_pair(static_cast<int>(kind), name);
  fuse_ino_t ino;
  auto it = by_name_.find(key);
  if (it != by_name_.end()) {
    ino = it->second;
  } else {
    ino = next_ino_++;
    by_name_.emplace(key, ino);
    nodes_.emplace(ino, Node{kind, name, 0, false});
  }
  if (count_lookup) nodes_[ino].nlookup++;
  return ino;
}

void Adapter::FillResourceStat(fuse_ino_t ino, const fs::ResourceInfo& info,
                               struct stat* st) const {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  uint32_t mode = options_.mode & 07777;
  if (info.kind != ResourceKind::kDisk) mode &= 0444;
  st->st_mode = S_IFREG | mode;
  st->st_nlink = 1;
  st->st_uid = options_.uid;
  st->st_gid = options_.gid;
  st->st_size = static_cast<off_t>(info.size);
  st->st_blksize = kBlockSize;
  st->st_blocks = static_cast<blkcnt_t>(
      std::min<uint64_t>(info.allocated_bytes, info.size) / 512);
  timespec t{};
  t.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(
                 info.created.time_since_epoch())
                 .count();
  st->st_atim = t;
  st->st_mtim = t;
  st->st_ctim = t;
}

void Adapter::FillDirStat(fuse_ino_t ino, struct stat* st) const {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  uint32_t mode = options_.mode & 0777;
  mode |= (mode & 0444) >> 2;  // search permission wherever read is allowed
  st->st_mode = S_IFDIR | mode;
  st->st_nlink = ino == kRootIno ? 5 : 2;
  st->st_uid = options_.uid;
  st->st_gid = options_.gid;
  st->st_size = 4096;
  st->st_blksize = kBlockSize;
  st->st_atim = mount_time_;
  st->st_mtim = mount_time_;
  st->st_ctim = mount_time_;
}

int Adapter::ResourceInfoOf(fuse_ino_t ino, fs::ResourceInfo* info) {
  std::optional<Node> node = FindNode(ino);
  if (!node || node->detached) return ENOENT;
  auto got = engine_->Get(node->kind, node->name);
  if (!got.ok()) return ToErrno(got.status());
  *info = std::move(got).value();
  return 0;
}

void Adapter::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.attr_timeout = kCacheTimeout;
  e.entry_timeout = kCacheTimeout;
  if (parent == kRootIno) {
    for (ResourceKind kind : kAllKinds) {
      if (fs::ResourceDirName(kind) == name) {
        e.ino = DirIno(kind);
        FillDirStat(e.ino, &e.attr);
        fuse_reply_entry(req, &e);
        return;
      }
    }
    fuse_reply_err(req, ENOENT);
    return;
  }
  std::optional<ResourceKind> kind = KindOfDir(parent);
  if (!kind) {
    fuse_reply_err(req, parent >= kFirstResourceIno ? ENOTDIR : ENOENT);
    return;
  }
  auto info = engine_->Get(*kind, name);
  if (!info.ok()) {
    fuse_reply_err(req, ToErrno(info.status()));
    return;
  }
  e.ino = InternNode(*kind, name, /*count_lookup=*/true);
  FillResourceStat(e.ino, *info, &e.attr);
  if (fuse_reply_entry(req, &e) != 0) Forget(e.ino, 1);
}

void Adapter::Forget(fuse_ino_t ino, uint64_t nlookup) {
  MutexLock lock(&nodes_mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  it->second.nlookup -= std::min(it->second.nlookup, nlookup);
  if (it->second.nlookup == 0 && it->second.detached) nodes_.erase(it);
}

void Adapter::GetAttr(fuse_req_t req, fuse_ino_t ino) {
  struct stat st;
  if (ino < kFirstResourceIno) {
    if (ino != kRootIno && !KindOfDir(ino)) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    FillDirStat(ino, &st);
    fuse_reply_attr(req, &st, kCacheTimeout);
    return;
  }
  fs::ResourceInfo info;
  if (int err = ResourceInfoOf(ino, &info); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  FillResourceStat(ino, info, &st);
  fuse_reply_attr(req, &st, kCacheTimeout);
}

void Adapter::SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr,
                      int to_set) {
  if (ino < kFirstResourceIno) {
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                  FUSE_SET_ATTR_SIZE)) {
      fuse_reply_err(req, EPERM);
      return;
    }
    struct stat st;
    FillDirStat(ino, &st);
    fuse_reply_attr(req, &st, kCacheTimeout);
    return;
  }
  fs::ResourceInfo info;
  if (int err = ResourceInfoOf(ino, &info); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if ((to_set & FUSE_SET_ATTR_SIZE) &&
      static_cast<uint64_t>(attr->st_size) != info.size) {
    spdlog::warn(
        "fuse: refused to change the size of {}/{} to {} bytes: use "
        "cmkctl disk resize",
        fs::ResourceDirName(info.kind), info.name,
        static_cast<uint64_t>(attr->st_size));
    fuse_reply_err(req, EPERM);
    return;
  }
  if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    spdlog::warn(
        "fuse: refused chmod/chown of {}/{}: owner and mode come from the "
        "[mount] section of the config",
        fs::ResourceDirName(info.kind), info.name);
    fuse_reply_err(req, EPERM);
    return;
  }
  // Time updates are accepted and ignored: the times are the creation time.
  struct stat st;
  FillResourceStat(ino, info, &st);
  fuse_reply_attr(req, &st, kCacheTimeout);
}

void Adapter::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino < kFirstResourceIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  std::optional<Node> node = FindNode(ino);
  if (!node || node->detached) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const bool writable = (fi->flags & O_ACCMODE) != O_RDONLY;
  auto handle = engine_->Open(node->kind, node->name, writable);
  if (!handle.ok()) {
    spdlog::debug("fuse: open {}/{}: {}", fs::ResourceDirName(node->kind),
                  node->name, handle.status().ToString());
    fuse_reply_err(req, ToErrno(handle.status()));
    return;
  }
  auto* file = new OpenFile;
  file->handle = std::move(handle).value();
  if (options_.io_observer != nullptr)
    file->sink = options_.io_observer->SinkFor(node->kind, node->name);
  fi->fh = reinterpret_cast<uintptr_t>(file);
  // Every write goes through this daemon (no writeback cache), so cached
  // pages stay valid across opens; seal and resize invalidate explicitly.
  // O_DIRECT opens (QEMU cache=none, fio direct=1) use FUSE direct I/O: no
  // page cache and no per-write privilege-removal round trip.
  fi->keep_cache = 1;
  fi->direct_io = (fi->flags & O_DIRECT) != 0 ? 1 : 0;
  {
    MutexLock lock(&files_mu_);
    open_files_.insert(file);
  }
  if (fuse_reply_open(req, fi) != 0) {
    {
      MutexLock lock(&files_mu_);
      open_files_.erase(file);
    }
    delete file;
  }
}

void Adapter::Read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  if (off < 0 || UnalignedDirect(fi, off, size)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  const uint64_t disk_size = file->handle->size();
  if (static_cast<uint64_t>(off) >= disk_size || size == 0) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  size = static_cast<size_t>(
      std::min<uint64_t>({size, disk_size - off, kMaxIo * 2}));
  uint8_t* buffer = PlaintextBuffer(size);
  // After the reply the kernel has its copy; none stays here.
  crypto::ScopedWipe wipe_reply(buffer, size);
  IoTimer timer(file, IoOp::kRead);
  auto n = file->handle->Read(off, std::span<uint8_t>(buffer, size));
  timer.Done(n.ok() ? *n : 0, n.ok());
  if (!n.ok()) {
    fuse_reply_err(req, ToErrno(n.status()));
    return;
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(buffer), *n);
}

void Adapter::Write(fuse_req_t req, const char* buf, size_t size, off_t off,
                    fuse_file_info* fi) {
  // `buf` points into the worker's receive buffer, which libfuse reuses for
  // the next request and frees (unwiped) when the worker exits: wipe the
  // plaintext as soon as this request is done with it, whatever the answer.
  crypto::ScopedWipe wipe_request(const_cast<char*>(buf), size);
  OpenFile* file = FileOf(fi);
  if (off < 0 || UnalignedDirect(fi, off, size)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (!file->handle->writable()) {
    fuse_reply_err(req, EBADF);
    return;
  }
  const uint64_t disk_size = file->handle->size();
  if (static_cast<uint64_t>(off) >= disk_size) {
    fuse_reply_err(req, size == 0 ? 0 : EFBIG);
    return;
  }
  size = static_cast<size_t>(std::min<uint64_t>(size, disk_size - off));
  IoTimer timer(file, IoOp::kWrite);
  auto n = file->handle->Write(
      off,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf), size));
  timer.Done(n.ok() ? *n : 0, n.ok());
  if (!n.ok()) {
    fuse_reply_err(req, ToErrno(n.status()));
    return;
  }
  file->dirty.store(true, std::memory_order_release);
  fuse_reply_write(req, *n);
}

void Adapter::Flush(fuse_req_t req, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  int err = 0;
  if (file->dirty.exchange(false)) {
    Status s = TimedSync(file);
    if (!s.ok()) {
      file->dirty.store(true);
      spdlog::error("fuse: sync on close failed: {}", s.ToString());
      err = ToErrno(s);
    }
  }
  fuse_reply_err(req, err);
}

void Adapter::Release(fuse_req_t req, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  if (file->dirty.exchange(false)) {
    Status s = TimedSync(file);
    if (!s.ok())
      spdlog::error("fuse: sync on release failed: {}", s.ToString());
  }
  {
    MutexLock lock(&files_mu_);
    open_files_.erase(file);
  }
  delete file;
  fi->fh = 0;
  fuse_reply_err(req, 0);
}

void Adapter::Fsync(fuse_req_t req, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  file->dirty.store(false);
  Status s = TimedSync(file);
  if (!s.ok()) {
    file->dirty.store(true);
    spdlog::error("fuse: fsync failed: {}", s.ToString());
  }
  fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
}

void Adapter::OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto listing = std::make_unique<DirListing>();
  listing->entries.push_back({".", ino, true});
  listing->entries.push_back({"..", kRootIno, true});
  if (ino == kRootIno) {
    for (ResourceKind kind : kAllKinds)
      listing->entries.push_back(
          {std::string(fs::ResourceDirName(kind)), DirIno(kind), true});
  } else if (std::optional<ResourceKind> kind = KindOfDir(ino)) {
    auto list = engine_->List(*kind);
    if (!list.ok()) {
      fuse_reply_err(req, ToErrno(list.status()));
      return;
    }
    for (const fs::ResourceInfo& info : *list) {
      listing->entries.push_back(
          {info.name, InternNode(*kind, info.name, false), false});
    }
  } else {
    fuse_reply_err(req, ino >= kFirstResourceIno ? ENOTDIR : ENOENT);
    return;
  }
  fi->fh = reinterpret_cast<uintptr_t>(listing.get());
  {
    MutexLock lock(&files_mu_);
    open_dirs_.insert(listing.get());
  }
  if (fuse_reply_open(req, fi) == 0) {
    listing.release();
  } else {
    MutexLock lock(&files_mu_);
    open_dirs_.erase(listing.get());
  }
}

void Adapter::ReleaseDir(fuse_req_t req, fuse_file_info* fi) {
  auto* listing = reinterpret_cast<DirListing*>(static_cast<uintptr_t>(fi->fh));
  {
    MutexLock lock(&files_mu_);
    open_dirs_.erase(listing);
  }
  delete listing;
  fuse_reply_err(req, 0);
}

void Adapter::ReadDir(fuse_req_t req, size_t size, off_t off,
                      fuse_file_info* fi) {
  auto* listing = reinterpret_cast<DirListing*>(static_cast<uintptr_t>(fi->fh));
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(std::max<off_t>(off, 0));
       i < listing->entries.size(); ++i) {
    const DirEntry& entry = listing->entries[i];
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_ino = entry.ino;
    st.st_mode = entry.is_dir ? S_IFDIR : S_IFREG;
    size_t need =
        fuse_add_direntry(req, buf.data() + used, size - used,
                          entry.name.c_str(), &st, static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Adapter::StatFs(fuse_req_t req) {
  auto stats = engine_->Stats();
  if (!stats.ok()) {
    fuse_reply_err(req, ToErrno(stats.status()));
    return;
  }
  struct statvfs st;
  std::memset(&st, 0, sizeof(st));
  st.f_bsize = kBlockSize;
  st.f_frsize = kBlockSize;
  st.f_blocks = stats->capacity_bytes / kBlockSize;
  st.f_bfree = stats->free_bytes / kBlockSize;
  st.f_bavail = stats->free_bytes / kBlockSize;
  uint64_t files = 0;
  for (ResourceKind kind : kAllKinds) {
    auto list = engine_->List(kind);
    if (list.ok()) files += list->size();
  }
  st.f_files = files + 4;
  st.f_ffree = 0;
  st.f_favail = 0;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

void Adapter::GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name,
                       size_t size) {
  // The kernel asks for security.capability before every buffered write:
  // answer names we never have without touching the engine.
  const bool ours =
      std::any_of(std::begin(kXattrNames), std::end(kXattrNames),
                  [name](const char* n) { return std::strcmp(n, name) == 0; });
  if (ino < kFirstResourceIno || !ours) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  fs::ResourceInfo info;
  if (int err = ResourceInfoOf(ino, &info); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  std::optional<std::string> value = XattrValue(info, name);
  if (!value) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  if (size == 0) {
    fuse_reply_xattr(req, value->size());
  } else if (size < value->size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value->data(), value->size());
  }
}

void Adapter::ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::string names;
  if (ino >= kFirstResourceIno) {
    fs::ResourceInfo info;
    if (int err = ResourceInfoOf(ino, &info); err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    for (const char* n : kXattrNames) {
      names.append(n);
      names.push_back('\0');
    }
  }
  if (size == 0) {
    fuse_reply_xattr(req, names.size());
  } else if (size < names.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, names.data(), names.size());
  }
}

void Adapter::Fallocate(fuse_req_t req, int mode, off_t offset, off_t length,
                        fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  if (offset < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  const uint64_t disk_size = file->handle->size();
  const uint64_t begin = static_cast<uint64_t>(offset);
  const uint64_t end = begin + static_cast<uint64_t>(length);
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  const int op = mode & ~FALLOC_FL_KEEP_SIZE;
  if (op != 0 && op != FALLOC_FL_PUNCH_HOLE && op != FALLOC_FL_ZERO_RANGE) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  if (op == FALLOC_FL_PUNCH_HOLE && !keep_size) {
    fuse_reply_err(req, EOPNOTSUPP);  // as fallocate(2) requires
    return;
  }
  if (end > disk_size && !keep_size) {
    fuse_reply_err(req, EFBIG);  // the file never grows through the mount
    return;
  }
  if (!file->handle->writable()) {
    fuse_reply_err(req, EBADF);
    return;
  }
  const uint64_t clipped_end = std::min(end, disk_size);
  Status s;
  if (op != 0 && begin < clipped_end) {
    IoTimer timer(file, IoOp::kDiscard);
    s = op == FALLOC_FL_PUNCH_HOLE
            ? file->handle->Discard(begin, clipped_end - begin)
            : file->handle->ZeroRange(begin, clipped_end - begin);
    timer.Done(clipped_end - begin, s.ok());
    if (s.ok()) file->dirty.store(true);
  }
  // mode 0 within the size: the disk is thin, nothing to reserve.
  fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
}

void Adapter::Lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (static_cast<uint64_t>(off) >= file->handle->size()) {
    fuse_reply_err(req, ENXIO);
    return;
  }
  auto pos = whence == SEEK_DATA ? file->handle->SeekData(off)
                                 : file->handle->SeekHole(off);
  if (!pos.ok()) {
    fuse_reply_err(req, pos.status().kind() == ErrorKind::kNotFound
                            ? ENXIO
                            : ToErrno(pos.status()));
    return;
  }
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
}

void Adapter::Init(fuse_conn_info* conn) {
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  const unsigned wanted =
      FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_DIO;
  conn->want |= conn->capable & wanted;
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ |
                  FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
                  FUSE_CAP_AUTO_INVAL_DATA);
}

// --- change notifications ----------------------------------------------------

void Adapter::OnEngineChange(ResourceKind kind, std::string_view name) {
  {
    MutexLock lock(&notify_mu_);
    if (notify_stop_) return;
    notify_queue_.emplace_back(kind, std::string(name));
  }
  notify_cv_.Signal();
}

void Adapter::NotifierLoop() {
  fuse_session* se = nullptr;
  {
    MutexLock lock(&run_mu_);
    se = se_;
  }
  for (;;) {
    std::pair<ResourceKind, std::string> change;
    {
      MutexLock lock(&notify_mu_);
      while (!notify_stop_ && notify_queue_.empty())
        notify_cv_.Wait(&notify_mu_);
      if (notify_stop_) return;
      change = std::move(notify_queue_.front());
      notify_queue_.pop_front();
    }
    const auto& [kind, name] = change;
    auto info = engine_->Get(kind, name);
    const bool gone =
        !info.ok() && info.status().kind() == ErrorKind::kNotFound;
    fuse_ino_t ino = 0;
    {
      MutexLock lock(&nodes_mu_);
      auto it = by_name_.find({static_cast<int>(kind), name});
      if (it != by_name_.end()) {
        ino = it->second;
        if (gone) {
          by_name_.erase(it);
          auto node = nodes_.find(ino);
          if (node != nodes_.end()) {
            node->second.detached = true;
            if (node->second.nlookup == 0) nodes_.erase(node);
          }
        }
      }
    }
    // Errors (nothing cached, not yet initialised) are expected and ignored.
    if (gone || ino == 0) {
      fuse_lowlevel_notify_inval_entry(se, DirIno(kind), name.c_str(),
                                       name.size());
    }
    if (ino != 0) fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
    fuse_lowlevel_notify_inval_inode(se, DirIno(kind), 0, 0);
  }
}

void Adapter::StopNotifier() {
  {
    MutexLock lock(&notify_mu_);
    notify_stop_ = true;
    notify_queue_.clear();
  }
  notify_cv_.SignalAll();
  if (notifier_.joinable()) notifier_.join();
}

// --- trampolines
// ---------------------------------------------------------------

void OpInit(void* userdata, fuse_conn_info* conn) {
  static_cast<Adapter*>(userdata)->Init(conn);
}
void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, [&] { Self(req)->Lookup(req, parent, name); });
}
void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  try {
    Self(req)->Forget(ino, nlookup);
  } catch (...) {
  }
  fuse_reply_none(req);
}
void OpForgetMulti(fuse_req_t req, size_t count,
                   struct fuse_forget_data* forgets) {
  try {
    for (size_t i = 0; i < count; ++i)
      Self(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  } catch (...) {
  }
  fuse_reply_none(req);
}
void OpGetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guarded(req, [&] { Self(req)->GetAttr(req, ino); });
}
void OpSetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info*) {
  Guarded(req, [&] { Self(req)->SetAttr(req, ino, attr, to_set); });
}
void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Open(req, ino, fi); });
}
void OpRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off,
            fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Read(req, size, off, fi); });
}
void OpWrite(fuse_req_t req, fuse_ino_t, const char* buf, size_t size,
             off_t off, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Write(req, buf, size, off, fi); });
}
void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Flush(req, fi); });
}
void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Release(req, fi); });
}
void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Fsync(req, fi); });
}
void OpOpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->OpenDir(req, ino, fi); });
}
void OpReadDir(fuse_req_t req, fuse_ino_t, size_t size, off_t off,
               fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->ReadDir(req, size, off, fi); });
}
void OpReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->ReleaseDir(req, fi); });
}
void OpFsyncDir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Guarded(req, [&] {
    Adapter* self = Self(req);
    (void)self;
    fuse_reply_err(req, 0);  // directory changes are committed by the engine
  });
}
void OpStatFs(fuse_req_t req, fuse_ino_t) {
  Guarded(req, [&] { Self(req)->StatFs(req); });
}
void OpSetXattr(fuse_req_t req, fuse_ino_t, const char* name, const char*,
                size_t, int) {
  fuse_reply_err(
      req, std::string_view(name).starts_with(kXattrPrefix) ? EPERM : ENOTSUP);
}
void OpGetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guarded(req, [&] { Self(req)->GetXattr(req, ino, name, size); });
}
void OpListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guarded(req, [&] { Self(req)->ListXattr(req, ino, size); });
}
void OpRemoveXattr(fuse_req_t req, fuse_ino_t, const char* name) {
  fuse_reply_err(
      req, std::string_view(name).starts_with(kXattrPrefix) ? EPERM : ENODATA);
}
void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset,
                 off_t length, fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Fallocate(req, mode, offset, length, fi); });
}
void OpLseek(fuse_req_t req, fuse_ino_t, off_t off, int whence,
             fuse_file_info* fi) {
  Guarded(req, [&] { Self(req)->Lseek(req, off, whence, fi); });
}
// Namespace changes happen through cmkctl only.
void OpMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  fuse_reply_err(req, EPERM);
}
void OpMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) {
  fuse_reply_err(req, EPERM);
}
void OpUnlink(fuse_req_t req, fuse_ino_t, const char*) {
  fuse_reply_err(req, EPERM);
}
void OpRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*,
              unsigned int) {
  fuse_reply_err(req, EPERM);
}
void OpSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) {
  fuse_reply_err(req, EPERM);
}
void OpLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  fuse_reply_err(req, EPERM);
}
void OpCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t,
              fuse_file_info*) {
  fuse_reply_err(req, EPERM);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetAttr;
  ops.setattr = OpSetAttr;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpenDir;
  ops.readdir = OpReadDir;
  ops.releasedir = OpReleaseDir;
  ops.fsyncdir = OpFsyncDir;
  ops.statfs = OpStatFs;
  ops.setxattr = OpSetXattr;
  ops.getxattr = OpGetXattr;
  ops.listxattr = OpListXattr;
  ops.removexattr = OpRemoveXattr;
  ops.fallocate = OpFallocate;
  ops.lseek = OpLseek;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpUnlink;
  ops.rename = OpRename;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.create = OpCreate;
  return ops;
}

// --- lifecycle
// -------------------------------------------------------------------

Status Adapter::Start() {
  clock_gettime(CLOCK_REALTIME, &mount_time_);
  std::string opts =
      "fsname=cmkfs,subtype=cmkfs,default_permissions,max_read=" +
      std::to_string(kMaxIo);
  if (options_.allow_other) opts += ",allow_other";
  for (const std::string& extra : options_.extra_options) {
    if (extra.empty()) continue;
    if (extra.find_first_of(" \t\n") != std::string::npos) {
      return InvalidArgumentError("bad mount option '" + extra +
                                  "': expected comma-separated words");
    }
    opts += "," + extra;
  }
  argv_store_ = {"cmkfs", "-o", opts};
  if (options_.debug) argv_store_.push_back("-d");
  for (std::string& a : argv_store_) argv_.push_back(a.data());
  argv_.push_back(nullptr);
  args_ = FUSE_ARGS_INIT(static_cast<int>(argv_store_.size()), argv_.data());
  static const fuse_lowlevel_ops kOps = MakeOps();
  fuse_session* se = fuse_session_new(&args_, &kOps, sizeof(kOps), this);
  if (se == nullptr) {
    return InvalidArgumentError("FUSE rejected the mount options '" + opts +
                                "' (see the log for the option it refused)");
  }
  if (fuse_session_mount(se, mountpoint_.c_str()) != 0) {
    fuse_session_destroy(se);
    return IOError("cannot mount FUSE at " + mountpoint_.string() +
                   " (is /dev/fuse available and the mountpoint an empty, "
                   "unmounted directory?)");
  }
  {
    MutexLock lock(&run_mu_);
    se_ = se;
  }
  notifier_ = std::thread([this] { NotifierLoop(); });
  engine_->SetChangeListener([this](ResourceKind kind, std::string_view name) {
    OnEngineChange(kind, name);
  });
  spdlog::info("mounted {} (uid {}, gid {}, mode {:o}{})", mountpoint_.string(),
               options_.uid, options_.gid, options_.mode,
               options_.allow_other ? ", allow_other" : "");
  return Status::Ok();
}

Status Adapter::Run() {
  fuse_session* se = nullptr;
  {
    MutexLock lock(&run_mu_);
    se = se_;
  }
  if (se == nullptr) return FailedPreconditionError("not mounted");
  sigset_t sigs, old;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  if (fuse_set_signal_handlers(se) != 0)
    return IOError("cannot install signal handlers");
  {
    MutexLock lock(&run_mu_);
    running_ = true;
    run_thread_ = pthread_self();
  }
  pthread_sigmask(SIG_UNBLOCK, &sigs, &old);
  // libfuse starts a worker whenever none is idle, up to max_threads: the
  // most requests the daemon serves at once (a direct read or write holds
  // its worker for the backing I/O). Idle workers beyond max_idle exit.
  fuse_loop_config* config = fuse_loop_cfg_create();
  if (config == nullptr) return IOError("cannot allocate the FUSE loop config");
  const unsigned max_threads =
      options_.threads != 0 ? options_.threads : kDefaultWorkerThreads;
  fuse_loop_cfg_set_clone_fd(config, 1);
  fuse_loop_cfg_set_max_threads(config, max_threads);
  fuse_loop_cfg_set_idle_threads(config, std::min(max_threads, 10u));
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  {
    MutexLock lock(&run_mu_);
    running_ = false;
  }
  fuse_remove_signal_handlers(se);
  if (rc < 0) {
    return IOError(std::string("FUSE session ended with an error: ") +
                   std::strerror(-rc));
  }
  if (rc > 0) spdlog::info("received signal {}, unmounting", rc);
  return Status::Ok();
}

void Adapter::RequestExit() {
  MutexLock lock(&run_mu_);
  if (se_ != nullptr) fuse_session_exit(se_);
  if (running_) pthread_kill(run_thread_, SIGHUP);
}

void Adapter::Unmount() {
  engine_->SetChangeListener(nullptr);
  StopNotifier();
  fuse_session* se = nullptr;
  {
    // Taken out under the lock, so a concurrent RequestExit sees either the
    // live session or none, never one being destroyed.
    MutexLock lock(&run_mu_);
    se = std::exchange(se_, nullptr);
  }
  if (se != nullptr) {
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    spdlog::info("unmounted {}", mountpoint_.string());
  }
  fuse_opt_free_args(&args_);
  std::unordered_set<OpenFile*> leftover;
  std::unordered_set<DirListing*> leftover_dirs;
  {
    MutexLock lock(&files_mu_);
    leftover.swap(open_files_);
    leftover_dirs.swap(open_dirs_);
  }
  for (DirListing* listing : leftover_dirs) delete listing;
  if (!leftover.empty()) {
    spdlog::warn("{} file(s) were still open at unmount; closing them",
                 leftover.size());
  }
  for (OpenFile* file : leftover) {
    if (file->dirty.load()) {
      Status s = file->handle->Sync();
      if (!s.ok()) spdlog::error("sync at unmount failed: {}", s.ToString());
    }
    delete file;
  }
}

}  // namespace

Result<std::unique_ptr<FuseMount>> FuseMount::Mount(
    fs::ResourceView* engine, const std::filesystem::path& mountpoint,
    const MountOptions& options) {
  if (engine == nullptr) return InvalidArgumentError("no engine to mount");
  auto adapter = std::make_unique<Adapter>(engine, mountpoint, options);
  Status s = adapter->Start();
  if (!s.ok()) return s;
  return std::unique_ptr<FuseMount>(std::move(adapter));
}

}  // namespace cmkfs::fuse
