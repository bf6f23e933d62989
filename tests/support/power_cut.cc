#include "support/power_cut.h"

namespace cmkfs::fs {

PowerCut::PowerCut(std::shared_ptr<FaultInjectingIoLayer> io,
                   std::shared_ptr<FaultInjectingMetaStore> meta)
    : io_(std::move(io)), meta_(std::move(meta)) {
  io_->SetSyncHook([this] { OnSync("pool"); });
  meta_->SetSyncHook([this] { OnSync("metadata"); });
}

PowerCut::~PowerCut() {
  io_->SetSyncHook(nullptr);
  meta_->SetSyncHook(nullptr);
}

void PowerCut::Arm(uint64_t n, bool keep_unsynced_metadata) {
  std::lock_guard lock(mu_);
  target_ = n;
  keep_ = keep_unsynced_metadata;
  points_.clear();
}

void PowerCut::CutNow(bool keep_unsynced_metadata) {
  std::lock_guard lock(mu_);
  keep_ = keep_unsynced_metadata;
  CutLocked();
}

void PowerCut::OnSync(const char* what) {
  std::lock_guard lock(mu_);
  if (cut_) return;
  points_.emplace_back(what);
  if (target_ != 0 && points_.size() == target_) CutLocked();
}

void PowerCut::CutLocked() {
  if (cut_) return;
  cut_ = true;
  // Both at once: nothing reaches either store after this.
  meta_->Crash(keep_);
  io_->Crash();
}

std::vector<std::string> PowerCut::points() const {
  std::lock_guard lock(mu_);
  return points_;
}

bool PowerCut::cut() const {
  std::lock_guard lock(mu_);
  return cut_;
}

Status PowerCut::Restore() {
  std::lock_guard lock(mu_);
  io_->Recover();
  CMKFS_RETURN_IF_ERROR(meta_->Recover());
  cut_ = false;
  target_ = 0;
  return Status::Ok();
}

}  // namespace cmkfs::fs
