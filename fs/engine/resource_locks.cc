#include "resource_locks.h"

#include "records.h"

namespace cmkfs::fs {

ResourceLocks::Hold::Hold(Hold&& other) noexcept
    : locks_(other.locks_), key_(std::move(other.key_)) {
  other.locks_ = nullptr;
}

ResourceLocks::Hold::~Hold() {
  if (locks_) locks_->Release(key_);
}

ResourceLocks::Hold ResourceLocks::Lock(ResourceKind kind,
                                        std::string_view name) {
  std::string key = ResourceKey(kind, name);
  MutexLock lock(&mu_);
  while (held_.contains(key)) released_.Wait(&mu_);
  held_.insert(key);
  return Hold(this, std::move(key));
}

bool ResourceLocks::IsHeld(ResourceKind kind, std::string_view name) {
  MutexLock lock(&mu_);
  return held_.contains(ResourceKey(kind, name));
}

void ResourceLocks::Release(const std::string& key) {
  {
    MutexLock lock(&mu_);
    held_.erase(key);
  }
  released_.SignalAll();
}

}  // namespace cmkfs::fs
