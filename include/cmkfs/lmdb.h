// RAII wrapper over LMDB. Environments are opened with MDB_NOTLS so that read
// transactions may be used from any thread of a pool (one thread at a time
// per transaction). Stale reader slots of dead processes are cleared at open.
// A write that hits MDB_MAP_FULL grows the map and is retried by Env::Update.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

typedef struct MDB_env MDB_env;
typedef struct MDB_txn MDB_txn;
typedef struct MDB_cursor MDB_cursor;

namespace cmkfs::lmdb {

class Env;
namespace internal {
class ResizeGate;
}  // namespace internal

using Dbi = unsigned int;

struct EnvOptions {
  unsigned max_dbs = 16;
  unsigned max_readers = 256;
  uint64_t initial_map_size = 64ull << 20;
  // Durability of commits: true = fsync on every commit (default LMDB);
  // false = MDB_NOMETASYNC: a commit flushes its pages but not the meta
  // page, so a crash may undo the transactions committed since the last
  // Env::Sync() (never corrupt the tree); the caller calls Env::Sync() when
  // it needs durability.
  bool sync_on_commit = true;
  // Maximum the map may grow to.
  uint64_t max_map_size = 64ull << 30;
};

class Cursor;

// A transaction. Read transactions are Txn objects from Env::BeginRead;
// write ones from Env::BeginWrite. Aborted on destruction unless committed.
// Not thread-safe: one thread at a time, but it may move between threads.
// While a Txn is live the map cannot grow: keep read transactions short, and
// do not hold one while calling Env::Update on the same Env (a map that must
// grow then waits for it and fails with Busy after a timeout).
// Every method on an ended (committed, aborted, moved-from) Txn returns
// FailedPrecondition.
class Txn {
 public:
  ~Txn();
  Txn(Txn&&) noexcept;
  Txn& operator=(Txn&&) noexcept;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // NotFound if absent. The view is valid until the transaction ends.
  Result<std::string_view> Get(Dbi dbi, std::string_view key) const;
  // Write transactions only.
  Status Put(Dbi dbi, std::string_view key, std::string_view value);
  // NotFound if absent.
  Status Delete(Dbi dbi, std::string_view key);
  Result<Cursor> OpenCursor(Dbi dbi) const;
  // Entries in `dbi` as this transaction sees them (mdb_stat).
  Result<uint64_t> Count(Dbi dbi) const;
  Status Commit();
  void Abort();
  // Read transactions: release the snapshot and take a fresh one, cheaply
  // (mdb_txn_reset + mdb_txn_renew).
  Status Renew();
  bool read_only() const { return read_only_; }
  MDB_txn* native() const { return txn_; }

 private:
  friend class Env;
  Txn(const Env* env, MDB_txn* txn, bool read_only)
      : env_(env), txn_(txn), read_only_(read_only) {}
  Status Check() const;
  // Ends the LMDB transaction (if any) and releases the resize gate.
  void End(bool commit, int* rc);
  const Env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  bool read_only_ = true;
  bool map_full_ = false;  // a put hit MDB_MAP_FULL; Env::Update grows
  // Shared with this txn's cursors of a write txn: false once the txn ended,
  // when LMDB has freed them.
  mutable std::shared_ptr<bool> live_;
};

// Iterates keys in order. Valid for the life of its transaction; it may be
// destroyed after the transaction ended.
class Cursor {
 public:
  ~Cursor();
  Cursor(Cursor&&) noexcept;
  Cursor& operator=(Cursor&&) noexcept;
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  // Positions at the first key >= `key`. Returns false at the end.
  Result<bool> Seek(std::string_view key);
  Result<bool> First();
  Result<bool> Next();
  // Positions at the last key <= `key`. Returns false if none.
  Result<bool> SeekAtOrBefore(std::string_view key);
  std::string_view key() const { return key_; }
  std::string_view value() const { return value_; }
  // Deletes the current entry (write transactions only).
  Status DeleteCurrent();

 private:
  friend class Txn;
  Cursor(MDB_cursor* c, std::shared_ptr<bool> txn_live)
      : cursor_(c), txn_live_(std::move(txn_live)) {}
  Result<bool> Move(int op, std::string_view key);
  void Close();
  MDB_cursor* cursor_ = nullptr;
  std::shared_ptr<bool> txn_live_;  // null for read transactions
  std::string_view key_;
  std::string_view value_;
};

class Env {
 public:
  // Opens (creating if needed, mode 0700) the environment in directory `dir`
  // and clears reader slots left by dead processes. Errors: PermissionDenied,
  // Corruption (not an LMDB environment, or damaged), IOError.
  static Result<std::unique_ptr<Env>> Open(const std::filesystem::path& dir,
                                           const EnvOptions& options);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  // Opens or creates a named database. Call during setup, before concurrent
  // use; the handle is valid for the life of the Env.
  Result<Dbi> OpenDb(std::string_view name);
  // Thread-safe; each returned Txn is used by one thread at a time.
  Result<Txn> BeginRead() const;
  // Only one write transaction exists at a time (LMDB serialises writers,
  // across processes too); BeginWrite blocks until it is free.
  Result<Txn> BeginWrite();
  // Runs `fn` in a write transaction and commits if it returns OK. On
  // MDB_MAP_FULL, doubles the map size (up to max_map_size) and runs `fn`
  // again, so `fn` must not have side effects outside the transaction.
  Status Update(const std::function<Status(Txn&)>& fn);
  // Runs `fn` in a read transaction.
  Status View(const std::function<Status(Txn&)>& fn) const;
  // Flushes committed transactions to disk (needed with sync_on_commit=false).
  Status Sync();
  uint64_t map_size() const;
  const std::filesystem::path& dir() const { return dir_; }
  MDB_env* native() const { return env_; }

 private:
  friend class Txn;
  Env();
  // Doubles the map (capped at max_map_size) unless it is already larger than
  // `seen_size`, the size when the write failed.
  Status Grow(uint64_t seen_size);
  // Adopts a map size grown by another process (MDB_MAP_RESIZED).
  Status AdoptResize() const;
  Status MapError(int rc, std::string_view what) const;
  MDB_env* env_ = nullptr;
  std::filesystem::path dir_;
  EnvOptions options_;
  // Live transactions hold it shared; changing the map size takes it
  // exclusively.
  std::unique_ptr<internal::ResizeGate> gate_;
};

}  // namespace cmkfs::lmdb
