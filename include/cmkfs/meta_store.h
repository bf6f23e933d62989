// The metadata store: ordered key/value tables with transactions, the only
// way the disk engine reaches its metadata. core/lmdb_meta_store.cc provides
// it on LMDB; tests wrap it to inject power cuts (tests/support); another
// backend (a distributed store) can provide its own.
//
// Durability: Commit makes a write transaction visible to later
// transactions; Sync makes every committed transaction durable. A power cut
// may drop any transaction committed after the last successful Sync (never
// part of one: a transaction is atomic). An implementation may be more
// durable (sync at every commit), never less.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs {

// A table handle from MetaStore::OpenTable, valid for the life of the store.
using MetaTable = unsigned;

// Walks the keys of one table in byte order. Valid until its transaction
// ends; it may be destroyed after. Not thread-safe (one thread at a time).
// Errors: FailedPrecondition once the transaction ended, Corruption, IOError.
class MetaCursor {
 public:
  virtual ~MetaCursor() = default;
  // Positions at the first key >= `key` ("" = the first key); false if none.
  virtual Result<bool> Seek(std::string_view key) = 0;
  virtual Result<bool> First() = 0;
  virtual Result<bool> Next() = 0;
  // The current entry; views valid until the cursor moves or the transaction
  // ends. Empty when the last move returned false.
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
};

// A transaction: a consistent snapshot (read) or the single writer (write).
// Aborted on destruction unless committed. Not thread-safe, but it may move
// between threads. Every method on an ended transaction returns
// FailedPrecondition. Views returned by Get stay valid until the
// transaction ends.
class MetaTxn {
 public:
  virtual ~MetaTxn() = default;
  // NotFound if absent.
  virtual Result<std::string_view> Get(MetaTable table,
                                       std::string_view key) const = 0;
  // Write transactions only (FailedPrecondition otherwise). Keys are
  // non-empty. NoSpace when the store is full.
  virtual Status Put(MetaTable table, std::string_view key,
                     std::string_view value) = 0;
  // NotFound if absent; write transactions only.
  virtual Status Delete(MetaTable table, std::string_view key) = 0;
  // A cursor over `table` (prefix and range scans: Seek, then Next while the
  // key matches). The transaction may be written while the cursor lives;
  // after a write, Seek again before reading the cursor.
  virtual Result<std::unique_ptr<MetaCursor>> Scan(MetaTable table) const = 0;
  // Number of entries in `table` as this transaction sees it (its own
  // uncommitted writes included).
  virtual Result<uint64_t> Count(MetaTable table) const = 0;
  // Visible to later transactions, durable after the next MetaStore::Sync.
  // The transaction has ended whatever the result. NoSpace (the store is
  // full; Update grows it and retries), IOError.
  virtual Status Commit() = 0;
  virtual void Abort() = 0;
  virtual bool read_only() const = 0;
};

class MetaStore {
 public:
  virtual ~MetaStore() = default;
  // Opens or creates a table. Call during setup, before concurrent use.
  // NoSpace, IOError.
  virtual Result<MetaTable> OpenTable(std::string_view name) = 0;
  // A snapshot of the committed state; the caller owns the transaction and
  // ends it before destroying the store. Thread-safe; many read
  // transactions may live at once. Busy when every reader slot is taken.
  virtual Result<std::unique_ptr<MetaTxn>> BeginRead() const = 0;
  // Owned by the caller, like BeginRead's. Thread-safe; blocks while another
  // write transaction lives (one writer).
  virtual Result<std::unique_ptr<MetaTxn>> BeginWrite() = 0;
  // Runs `fn` in a write transaction and commits it if `fn` returns OK
  // (otherwise aborts and returns its error). `fn` may run more than once
  // (the store grows and retries when full), so it must have no effect
  // outside the transaction. Thread-safe.
  virtual Status Update(const std::function<Status(MetaTxn&)>& fn) = 0;
  // Runs `fn` in a read transaction. Thread-safe.
  virtual Status View(const std::function<Status(MetaTxn&)>& fn) const = 0;
  // Makes every committed transaction durable. IOError, NoSpace.
  // Thread-safe.
  virtual Status Sync() = 0;
};

struct LmdbMetaStoreOptions {
  unsigned max_tables = 16;
  // true: every Commit is durable at once (LMDB's default). false
  // (MDB_NOMETASYNC): durable at Sync only; a crash before it undoes whole
  // transactions, never part of one.
  bool sync_on_commit = true;
};

// The LMDB store in directory `dir` (created 0700 if missing). Errors:
// PermissionDenied, Corruption (not an LMDB environment), IOError.
Result<std::unique_ptr<MetaStore>> OpenLmdbMetaStore(
    const std::filesystem::path& dir, const LmdbMetaStoreOptions& options);

}  // namespace cmkfs
