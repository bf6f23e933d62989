// A keystore whose WrapKey calls can be held at a gate: the real keystore
// otherwise. Lets a test stop a re-wrap in the middle, inside the keystore,
// and look at what the engine still allows meanwhile.
#pragma once

#include "cmkfs/forwarding_keystore.h"
#include "cmkfs/mutex.h"

namespace cmkfs::testing {

// Thread-safe. Destroy it only once no call waits at the gate (Release).
class GatedKeyStore : public keystore::ForwardingKeyStore {
 public:
  explicit GatedKeyStore(keystore::KeyStore* base) : ForwardingKeyStore(base) {}

  // From now on every WrapKey waits at the gate until Release.
  void HoldWraps() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    holding_ = true;
  }
  // Lets the waiting calls and every later one through.
  void Release() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    holding_ = false;
    changed_.SignalAll();
  }
  // Blocks until at least `n` WrapKey calls wait at the gate.
  void AwaitWaiting(int n) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (waiting_ < n) changed_.Wait(&mu_);
  }
  int waiting() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return waiting_;
  }

  Result<std::vector<uint8_t>> WrapKey(std::string_view caller,
                                       const keystore::KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) override
      EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      ++waiting_;
      changed_.SignalAll();
      while (holding_) changed_.Wait(&mu_);
      --waiting_;
    }
    return inner().WrapKey(caller, id, plaintext, label, alg);
  }

 private:
  Mutex mu_;
  CondVar changed_;
  bool holding_ GUARDED_BY(mu_) = false;
  int waiting_ GUARDED_BY(mu_) = 0;
};

}  // namespace cmkfs::testing
