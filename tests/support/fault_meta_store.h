// Test double: a MetaStore wrapper whose power cut drops the transactions
// committed since the last successful Sync, over a real store (LMDB).
// Not part of the product.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>

#include "cmkfs/meta_store.h"

namespace cmkfs {

// Passes everything through to `base` and remembers, for every key written
// by a transaction committed since the last successful Sync, the value it
// had at that Sync. Crash() cuts power: every operation then fails with
// IOError (commits in flight are refused) until Recover(), which rolls the
// base back to the last synced state (or keeps it: the page cache happened
// to reach the disk) and works again. Thread-safe.
class FaultInjectingMetaStore : public MetaStore {
 public:
  explicit FaultInjectingMetaStore(std::shared_ptr<MetaStore> base);
  ~FaultInjectingMetaStore() override;

  Result<MetaTable> OpenTable(std::string_view name) override;
  Result<std::unique_ptr<MetaTxn>> BeginRead() const override;
  Result<std::unique_ptr<MetaTxn>> BeginWrite() override;
  Status Update(const std::function<Status(MetaTxn&)>& fn) override;
  Status View(const std::function<Status(MetaTxn&)>& fn) const override;
  Status Sync() override;

  // Power cut. `keep_unsynced`: the unsynced commits happen to survive
  // (written back before the cut); false: all of them are lost.
  void Crash(bool keep_unsynced = false);
  // Applies what the cut did to the base store; I/O works again. Errors of
  // the base store (the rollback is one transaction, then synced).
  Status Recover();
  // Called at the start of every Sync, outside the store's locks, before
  // the sync runs (a hook that calls Crash() cuts power at that sync point).
  void SetSyncHook(std::function<void()> hook);
  // Transactions committed since the last successful Sync.
  uint64_t unsynced_commits() const;

  // Internal: the value of each key at the last Sync (nullopt: absent).
  using Undo =
      std::map<std::pair<MetaTable, std::string>, std::optional<std::string>>;
  class Txn;

 private:
  friend class Txn;
  Status CheckUp() const;
  // After `undo`'s transaction committed in the base: keep the oldest value
  // of each key.
  void Committed(Undo undo);

  std::shared_ptr<MetaStore> base_;
  // Held shared from a base commit to Committed(), exclusive by Sync: a
  // Sync never clears the undo of a commit it did not make durable.
  mutable std::shared_mutex commit_gate_;
  mutable std::mutex mu_;
  bool crashed_ = false;             // mu_
  bool keep_unsynced_ = false;       // mu_
  Undo undo_;                        // mu_
  uint64_t unsynced_ = 0;            // mu_
  std::function<void()> sync_hook_;  // mu_
};

}  // namespace cmkfs
