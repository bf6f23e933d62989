#include "support/fault_io_layer.h"

#include <thread>

namespace cmkfs::fs {

class FaultInjectingIoLayer::File : public IoFile {
 public:
  File(FaultInjectingIoLayer* layer, std::shared_ptr<IoFile> base)
      : layer_(layer), base_(std::move(base)) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    std::chrono::milliseconds delay;
    {
      std::lock_guard lock(layer_->mu_);
      if (layer_->crashed_) return IOError("simulated crash: read refused");
      delay = layer_->read_delay_;
    }
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    return base_->ReadAt(offset, buf);
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    std::lock_guard lock(layer_->mu_);
    CMKFS_RETURN_IF_ERROR(layer_->MaybeFail("write"));
    CMKFS_RETURN_IF_ERROR(SaveUndo(offset, data.size()));
    return base_->WriteAt(offset, data);
  }

  Status DataSync() override {
    std::function<void()> hook;
    {
      std::lock_guard lock(layer_->mu_);
      hook = layer_->sync_hook_;
    }
    if (hook) hook();
    std::lock_guard lock(layer_->mu_);
    CMKFS_RETURN_IF_ERROR(layer_->MaybeFail("fdatasync"));
    CMKFS_RETURN_IF_ERROR(base_->DataSync());
    undo_.clear();
    return Status::Ok();
  }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    std::lock_guard lock(layer_->mu_);
    if (layer_->crashed_) return IOError("simulated crash: punch refused");
    CMKFS_RETURN_IF_ERROR(SaveUndo(offset, length));
    return base_->PunchHole(offset, length);
  }

  Result<uint64_t> Size() override { return base_->Size(); }

  // Called with layer_->mu_ held.
  void DropUnsynced() {
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
      base_->WriteAt(it->offset, it->old).IgnoreError();
    }
    undo_.clear();
  }
  size_t unsynced() const { return undo_.size(); }

 private:
  struct Undo {
    uint64_t offset;
    std::vector<uint8_t> old;
  };
  Status SaveUndo(uint64_t offset, uint64_t length) {
    Undo u{offset, std::vector<uint8_t>(length)};
    CMKFS_RETURN_IF_ERROR(base_->ReadAt(offset, u.old));
    undo_.push_back(std::move(u));
    return Status::Ok();
  }

  FaultInjectingIoLayer* layer_;
  std::shared_ptr<IoFile> base_;
  std::vector<Undo> undo_;
};

FaultInjectingIoLayer::FaultInjectingIoLayer(std::shared_ptr<IoLayer> base)
    : base_(std::move(base)) {}
FaultInjectingIoLayer::~FaultInjectingIoLayer() = default;

Result<std::shared_ptr<IoFile>> FaultInjectingIoLayer::Open(
    const std::filesystem::path& path) {
  std::lock_guard lock(mu_);
  if (crashed_) return IOError("simulated crash: open refused");
  auto key = path.lexically_normal().string();
  auto it = files_.find(key);
  if (it != files_.end()) return std::shared_ptr<IoFile>(it->second);
  CMKFS_ASSIGN_OR_RETURN(auto base_file, base_->Open(path));
  auto f = std::make_shared<File>(this, std::move(base_file));
  files_[key] = f;
  return std::shared_ptr<IoFile>(f);
}

void FaultInjectingIoLayer::Crash() {
  std::lock_guard lock(mu_);
  for (auto& [path, f] : files_) f->DropUnsynced();
  crashed_ = true;
}

void FaultInjectingIoLayer::Recover() {
  std::lock_guard lock(mu_);
  crashed_ = false;
  fail_countdown_ = 0;
  fail_probability_ = 0;
}

void FaultInjectingIoLayer::FailNthWrite(uint64_t n) {
  std::lock_guard lock(mu_);
  fail_countdown_ = n;
}

void FaultInjectingIoLayer::FailWritesRandomly(double p, uint64_t seed) {
  std::lock_guard lock(mu_);
  fail_probability_ = p;
  rng_.seed(seed);
}

void FaultInjectingIoLayer::DelayReads(std::chrono::milliseconds delay) {
  std::lock_guard lock(mu_);
  read_delay_ = delay;
}

void FaultInjectingIoLayer::SetSyncHook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  sync_hook_ = std::move(hook);
}

void FaultInjectingIoLayer::FailWithNoSpace(bool no_space) {
  std::lock_guard lock(mu_);
  fail_no_space_ = no_space;
}

uint64_t FaultInjectingIoLayer::failed_writes() const {
  std::lock_guard lock(mu_);
  return failed_;
}

uint64_t FaultInjectingIoLayer::unsynced_writes() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [path, f] : files_) n += f->unsynced();
  return n;
}

Status FaultInjectingIoLayer::MaybeFail(const char* what) {
  if (crashed_) {
    return IOError(std::string("simulated crash: ") + what + " refused");
  }
  bool fail = false;
  if (fail_countdown_ > 0 && --fail_countdown_ == 0) fail = true;
  if (!fail && fail_probability_ > 0) {
    fail =
        std::uniform_real_distribution<double>(0, 1)(rng_) < fail_probability_;
  }
  if (!fail) return Status::Ok();
  ++failed_;
  if (fail_no_space_) {
    return NoSpaceError(std::string("injected ") + what +
                        " failure: No space left on device");
  }
  return IOError(std::string("injected ") + what + " failure");
}

}  // namespace cmkfs::fs
