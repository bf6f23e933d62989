// A keystore wrapper for the watcher tests: forwards to a real keystore and
// injects the faults named below.
#pragma once

#include <atomic>
#include <optional>

#include "support/forwarding_keystore.h"

namespace cmkfs::fs::testing {

// Fault injection: the real keystore, except that
// - with fail_checks, CheckUsable answers the way the keystore does when its
//   read transaction fails;
// - with frozen_counter, ChangeCounter keeps answering the value it had when
//   frozen (a change the watcher missed, e.g. while a DES was being edited).
class FaultyKeyStore : public cmkfs::testing::ForwardingKeyStore {
 public:
  explicit FaultyKeyStore(keystore::KeyStore* base)
      : ForwardingKeyStore(base) {}
  std::atomic<bool> fail_checks{false};
  std::optional<uint64_t> frozen_counter;  // set before the watcher polls

  Result<uint64_t> ChangeCounter() override {
    if (frozen_counter) return *frozen_counter;
    return base_->ChangeCounter();
  }
  std::vector<Status> CheckUsable(
      std::span<const keystore::UsabilityQuery> queries) override {
    if (!fail_checks) return base_->CheckUsable(queries);
    return std::vector<Status>(
        queries.size(),
        IOError("keystore unreadable: lmdb environment "
                "vault: begin read transaction: "
                "MDB_READERS_FULL: Environment maxreaders limit "
                "reached"));
  }
};

}  // namespace cmkfs::fs::testing
