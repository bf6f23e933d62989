#include "cmkfs/lmdb.h"

#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>

#include "cmkfs/mutex.h"
#include "cmkfs/path_guard.h"

namespace cmkfs::lmdb {
namespace internal {

// A reader/writer gate with writer preference: once a map resize waits, new
// transactions wait behind it, so a steady stream of readers cannot starve it.
// Unlike std::shared_mutex, a shared hold may be released by another thread
// than the one that took it (transactions move between threads, MDB_NOTLS).
class ResizeGate {
 public:
  void LockShared() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (exclusive_ || exclusive_waiters_ != 0) cv_.Wait(&mu_);
    ++shared_;
  }

  void UnlockShared() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (--shared_ == 0) cv_.SignalAll();
  }

  // False if transactions stayed live for `timeout`.
  bool LockExclusiveFor(std::chrono::milliseconds timeout) EXCLUDES(mu_) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    MutexLock lock(&mu_);
    ++exclusive_waiters_;
    bool acquired = true;
    while (exclusive_ || shared_ != 0) {
      if (!cv_.WaitUntil(&mu_, deadline)) {
        acquired = !exclusive_ && shared_ == 0;
        break;
      }
    }
    --exclusive_waiters_;
    if (acquired) {
      exclusive_ = true;
    } else {
      cv_.SignalAll();  // readers held back by this waiter may go on
    }
    return acquired;
  }

  void UnlockExclusive() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    exclusive_ = false;
    cv_.SignalAll();
  }

 private:
  Mutex mu_;
  CondVar cv_;
  int shared_ GUARDED_BY(mu_) = 0;
  int exclusive_waiters_ GUARDED_BY(mu_) = 0;
  bool exclusive_ GUARDED_BY(mu_) = false;
};

}  // namespace internal

namespace {

// How long a map resize waits for live transactions of this process to end.
constexpr std::chrono::milliseconds kResizeWait = std::chrono::seconds(10);

MDB_val ToVal(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view FromVal(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

Status MapLmdbError(int rc, std::string_view what,
                    const std::filesystem::path& dir) {
  std::string where =
      dir.empty() ? std::string("lmdb") : "lmdb environment " + dir.string();
  std::string m = where + ": " + std::string(what) + ": " + mdb_strerror(rc);
  switch (rc) {
    case MDB_NOTFOUND:
      return NotFoundError(std::move(m));
    case MDB_MAP_FULL:
      return NoSpaceError(std::move(m));
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return CorruptionError(std::move(m));
    case MDB_READERS_FULL:
      return BusyError(m + " (raise max_readers or end read transactions)");
    case EACCES:
    case EPERM:
      return PermissionDeniedError(std::move(m));
    case ENOSPC:
    case EDQUOT:
      return NoSpaceError(std::move(m));
    default:
      return IOError(std::move(m));
  }
}

Status EndedError() {
  return FailedPreconditionError(
      "lmdb: the transaction already ended (committed, aborted or moved)");
}

}  // namespace

// ---- Txn ----

Txn::~Txn() { Abort(); }

Txn::Txn(Txn&& other) noexcept
    : env_(other.env_),
      txn_(std::exchange(other.txn_, nullptr)),
      read_only_(other.read_only_),
      map_full_(other.map_full_),
      live_(std::move(other.live_)) {}

Txn& Txn::operator=(Txn&& other) noexcept {
  if (this != &other) {
    Abort();
    env_ = other.env_;
    txn_ = std::exchange(other.txn_, nullptr);
    read_only_ = other.read_only_;
    map_full_ = other.map_full_;
    live_ = std::move(other.live_);
  }
  return *this;
}

Status Txn::Check() const { return txn_ == nullptr ? EndedError() : Status(); }

void Txn::End(bool commit, int* rc) {
  if (txn_ == nullptr) return;
  if (commit) {
    *rc = mdb_txn_commit(txn_);
  } else {
    mdb_txn_abort(txn_);
  }
  txn_ = nullptr;
  if (live_) {
    *live_ = false;
    live_.reset();
  }
  env_->gate_->UnlockShared();
}

Result<std::string_view> Txn::Get(Dbi dbi, std::string_view key) const {
  CMKFS_RETURN_IF_ERROR(Check());
  MDB_val k = ToVal(key);
  MDB_val v;
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return NotFoundError("lmdb: key not found");
  if (rc != 0) return env_->MapError(rc, "get");
  return FromVal(v);
}

Status Txn::Put(Dbi dbi, std::string_view key, std::string_view value) {
  CMKFS_RETURN_IF_ERROR(Check());
  if (read_only_) {
    return FailedPreconditionError("lmdb: put in a read-only transaction");
  }
  MDB_val k = ToVal(key);
  MDB_val v = ToVal(value);
  int rc = mdb_put(txn_, dbi, &k, &v, 0);
  if (rc == MDB_MAP_FULL) map_full_ = true;
  if (rc != 0) return env_->MapError(rc, "put");
  return Status::Ok();
}

Status Txn::Delete(Dbi dbi, std::string_view key) {
  CMKFS_RETURN_IF_ERROR(Check());
  if (read_only_) {
    return FailedPreconditionError("lmdb: delete in a read-only transaction");
  }
  MDB_val k = ToVal(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return NotFoundError("lmdb: key not found");
  if (rc == MDB_MAP_FULL) map_full_ = true;
  if (rc != 0) return env_->MapError(rc, "delete");
  return Status::Ok();
}

Result<Cursor> Txn::OpenCursor(Dbi dbi) const {
  CMKFS_RETURN_IF_ERROR(Check());
  MDB_cursor* c = nullptr;
  int rc = mdb_cursor_open(txn_, dbi, &c);
  if (rc != 0) return env_->MapError(rc, "open cursor");
  if (read_only_) return Cursor(c, nullptr);
  if (!live_) live_ = std::make_shared<bool>(true);
  return Cursor(c, live_);
}

Result<uint64_t> Txn::Count(Dbi dbi) const {
  CMKFS_RETURN_IF_ERROR(Check());
  MDB_stat st{};
  int rc = mdb_stat(txn_, dbi, &st);
  if (rc != 0) return env_->MapError(rc, "stat");
  return static_cast<uint64_t>(st.ms_entries);
}

Status Txn::Commit() {
  CMKFS_RETURN_IF_ERROR(Check());
  int rc = 0;
  End(/*commit=*/true, &rc);
  if (rc == MDB_MAP_FULL) map_full_ = true;
  if (rc != 0) return env_->MapError(rc, "commit");
  return Status::Ok();
}

void Txn::Abort() {
  int rc = 0;
  End(/*commit=*/false, &rc);
}

Status Txn::Renew() {
  CMKFS_RETURN_IF_ERROR(Check());
  if (!read_only_) {
    return FailedPreconditionError("lmdb: Renew on a write transaction");
  }
  internal::ResizeGate& gate = *env_->gate_;
  mdb_txn_reset(txn_);
  // Between reset and renew the snapshot is released: let a resize through.
  gate.UnlockShared();
  gate.LockShared();
  int rc = mdb_txn_renew(txn_);
  if (rc == MDB_MAP_RESIZED) {
    gate.UnlockShared();
    Status adopted = env_->AdoptResize();
    gate.LockShared();
    rc = adopted.ok() ? mdb_txn_renew(txn_) : MDB_MAP_RESIZED;
  }
  if (rc != 0) {
    Status s = env_->MapError(rc, "renew read transaction");
    Abort();
    return s;
  }
  return Status::Ok();
}

// ---- Cursor ----

Cursor::~Cursor() { Close(); }

Cursor::Cursor(Cursor&& other) noexcept
    : cursor_(std::exchange(other.cursor_, nullptr)),
      txn_live_(std::move(other.txn_live_)),
      key_(other.key_),
      value_(other.value_) {}

Cursor& Cursor::operator=(Cursor&& other) noexcept {
  if (this != &other) {
    Close();
    cursor_ = std::exchange(other.cursor_, nullptr);
    txn_live_ = std::move(other.txn_live_);
    key_ = other.key_;
    value_ = other.value_;
  }
  return *this;
}

void Cursor::Close() {
  // LMDB frees the cursors of a write transaction when it ends.
  if (cursor_ != nullptr && (!txn_live_ || *txn_live_)) {
    mdb_cursor_close(cursor_);
  }
  cursor_ = nullptr;
  txn_live_.reset();
}

Result<bool> Cursor::Move(int op, std::string_view key) {
  if (cursor_ == nullptr || (txn_live_ && !*txn_live_)) return EndedError();
  MDB_val k = ToVal(key);
  MDB_val v{0, nullptr};
  int rc = mdb_cursor_get(cursor_, &k, &v, static_cast<MDB_cursor_op>(op));
  if (rc == MDB_NOTFOUND) {
    key_ = {};
    value_ = {};
    return false;
  }
  if (rc != 0) return MapLmdbError(rc, "cursor", {});
  key_ = FromVal(k);
  value_ = FromVal(v);
  return true;
}

// LMDB refuses empty keys, so none is stored and "" sorts before them all.
Result<bool> Cursor::Seek(std::string_view key) {
  if (key.empty()) return First();
  return Move(MDB_SET_RANGE, key);
}

Result<bool> Cursor::First() { return Move(MDB_FIRST, {}); }

Result<bool> Cursor::Next() { return Move(MDB_NEXT, {}); }

Result<bool> Cursor::SeekAtOrBefore(std::string_view key) {
  if (key.empty()) {
    CMKFS_RETURN_IF_ERROR(Move(MDB_FIRST, {}).status());  // checks the cursor
    key_ = {};
    value_ = {};
    return false;
  }
  CMKFS_ASSIGN_OR_RETURN(bool found, Move(MDB_SET_RANGE, key));
  if (!found) return Move(MDB_LAST, {});
  if (key_ == key) return true;
  return Move(MDB_PREV, {});
}

Status Cursor::DeleteCurrent() {
  if (cursor_ == nullptr || (txn_live_ && !*txn_live_)) return EndedError();
  int rc = mdb_cursor_del(cursor_, 0);
  if (rc != 0) return MapLmdbError(rc, "cursor delete", {});
  key_ = {};
  value_ = {};
  return Status::Ok();
}

// ---- Env ----

Env::Env() : gate_(std::make_unique<internal::ResizeGate>()) {}

Env::~Env() {
  if (env_ != nullptr) mdb_env_close(env_);
}

Status Env::MapError(int rc, std::string_view what) const {
  return MapLmdbError(rc, what, dir_);
}

namespace {

// LMDB opens data.mdb and lock.mdb itself, with O_CREAT and following
// symbolic links: both files (when present) must pass the state-directory
// rule before it does, and the files it opened after. The directory passed
// MakePrivateDir.
Status CheckEnvFiles(const std::filesystem::path& dir) {
  for (const std::filesystem::path& p : {dir / "data.mdb", dir / "lock.mdb"}) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoError("stat " + p.string(), errno);
    }
    CMKFS_RETURN_IF_ERROR(path_guard::CheckEntry(st, p));
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Env>> Env::Open(const std::filesystem::path& dir,
                                       const EnvOptions& options) {
  if (options.max_map_size < options.initial_map_size) {
    return InvalidArgumentError("lmdb environment " + dir.string() +
                                ": max_map_size is below initial_map_size");
  }
  CMKFS_RETURN_IF_ERROR(path_guard::MakePrivateDir(dir));  // 0700 if missing
  CMKFS_RETURN_IF_ERROR(CheckEnvFiles(dir));
  std::unique_ptr<Env> env(new Env());
  env->dir_ = dir;
  env->options_ = options;
  int rc = mdb_env_create(&env->env_);
  if (rc != 0) return env->MapError(rc, "create");
  if ((rc = mdb_env_set_maxdbs(env->env_, options.max_dbs)) != 0 ||
      (rc = mdb_env_set_maxreaders(env->env_, options.max_readers)) != 0 ||
      (rc = mdb_env_set_mapsize(env->env_, options.initial_map_size)) != 0) {
    return env->MapError(rc, "configure");
  }
  unsigned flags = MDB_NOTLS;
  // MDB_NOMETASYNC, not MDB_NOSYNC: a commit still flushes its data pages
  // before it writes the meta page, so a power cut before the next Sync
  // undoes whole transactions and never corrupts the tree (with MDB_NOSYNC
  // the meta page may reach the disk before the pages it points to).
  if (!options.sync_on_commit) flags |= MDB_NOMETASYNC;
  rc = mdb_env_open(env->env_, dir.c_str(), flags, 0600);
  if (rc != 0) return env->MapError(rc, "open");
  mdb_filehandle_t data_fd = -1;
  if (mdb_env_get_fd(env->env_, &data_fd) == 0 && data_fd >= 0) {
    CMKFS_RETURN_IF_ERROR(path_guard::CheckOpenFile(data_fd, dir / "data.mdb"));
  }
  CMKFS_RETURN_IF_ERROR(CheckEnvFiles(dir));
  int dead = 0;
  rc = mdb_reader_check(env->env_, &dead);
  if (rc != 0) return env->MapError(rc, "check stale readers");
  if (dead > 0) {
    spdlog::info("lmdb {}: cleared {} reader slot(s) of dead processes",
                 dir.string(), dead);
  }
  return env;
}

Result<Dbi> Env::OpenDb(std::string_view name) {
  std::string owned_name(name);
  Dbi dbi = 0;
  Status s = Update([&](Txn& txn) -> Status {
    int rc = mdb_dbi_open(txn.native(),
                          owned_name.empty() ? nullptr : owned_name.c_str(),
                          MDB_CREATE, &dbi);
    if (rc == MDB_MAP_FULL) txn.map_full_ = true;
    if (rc != 0) return MapError(rc, "open database '" + owned_name + "'");
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return dbi;
}

Result<Txn> Env::BeginRead() const {
  for (;;) {
    gate_->LockShared();
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc == 0) return Txn(this, txn, /*read_only=*/true);
    gate_->UnlockShared();
    if (rc != MDB_MAP_RESIZED) return MapError(rc, "begin read transaction");
    CMKFS_RETURN_IF_ERROR(AdoptResize());
  }
}

Result<Txn> Env::BeginWrite() {
  for (;;) {
    gate_->LockShared();
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc == 0) return Txn(this, txn, /*read_only=*/false);
    gate_->UnlockShared();
    if (rc != MDB_MAP_RESIZED) return MapError(rc, "begin write transaction");
    CMKFS_RETURN_IF_ERROR(AdoptResize());
  }
}

Status Env::Update(const std::function<Status(Txn&)>& fn) {
  for (;;) {
    uint64_t seen_size = map_size();
    CMKFS_ASSIGN_OR_RETURN(Txn txn, BeginWrite());
    Status s = fn(txn);
    if (txn.map_full_) {
      txn.Abort();
      CMKFS_RETURN_IF_ERROR(Grow(seen_size));
      continue;
    }
    if (!s.ok()) return s;
    if (txn.native() == nullptr) {
      return FailedPreconditionError(
          "lmdb: the function given to Update ended its transaction");
    }
    s = txn.Commit();
    if (txn.map_full_) {
      CMKFS_RETURN_IF_ERROR(Grow(seen_size));
      continue;
    }
    return s;
  }
}

Status Env::View(const std::function<Status(Txn&)>& fn) const {
  CMKFS_ASSIGN_OR_RETURN(Txn txn, BeginRead());
  return fn(txn);
}

Status Env::Sync() {
  int rc = mdb_env_sync(env_, 1);
  if (rc != 0) return MapError(rc, "sync");
  return Status::Ok();
}

uint64_t Env::map_size() const {
  gate_->LockShared();
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  gate_->UnlockShared();
  return info.me_mapsize;
}

Status Env::Grow(uint64_t seen_size) {
  if (!gate_->LockExclusiveFor(kResizeWait)) {
    return BusyError("lmdb environment " + dir_.string() +
                     ": the map is full and cannot grow while transactions "
                     "of this process stay open");
  }
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  uint64_t current = info.me_mapsize;
  if (current > seen_size) {  // another writer grew it meanwhile
    gate_->UnlockExclusive();
    return Status::Ok();
  }
  if (current >= options_.max_map_size) {
    gate_->UnlockExclusive();
    return NoSpaceError("lmdb environment " + dir_.string() +
                        ": the map is full at its maximum size of " +
                        std::to_string(options_.max_map_size) + " bytes");
  }
  uint64_t next = std::min(current * 2, options_.max_map_size);
  int rc = mdb_env_set_mapsize(env_, next);
  gate_->UnlockExclusive();
  if (rc != 0) return MapError(rc, "grow map");
  spdlog::debug("lmdb {}: map grown from {} to {} bytes", dir_.string(),
                current, next);
  return Status::Ok();
}

Status Env::AdoptResize() const {
  if (!gate_->LockExclusiveFor(kResizeWait)) {
    return BusyError("lmdb environment " + dir_.string() +
                     ": another process grew the map and transactions of "
                     "this process stay open");
  }
  int rc = mdb_env_set_mapsize(env_, 0);
  gate_->UnlockExclusive();
  if (rc != 0) return MapError(rc, "adopt map size");
  return Status::Ok();
}

}  // namespace cmkfs::lmdb
