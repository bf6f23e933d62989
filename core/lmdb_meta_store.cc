// MetaStore on the LMDB wrapper: one named database per table.
#include <optional>

#include "cmkfs/lmdb.h"
#include "cmkfs/meta_store.h"

namespace cmkfs {
namespace {

class LmdbCursor : public MetaCursor {
 public:
  explicit LmdbCursor(lmdb::Cursor c) : c_(std::move(c)) {}
  Result<bool> Seek(std::string_view key) override { return c_.Seek(key); }
  Result<bool> First() override { return c_.First(); }
  Result<bool> Next() override { return c_.Next(); }
  std::string_view key() const override { return c_.key(); }
  std::string_view value() const override { return c_.value(); }

 private:
  lmdb::Cursor c_;
};

// Owns its lmdb::Txn, or borrows the one Env::Update runs.
class LmdbTxn : public MetaTxn {
 public:
  explicit LmdbTxn(lmdb::Txn txn) : owned_(std::move(txn)), txn_(&*owned_) {}
  explicit LmdbTxn(lmdb::Txn* borrowed) : txn_(borrowed) {}

  Result<std::string_view> Get(MetaTable table,
                               std::string_view key) const override {
    return txn_->Get(table, key);
  }
  Status Put(MetaTable table, std::string_view key,
             std::string_view value) override {
    return txn_->Put(table, key, value);
  }
  Status Delete(MetaTable table, std::string_view key) override {
    return txn_->Delete(table, key);
  }
  Result<std::unique_ptr<MetaCursor>> Scan(MetaTable table) const override {
    CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn_->OpenCursor(table));
    return std::unique_ptr<MetaCursor>(new LmdbCursor(std::move(c)));
  }
  Result<uint64_t> Count(MetaTable table) const override {
    return txn_->Count(table);
  }
  Status Commit() override { return txn_->Commit(); }
  void Abort() override { txn_->Abort(); }
  bool read_only() const override { return txn_->read_only(); }

 private:
  std::optional<lmdb::Txn> owned_;
  lmdb::Txn* txn_;
};

class LmdbMetaStore : public MetaStore {
 public:
  explicit LmdbMetaStore(std::unique_ptr<lmdb::Env> env)
      : env_(std::move(env)) {}

  Result<MetaTable> OpenTable(std::string_view name) override {
    return env_->OpenDb(name);
  }
  Result<std::unique_ptr<MetaTxn>> BeginRead() const override {
    CMKFS_ASSIGN_OR_RETURN(lmdb::Txn txn, env_->BeginRead());
    return std::unique_ptr<MetaTxn>(new LmdbTxn(std::move(txn)));
  }
  Result<std::unique_ptr<MetaTxn>> BeginWrite() override {
    CMKFS_ASSIGN_OR_RETURN(lmdb::Txn txn, env_->BeginWrite());
    return std::unique_ptr<MetaTxn>(new LmdbTxn(std::move(txn)));
  }
  Status Update(const std::function<Status(MetaTxn&)>& fn) override {
    return env_->Update([&](lmdb::Txn& txn) {
      LmdbTxn view(&txn);
      return fn(view);
    });
  }
  Status View(const std::function<Status(MetaTxn&)>& fn) const override {
    return env_->View([&](lmdb::Txn& txn) {
      LmdbTxn view(&txn);
      return fn(view);
    });
  }
  Status Sync() override { return env_->Sync(); }

 private:
  std::unique_ptr<lmdb::Env> env_;
};

}  // namespace

Result<std::unique_ptr<MetaStore>> OpenLmdbMetaStore(
    const std::filesystem::path& dir, const LmdbMetaStoreOptions& options) {
  lmdb::EnvOptions eo;
  eo.max_dbs = options.max_tables;
  eo.sync_on_commit = options.sync_on_commit;
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<lmdb::Env> env,
                         lmdb::Env::Open(dir, eo));
  return std::unique_ptr<MetaStore>(new LmdbMetaStore(std::move(env)));
}

}  // namespace cmkfs
