#include <utility>

#include "layers.h"

namespace cmkfs::fs {

OwnedKeySlot::OwnedKeySlot(std::string what) : what_(std::move(what)) {}

Status OwnedKeySlot::Load(const crypto::SecretBytes& key) {
  CMKFS_ASSIGN_OR_RETURN(auto cipher, crypto::XtsCipher::Create(key));
  MutexLock lock(&mu_);
  while (in_flight_ > 0) idle_.Wait(&mu_);
  cipher_ = std::move(cipher);
  reason_.clear();
  return Status::Ok();
}

void OwnedKeySlot::Seal(std::string reason) {
  std::unique_ptr<crypto::XtsCipher> dropped;
  {
    MutexLock lock(&mu_);
    reason_ = std::move(reason);
    dropped = std::move(cipher_);
    // New I/O fails from here on; the I/O holding the key finishes first.
    while (in_flight_ > 0) idle_.Wait(&mu_);
  }
  // ~XtsCipher wipes its contexts.
}

bool OwnedKeySlot::sealed() const {
  MutexLock lock(&mu_);
  return cipher_ == nullptr;
}

Result<const crypto::XtsCipher*> OwnedKeySlot::Acquire() {
  MutexLock lock(&mu_);
  if (!cipher_) return KeyUnavailableError(what_ + " is sealed: " + reason_);
  ++in_flight_;
  return cipher_.get();
}

void OwnedKeySlot::Release() {
  MutexLock lock(&mu_);
  if (--in_flight_ == 0) idle_.SignalAll();
}

}  // namespace cmkfs::fs
