#include "support/fault_meta_store.h"

namespace cmkfs {
namespace {

Status CrashedError(std::string_view what) {
  return IOError("simulated power cut: metadata " + std::string(what) +
                 " refused");
}

}  // namespace

// Wraps a base transaction (owned, or borrowed from the base's Update) and
// records the value each key had before this transaction first wrote it.
class FaultInjectingMetaStore::Txn : public MetaTxn {
 public:
  Txn(const FaultInjectingMetaStore* store, std::unique_ptr<MetaTxn> owned)
      : store_(store), owned_(std::move(owned)), base_(owned_.get()) {}
  Txn(const FaultInjectingMetaStore* store, MetaTxn* borrowed)
      : store_(store), base_(borrowed) {}

  Result<std::string_view> Get(MetaTable table,
                               std::string_view key) const override {
    CMKFS_RETURN_IF_ERROR(store_->CheckUp());
    return base_->Get(table, key);
  }
  Status Put(MetaTable table, std::string_view key,
             std::string_view value) override {
    CMKFS_RETURN_IF_ERROR(store_->CheckUp());
    CMKFS_RETURN_IF_ERROR(Remember(table, key));
    return base_->Put(table, key, value);
  }
  Status Delete(MetaTable table, std::string_view key) override {
    CMKFS_RETURN_IF_ERROR(store_->CheckUp());
    CMKFS_RETURN_IF_ERROR(Remember(table, key));
    return base_->Delete(table, key);
  }
  Result<std::unique_ptr<MetaCursor>> Scan(MetaTable table) const override {
    CMKFS_RETURN_IF_ERROR(store_->CheckUp());
    return base_->Scan(table);
  }
  Result<uint64_t> Count(MetaTable table) const override {
    CMKFS_RETURN_IF_ERROR(store_->CheckUp());
    return base_->Count(table);
  }
  // Explicit write transactions (BeginWrite) only; Update commits itself.
  Status Commit() override {
    if (Status up = store_->CheckUp(); !up.ok()) {
      base_->Abort();
      return up;
    }
    auto* store = const_cast<FaultInjectingMetaStore*>(store_);
    std::shared_lock gate(store->commit_gate_);
    CMKFS_RETURN_IF_ERROR(base_->Commit());
    if (!base_->read_only()) store->Committed(TakeUndo());
    return Status::Ok();
  }
  void Abort() override { base_->Abort(); }
  bool read_only() const override { return base_->read_only(); }

  Undo TakeUndo() { return std::move(undo_); }

 private:
  Status Remember(MetaTable table, std::string_view key) {
    auto id = std::make_pair(table, std::string(key));
    if (undo_.contains(id)) return Status::Ok();
    auto old = base_->Get(table, key);
    if (old.ok()) {
      undo_.emplace(std::move(id), std::string(*old));
    } else if (old.status().kind() == ErrorKind::kNotFound) {
      undo_.emplace(std::move(id), std::nullopt);
    } else {
      return old.status();
    }
    return Status::Ok();
  }

  const FaultInjectingMetaStore* store_;
  std::unique_ptr<MetaTxn> owned_;
  MetaTxn* base_;
  Undo undo_;
};

FaultInjectingMetaStore::FaultInjectingMetaStore(
    std::shared_ptr<MetaStore> base)
    : base_(std::move(base)) {}
FaultInjectingMetaStore::~FaultInjectingMetaStore() = default;

Status FaultInjectingMetaStore::CheckUp() const {
  std::lock_guard lock(mu_);
  return crashed_ ? CrashedError("access") : Status::Ok();
}

Result<MetaTable> FaultInjectingMetaStore::OpenTable(std::string_view name) {
  CMKFS_RETURN_IF_ERROR(CheckUp());
  return base_->OpenTable(name);
}

Result<std::unique_ptr<MetaTxn>> FaultInjectingMetaStore::BeginRead() const {
  CMKFS_RETURN_IF_ERROR(CheckUp());
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<MetaTxn> txn, base_->BeginRead());
  return std::unique_ptr<MetaTxn>(new Txn(this, std::move(txn)));
}

Result<std::unique_ptr<MetaTxn>> FaultInjectingMetaStore::BeginWrite() {
  CMKFS_RETURN_IF_ERROR(CheckUp());
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<MetaTxn> txn, base_->BeginWrite());
  return std::unique_ptr<MetaTxn>(new Txn(this, std::move(txn)));
}

Status FaultInjectingMetaStore::Update(
    const std::function<Status(MetaTxn&)>& fn) {
  std::shared_lock gate(commit_gate_);
  Undo undo;
  Status st = base_->Update([&](MetaTxn& base_txn) -> Status {
    Txn txn(this, &base_txn);
    Status s = fn(txn);
    undo = txn.TakeUndo();      // of the last attempt, the one committed
    if (s.ok()) s = CheckUp();  // a cut before the commit loses it
    return s;
  });
  if (st.ok()) Committed(std::move(undo));
  return st;
}

Status FaultInjectingMetaStore::View(
    const std::function<Status(MetaTxn&)>& fn) const {
  CMKFS_RETURN_IF_ERROR(CheckUp());
  return base_->View([&](MetaTxn& base_txn) {
    Txn txn(this, &base_txn);
    return fn(txn);
  });
}

void FaultInjectingMetaStore::Committed(Undo undo) {
  std::lock_guard lock(mu_);
  for (auto& [id, old] : undo) undo_.try_emplace(id, std::move(old));
  ++unsynced_;
}

Status FaultInjectingMetaStore::Sync() {
  std::function<void()> hook;
  {
    std::lock_guard lock(mu_);
    hook = sync_hook_;
  }
  if (hook) hook();
  std::unique_lock gate(commit_gate_);
  CMKFS_RETURN_IF_ERROR(CheckUp());
  CMKFS_RETURN_IF_ERROR(base_->Sync());
  std::lock_guard lock(mu_);
  undo_.clear();
  unsynced_ = 0;
  return Status::Ok();
}

void FaultInjectingMetaStore::Crash(bool keep_unsynced) {
  std::lock_guard lock(mu_);
  if (crashed_) return;
  crashed_ = true;
  keep_unsynced_ = keep_unsynced;
}

Status FaultInjectingMetaStore::Recover() {
  std::unique_lock gate(commit_gate_);
  Undo undo;
  bool keep;
  {
    std::lock_guard lock(mu_);
    if (!crashed_) return Status::Ok();
    undo.swap(undo_);
    keep = keep_unsynced_;
  }
  if (!keep && !undo.empty()) {
    CMKFS_RETURN_IF_ERROR(base_->Update([&](MetaTxn& txn) -> Status {
      for (const auto& [id, old] : undo) {
        if (old) {
          CMKFS_RETURN_IF_ERROR(txn.Put(id.first, id.second, *old));
        } else {
          Status st = txn.Delete(id.first, id.second);
          if (!st.ok() && st.kind() != ErrorKind::kNotFound) return st;
        }
      }
      return Status::Ok();
    }));
  }
  CMKFS_RETURN_IF_ERROR(base_->Sync());
  std::lock_guard lock(mu_);
  crashed_ = false;
  unsynced_ = 0;
  return Status::Ok();
}

void FaultInjectingMetaStore::SetSyncHook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  sync_hook_ = std::move(hook);
}

uint64_t FaultInjectingMetaStore::unsynced_commits() const {
  std::lock_guard lock(mu_);
  return unsynced_;
}

}  // namespace cmkfs
