// The engine's data path: each handle drives its resource's volume stack
// (fs/volume: read-only(encrypted(thin(extent map, slot pool), key))) under
// the resource's write barrier; the stores are built here, and the commit
// timer runs here.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine_impl.h"
#include "layers.h"

namespace cmkfs::fs {
namespace {

Status SealedError(const OpenResource& r) {
  return KeyUnavailableError(std::string(ResourceKindName(r.kind)) + " " +
                             r.name + " is sealed: " + r.seal_reason);
}

// The key of an open resource: its cipher, which Seal and Unseal replace
// under the write barrier. Every caller holds the barrier shared (the
// handle takes it around each call into the stack), so Acquire only looks.
class ResourceKeySlot : public KeySlot {
 public:
  explicit ResourceKeySlot(const OpenResource* r) : r_(r) {}
  Result<const crypto::XtsCipher*> Acquire() override {
    if (!r_->cipher) return SealedError(*r_);
    return r_->cipher.get();
  }
  void Release() override {}

 private:
  const OpenResource* const r_;
};

class DiskHandleImpl : public DiskHandle {
 public:
  DiskHandleImpl(EngineImpl* engine, std::shared_ptr<OpenResource> res,
                 bool writable)
      : engine_(engine), res_(std::move(res)), writable_(writable) {
    VolumeSpec spec;
    spec.rid = res_->rid;
    spec.name = res_->name;
    spec.description =
        std::string(ResourceKindName(res_->kind)) + " " + res_->name;
    spec.size = std::shared_ptr<const std::atomic<uint64_t>>(res_, &res_->size);
    spec.key = std::make_shared<ResourceKeySlot>(res_.get());
    spec.read_only = !writable_;
    volume_ = AssembleVolume(&engine_->Map(), spec);
  }
  ~DiskHandleImpl() override { engine_->CloseHandle(res_); }

  uint64_t size() const override { return res_->size.load(); }
  bool writable() const override { return writable_; }
  Result<size_t> Read(uint64_t offset, std::span<uint8_t> buf) override {
    std::shared_lock barrier(res_->barrier);
    const uint64_t size = res_->size.load();
    // Past the end reads nothing, but a sealed volume still refuses.
    const uint64_t at = std::min(offset, size);
    const uint64_t n = std::min<uint64_t>(buf.size(), size - at);
    CMKFS_RETURN_IF_ERROR(volume_->Read(at, buf.first(n), nullptr));
    return static_cast<size_t>(n);
  }
  Result<size_t> Write(uint64_t offset,
                       std::span<const uint8_t> data) override {
    std::shared_lock barrier(res_->barrier);
    CMKFS_RETURN_IF_ERROR(volume_->Write(offset, data));
    return data.size();
  }
  Status Discard(uint64_t offset, uint64_t length) override {
    std::shared_lock barrier(res_->barrier);
    return volume_->Zero(offset, length, /*unmap=*/true);
  }
  Status ZeroRange(uint64_t offset, uint64_t length) override {
    std::shared_lock barrier(res_->barrier);
    return volume_->Zero(offset, length, /*unmap=*/true);
  }
  Status Sync() override { return volume_->Flush(); }
  Result<uint64_t> SeekData(uint64_t offset) override {
    std::shared_lock barrier(res_->barrier);
    CMKFS_ASSIGN_OR_RETURN(
        std::optional<uint64_t> pos,
        FindBlockRun(*volume_, offset, res_->size.load(), /*data=*/true));
    if (pos) return *pos;
    return NotFoundError("no data at or after offset " +
                         std::to_string(offset) + " of " + res_->name);
  }
  Result<uint64_t> SeekHole(uint64_t offset) override {
    std::shared_lock barrier(res_->barrier);
    const uint64_t size = res_->size.load();
    if (offset >= size) {
      return NotFoundError("offset " + std::to_string(offset) +
                           " is at or past the end of " + res_->name);
    }
    CMKFS_ASSIGN_OR_RETURN(
        std::optional<uint64_t> pos,
        FindBlockRun(*volume_, offset, size, /*data=*/false));
    return pos.value_or(size);
  }

 private:
  EngineImpl* const engine_;
  const std::shared_ptr<OpenResource> res_;
  const bool writable_;
  std::shared_ptr<Volume> volume_;
};

}  // namespace

std::shared_ptr<DiskHandle> MakeDiskHandle(EngineImpl* engine,
                                           std::shared_ptr<OpenResource> res,
                                           bool writable) {
  return std::make_shared<DiskHandleImpl>(engine, std::move(res), writable);
}

ExtentMap& EngineImpl::Map() {
  std::call_once(stores_once_, [this] {
    SlotPoolOptions o;
    o.pool_path = pool_path_;
    o.backing_dir = options_.dir;
    o.backing_reserve_bytes = options_.backing_reserve_bytes;
    o.free_table = db_free_;
    o.meta_table = db_meta_;
    o.hwm = hwm_;
    o.file_size = pool_known_size_.load();
    slots_ = std::make_unique<SlotPool>(pool_, meta_.get(), std::move(o));
    map_ = std::make_unique<ExtentMap>(
        meta_.get(), ExtentTables{db_map_, db_ref_, db_count_}, slots_.get(),
        &cache_, std::span<SharedMutex>(stripes_), [this] { RequestCommit(); });
  });
  return *map_;
}

Status EngineImpl::CommitPending() { return Map().CommitPending(); }

int64_t EngineImpl::PendingCount(uint64_t rid) {
  return Map().PendingCount(rid);
}

bool EngineImpl::SlotLost(uint64_t slot) { return Map().pool().SlotLost(slot); }

void EngineImpl::RequestCommit() {
  std::lock_guard lock(loop_mu_);
  commit_requested_ = true;
  loop_cv_.notify_one();
}

void EngineImpl::CommitLoop() {
  std::unique_lock lock(loop_mu_);
  while (!stop_) {
    loop_cv_.wait_for(lock, options_.commit_interval,
                      [&] { return stop_ || commit_requested_; });
    if (stop_) break;
    commit_requested_ = false;
    lock.unlock();
    if (Map().HasPending()) {
      Status st = CommitPending();
      if (!st.ok()) spdlog::error("engine: {}", st.ToString());
    }
    lock.lock();
  }
}

void EngineImpl::CloseHandle(const std::shared_ptr<OpenResource>& r) {
  MutexLock lock(&open_mu_);
  if (--r->handles == 0) {
    auto it = open_.find(r->rid);
    if (it != open_.end() && it->second == r) open_.erase(it);
  }
}

}  // namespace cmkfs::fs
