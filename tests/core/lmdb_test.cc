#include "cmkfs/lmdb.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cmkfs/record.h"

namespace cmkfs::lmdb {
namespace {

namespace fs = std::filesystem;

class LmdbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cmkfs-lmdb-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ / "env";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<Env> OpenEnv(EnvOptions options = {}) {
    Result<std::unique_ptr<Env>> env = Env::Open(dir_, options);
    EXPECT_TRUE(env.ok()) << env.status().ToString();
    return env.ok() ? std::move(env).value() : nullptr;
  }

  fs::path root_;
  fs::path dir_;
};

std::string ValueOf(const Env& env, Dbi dbi, std::string_view key) {
  std::string out = "<missing>";
  Status s = env.View([&](Txn& txn) -> Status {
    CMKFS_ASSIGN_OR_RETURN(std::string_view v, txn.Get(dbi, key));
    out = std::string(v);
    return Status::Ok();
  });
  return out;
}

TEST_F(LmdbTest, OpenCreatesAPrivateDirectory) {
  auto env = OpenEnv();
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(fs::status(dir_).permissions() & fs::perms::all,
            fs::perms::owner_all);
  EXPECT_EQ(fs::status(dir_ / "data.mdb").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(env->dir(), dir_);
}

TEST_F(LmdbTest, OpenOfAFileThatIsNotAnEnvironmentIsCorruption) {
  fs::create_directories(dir_);
  {
    FILE* f = fopen((dir_ / "data.mdb").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::string junk(64 * 1024, 'x');
    fwrite(junk.data(), 1, junk.size(), f);
    fclose(f);
  }
  Result<std::unique_ptr<Env>> env = Env::Open(dir_, {});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().kind(), ErrorKind::kCorruption);
  EXPECT_NE(env.status().message().find(dir_.string()), std::string::npos)
      << env.status().message();
}

TEST_F(LmdbTest, PutGetDelete) {
  auto env = OpenEnv();
  Result<Dbi> dbi = env->OpenDb("things");
  ASSERT_TRUE(dbi.ok()) << dbi.status().ToString();
  ASSERT_TRUE(env->Update([&](Txn& txn) {
                   CMKFS_RETURN_IF_ERROR(txn.Put(*dbi, "a", "1"));
                   return txn.Put(*dbi, "b", std::string("\0two", 4));
                 })
                  .ok());
  EXPECT_EQ(ValueOf(*env, *dbi, "a"), "1");
  EXPECT_EQ(ValueOf(*env, *dbi, "b"), std::string("\0two", 4));

  Result<Txn> read = env->BeginRead();
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->Get(*dbi, "zzz").status().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(read->Put(*dbi, "c", "3").kind(), ErrorKind::kFailedPrecondition);
  read->Abort();
  EXPECT_EQ(read->Get(*dbi, "a").status().kind(),
            ErrorKind::kFailedPrecondition);

  Status s = env->Update([&](Txn& txn) {
    CMKFS_RETURN_IF_ERROR(txn.Delete(*dbi, "a"));
    return txn.Delete(*dbi, "a");
  });
  EXPECT_EQ(s.kind(), ErrorKind::kNotFound);
  EXPECT_EQ(ValueOf(*env, *dbi, "a"), "1") << "a failed Update must not commit";
  ASSERT_TRUE(
      env->Update([&](Txn& txn) { return txn.Delete(*dbi, "a"); }).ok());
  EXPECT_EQ(ValueOf(*env, *dbi, "a"), "<missing>");
}

TEST_F(LmdbTest, DataSurvivesReopen) {
  {
    auto env = OpenEnv({.sync_on_commit = false});
    Dbi dbi = *env->OpenDb("d");
    ASSERT_TRUE(env->Update([&](Txn& t) { return t.Put(dbi, "k", "v"); }).ok());
    ASSERT_TRUE(env->Sync().ok());
  }
  auto env = OpenEnv();
  Dbi dbi = *env->OpenDb("d");
  EXPECT_EQ(ValueOf(*env, dbi, "k"), "v");
}

TEST_F(LmdbTest, UncommittedWriteTxnIsAbortedOnDestruction) {
  auto env = OpenEnv();
  Dbi dbi = *env->OpenDb("d");
  {
    Result<Txn> txn = env->BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(txn->Put(dbi, "k", "v").ok());
  }
  EXPECT_EQ(ValueOf(*env, dbi, "k"), "<missing>");
  Result<Txn> txn = env->BeginWrite();
  ASSERT_TRUE(txn->Put(dbi, "k", "v").ok());
  Txn moved = std::move(txn).value();
  ASSERT_TRUE(moved.Commit().ok());
  EXPECT_EQ(moved.Commit().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(ValueOf(*env, dbi, "k"), "v");
}

TEST_F(LmdbTest, CursorIteratesInKeyOrderAndSeeks) {
  auto env = OpenEnv();
  Dbi dbi = *env->OpenDb("ordered");
  ASSERT_TRUE(env->Update([&](Txn& txn) {
                   for (uint64_t k : {50, 10, 40, 20, 30}) {
                     CMKFS_RETURN_IF_ERROR(
                         txn.Put(dbi, EncodeU64Key(k), std::to_string(k)));
                   }
                   return Status::Ok();
                 })
                  .ok());
  Result<Txn> txn = env->BeginRead();
  ASSERT_TRUE(txn.ok());
  Result<Cursor> cur = txn->OpenCursor(dbi);
  ASSERT_TRUE(cur.ok());
  std::vector<std::string> seen;
  for (Result<bool> ok = cur->First(); ok.ok() && *ok; ok = cur->Next()) {
    seen.emplace_back(cur->value());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"10", "20", "30", "40", "50"}));

  auto seek = [&](uint64_t k) -> std::string {
    Result<bool> r = cur->Seek(EncodeU64Key(k));
    EXPECT_TRUE(r.ok());
    return *r ? std::string(cur->value()) : "<end>";
  };
  EXPECT_EQ(seek(0), "10");
  ASSERT_TRUE(*cur->Seek(""));  // the empty key sorts first
  EXPECT_EQ(cur->value(), "10");
  EXPECT_FALSE(*cur->SeekAtOrBefore(""));
  EXPECT_EQ(seek(20), "20");
  EXPECT_EQ(seek(21), "30");
  EXPECT_EQ(seek(51), "<end>");

  auto at_or_before = [&](uint64_t k) -> std::string {
    Result<bool> r = cur->SeekAtOrBefore(EncodeU64Key(k));
    EXPECT_TRUE(r.ok());
    return *r ? std::string(cur->value()) : "<none>";
  };
  EXPECT_EQ(at_or_before(5), "<none>");
  EXPECT_EQ(at_or_before(10), "10");
  EXPECT_EQ(at_or_before(11), "10");
  EXPECT_EQ(at_or_before(39), "30");
  EXPECT_EQ(at_or_before(40), "40");
  EXPECT_EQ(at_or_before(1000), "50");
}

TEST_F(LmdbTest, SeekAtOrBeforeOnAnEmptyDatabase) {
  auto env = OpenEnv();
  Dbi dbi = *env->OpenDb("empty");
  Result<Txn> txn = env->BeginRead();
  Result<Cursor> cur = txn->OpenCursor(dbi);
  ASSERT_TRUE(cur.ok());
  EXPECT_FALSE(*cur->SeekAtOrBefore("k"));
  EXPECT_FALSE(*cur->First());
  EXPECT_FALSE(*cur->Seek(""));
  EXPECT_FALSE(*cur->SeekAtOrBefore(""));
}

TEST_F(LmdbTest, CursorDeleteCurrentWhileIterating) {
  auto env = OpenEnv();
  Dbi dbi = *env->OpenDb("d");
  ASSERT_TRUE(env->Update([&](Txn& txn) {
                   for (uint64_t k = 0; k < 10; ++k) {
                     CMKFS_RETURN_IF_ERROR(txn.Put(dbi, EncodeU64Key(k), "v"));
                   }
                   return Status::Ok();
                 })
                  .ok());
  // Deletes the odd keys; the cursor outlives the committed transaction.
  Result<Txn> txn = env->BeginWrite();
  ASSERT_TRUE(txn.ok());
  Result<Cursor> cur = txn->OpenCursor(dbi);
  ASSERT_TRUE(cur.ok());
  for (Result<bool> ok = cur->First(); ok.ok() && *ok; ok = cur->Next()) {
    if (*DecodeU64Key(cur->key()) % 2 == 1) {
      ASSERT_TRUE(cur->DeleteCurrent().ok());
    }
  }
  ASSERT_TRUE(txn->Commit().ok());
  EXPECT_EQ(cur->Next().status().kind(), ErrorKind::kFailedPrecondition);

  Result<Txn> read = env->BeginRead();
  Result<Cursor> rc = read->OpenCursor(dbi);
  std::vector<uint64_t> left;
  for (Result<bool> ok = rc->First(); ok.ok() && *ok; ok = rc->Next()) {
    left.push_back(*DecodeU64Key(rc->key()));
  }
  EXPECT_EQ(left, (std::vector<uint64_t>{0, 2, 4, 6, 8}));
}

TEST_F(LmdbTest, UpdateGrowsTheMapSeveralTimesAndKeepsAllData) {
  EnvOptions options;
  options.initial_map_size = 256 << 10;
  options.max_map_size = 64 << 20;
  auto env = OpenEnv(options);
  Dbi dbi = *env->OpenDb("big");
  const uint64_t initial = env->map_size();
  const std::string value(1000, 'v');
  // ~8 MB of values: needs at least five doublings from 256 KiB.
  for (uint64_t batch = 0; batch < 80; ++batch) {
    Status s = env->Update([&](Txn& txn) {
      for (uint64_t i = 0; i < 100; ++i) {
        CMKFS_RETURN_IF_ERROR(
            txn.Put(dbi, EncodeU64Key(batch * 100 + i), value));
      }
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << batch << ": " << s.ToString();
  }
  EXPECT_GE(env->map_size(), initial * 32);
  EXPECT_LE(env->map_size(), options.max_map_size);
  Result<Txn> txn = env->BeginRead();
  for (uint64_t k = 0; k < 8000; ++k) {
    Result<std::string_view> v = txn->Get(dbi, EncodeU64Key(k));
    ASSERT_TRUE(v.ok()) << k;
    ASSERT_EQ(*v, value);
  }
}

TEST_F(LmdbTest, GrowthStopsAtMaxMapSizeWithNoSpace) {
  EnvOptions options;
  options.initial_map_size = 256 << 10;
  options.max_map_size = 1 << 20;
  options.sync_on_commit = false;  // speed; durability is not tested here
  auto env = OpenEnv(options);
  Dbi dbi = *env->OpenDb("big");
  const std::string value(1000, 'v');
  Status s;
  uint64_t k = 0;
  for (; k < 5000 && s.ok(); ++k) {
    s = env->Update(
        [&](Txn& txn) { return txn.Put(dbi, EncodeU64Key(k), value); });
  }
  EXPECT_EQ(s.kind(), ErrorKind::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("maximum size of 1048576"), std::string::npos)
      << s.message();
  EXPECT_EQ(env->map_size(), options.max_map_size);
  EXPECT_GT(k, 100u);
  EXPECT_EQ(ValueOf(*env, dbi, EncodeU64Key(0)), value);
}

// One writer keeps keys a and b equal in every transaction while growing the
// map; readers renew their snapshot in a loop and must never see them differ.
TEST_F(LmdbTest, ConcurrentReadersSeeConsistentSnapshotsWhileTheMapGrows) {
  EnvOptions options;
  options.initial_map_size = 128 << 10;
  options.sync_on_commit = false;  // speed; durability is not tested here
  auto env = OpenEnv(options);
  Dbi dbi = *env->OpenDb("pair");
  ASSERT_TRUE(env->Update([&](Txn& txn) {
                   CMKFS_RETURN_IF_ERROR(txn.Put(dbi, "a", EncodeU64Key(0)));
                   return txn.Put(dbi, "b", EncodeU64Key(0));
                 })
                  .ok());
  const uint64_t initial = env->map_size();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::atomic<int> inconsistent{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&] {
      Result<Txn> txn = env->BeginRead();
      if (!txn.ok()) {
        ++errors;
        return;
      }
      while (!stop.load()) {
        Result<std::string_view> a = txn->Get(dbi, "a");
        Result<std::string_view> b = txn->Get(dbi, "b");
        if (!a.ok() || !b.ok()) {
          ++errors;
          return;
        }
        // Not asserted: that `a` never decreases. LMDB may hand a reader a
        // snapshot newer than the txnid it registered (the meta page was
        // reused), so the next snapshot can be one commit older.
        if (*a != *b) {
          ADD_FAILURE() << "a=" << *DecodeU64Key(*a)
                        << " b=" << *DecodeU64Key(*b);
          ++inconsistent;
        }
        ++reads;
        if (!txn->Renew().ok()) {
          ++errors;
          return;
        }
      }
    });
  }
  const std::string filler(2000, 'f');
  // At least 1500 commits (3 MB of filler, so the map grows), and more until
  // the readers have overlapped with plenty of commits.
  for (uint64_t i = 1; i <= 1500 || (reads.load() < 2000 && i < 200000); ++i) {
    Status s = env->Update([&](Txn& txn) {
      CMKFS_RETURN_IF_ERROR(txn.Put(dbi, "a", EncodeU64Key(i)));
      if (i <= 1500) {
        CMKFS_RETURN_IF_ERROR(
            txn.Put(dbi, "filler" + std::to_string(i), filler));
      }
      return txn.Put(dbi, "b", EncodeU64Key(i));
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(inconsistent.load(), 0);
  EXPECT_GE(reads.load(), 2000u);
  EXPECT_GE(env->map_size(), initial * 8) << "the map must have grown";
}

TEST_F(LmdbTest, ReadTxnCreatedOnOneThreadIsUsableOnAnother) {
  auto env = OpenEnv();
  Dbi dbi = *env->OpenDb("d");
  ASSERT_TRUE(env->Update([&](Txn& t) { return t.Put(dbi, "k", "v1"); }).ok());
  Result<Txn> txn = env->BeginRead();
  ASSERT_TRUE(txn.ok());
  // With thread-local reader slots this second txn on the same thread would
  // fail with MDB_BAD_RSLOT.
  Result<Txn> second = env->BeginRead();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_TRUE(env->Update([&](Txn& t) { return t.Put(dbi, "k", "v2"); }).ok());
  std::string seen_before, seen_after;
  std::thread other([&] {
    seen_before = std::string(*txn->Get(dbi, "k"));
    ASSERT_TRUE(txn->Renew().ok());
    seen_after = std::string(*txn->Get(dbi, "k"));
  });
  other.join();
  EXPECT_EQ(seen_before, "v1");
  EXPECT_EQ(seen_after, "v2");
  txn->Abort();
  EXPECT_EQ(*second->Get(dbi, "k"), "v1");
}

// A process that dies inside a read transaction leaves its reader slot
// behind; Env::Open must clear it. A holder process keeps the lock file in
// use so that the reader table is not simply reinitialised.
TEST_F(LmdbTest, OpenClearsStaleReadersOfDeadProcesses) {
  { auto env = OpenEnv(); }  // create the environment, then close it
  int holder_pipe[2];
  ASSERT_EQ(pipe(holder_pipe), 0);
  int ready_pipe[2];
  ASSERT_EQ(pipe(ready_pipe), 0);
  pid_t holder = fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    auto env = Env::Open(dir_, {});
    char c = env.ok() ? 'y' : 'n';
    if (write(ready_pipe[1], &c, 1) != 1) _exit(2);
    if (read(holder_pipe[0], &c, 1) < 0) _exit(2);  // until the parent says
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(ready_pipe[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');

  pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) {
    auto env = Env::Open(dir_, {});
    if (!env.ok()) _exit(2);
    auto txn = (*env)->BeginRead();
    _exit(txn.ok() ? 0 : 3);  // dies holding the reader slot
  }
  int status = 0;
  ASSERT_EQ(waitpid(dead, &status, 0), dead);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);

  auto env = OpenEnv();
  ASSERT_NE(env, nullptr);
  int still_stale = -1;
  ASSERT_EQ(mdb_reader_check(env->native(), &still_stale), 0);
  EXPECT_EQ(still_stale, 0) << "Env::Open should have cleared the slot";
  std::string readers;
  mdb_reader_list(
      env->native(),
      [](const char* msg, void* ctx) {
        *static_cast<std::string*>(ctx) += msg;
        return 0;
      },
      &readers);
  EXPECT_EQ(readers.find(" " + std::to_string(dead) + " "), std::string::npos)
      << readers;

  ASSERT_EQ(write(holder_pipe[1], "x", 1), 1);
  ASSERT_EQ(waitpid(holder, &status, 0), holder);
  close(holder_pipe[0]);
  close(holder_pipe[1]);
  close(ready_pipe[0]);
  close(ready_pipe[1]);
}

TEST_F(LmdbTest, OtherProcessGrowingTheMapIsAdopted) {
  EnvOptions options;
  options.initial_map_size = 256 << 10;
  auto env = OpenEnv(options);
  Dbi dbi = *env->OpenDb("d");
  ASSERT_TRUE(env->Update([&](Txn& t) { return t.Put(dbi, "k", "v"); }).ok());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A separate process with its own mapping (fresh exec-less child: use a
    // new environment handle; the parent's handle is not touched).
    EnvOptions child_options = options;
    child_options.sync_on_commit = false;
    auto other = Env::Open(dir_, child_options);
    if (!other.ok()) _exit(2);
    auto odbi = (*other)->OpenDb("d");
    if (!odbi.ok()) _exit(3);
    const std::string value(1000, 'x');
    for (uint64_t k = 0; k < 3000; ++k) {
      Status s = (*other)->Update(
          [&](Txn& t) { return t.Put(*odbi, EncodeU64Key(k), value); });
      if (!s.ok()) _exit(4);
    }
    _exit((*other)->Sync().ok() ? 0 : 5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  // Our map is still 256 KiB; the data file is now much larger.
  Result<Txn> txn = env->BeginRead();
  ASSERT_TRUE(txn.ok()) << txn.status().ToString();
  EXPECT_EQ(*txn->Get(dbi, EncodeU64Key(2999)), std::string(1000, 'x'));
  txn->Abort();
  ASSERT_TRUE(
      env->Update([&](Txn& t) { return t.Put(dbi, "after", "1"); }).ok());
  EXPECT_EQ(ValueOf(*env, dbi, "after"), "1");
  EXPECT_GT(env->map_size(), 256u << 10);
}

}  // namespace
}  // namespace cmkfs::lmdb
