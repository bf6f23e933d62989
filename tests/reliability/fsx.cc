// fsx: a file-system exerciser in the spirit of the classic fsx. It drives
// random operations against one fixed-size file (a cmkfs disk file, or a
// plain file) and checks every read against an in-memory shadow copy:
//   read      random offset and size, aligned or not, compared with the shadow
//   write     random offset and size; the bytes derive from (seed, op index)
//   discard   fallocate(PUNCH_HOLE|KEEP_SIZE): the range must read as zeros
//   zero      fallocate(ZERO_RANGE|KEEP_SIZE)
//   fsync
//   reopen    close and open the file again
//   snapshot  fsync, run --snapshot-cmd, compare the whole snapshot file with
//             the shadow at that point, then run --snapshot-delete-cmd
//   verify    compare the whole file with the shadow
// On a mismatch it prints the seed, the offset, the operations that touched
// the bad range, a command line that replays the run, and (with --minimize)
// the shortest operation sequence it could find that still fails.
//
// Exit status: 0 no mismatch, 1 mismatch, 2 usage or I/O error.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace {

enum class OpType : uint8_t {
  kRead,
  kWrite,
  kDiscard,
  kZero,
  kFsync,
  kReopen,
  kSnapshot,
  kVerify
};

const char* OpName(OpType t) {
  switch (t) {
    case OpType::kRead:
      return "read";
    case OpType::kWrite:
      return "write";
    case OpType::kDiscard:
      return "discard";
    case OpType::kZero:
      return "zero";
    case OpType::kFsync:
      return "fsync";
    case OpType::kReopen:
      return "reopen";
    case OpType::kSnapshot:
      return "snapshot";
    case OpType::kVerify:
      return "verify";
  }
  return "?";
}

struct Op {
  uint64_t index = 0;  // position in the original run: seeds the write data
  OpType type = OpType::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct Options {
  std::string file;
  uint64_t size = 0;  // 0: the file's current size
  uint64_t seed = 0;
  bool seed_given = false;
  uint64_t ops = 10000;
  uint64_t max_io = 64 * 1024;
  // Weights (per mille) of the operation kinds.
  unsigned w_read = 450, w_write = 430, w_discard = 50, w_zero = 30,
           w_fsync = 2, w_reopen = 1;
  uint64_t snapshot_every = 0;  // 0: never
  std::string snapshot_cmd;     // %n: snapshot name
  std::string snapshot_path;    // %n: snapshot name
  std::string snapshot_delete_cmd;
  uint64_t verify_every = 100000;
  uint64_t progress_every = 0;
  bool minimize = false;
  double minimize_seconds = 120;
  bool init_zero = false;  // write zeros over the file first
  std::string log_file;
  std::string replay_file;  // replay (and --minimize) a saved op log
  int context_ops = 30;
  // Fault injection, to prove the checker catches a lost write: the write
  // with this op index reaches the shadow but not the file.
  // The first write at or after this op index is the one dropped.
  std::optional<uint64_t> inject_lost_write;
  bool inject_exact = false;  // only the write with exactly that index
  uint64_t fsync_every = 0;   // 0: only the random fsyncs of the weights
};

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(
      stderr,
      "fsx: %s\n"
      "usage: fsx --file PATH [--size BYTES] [--seed N] [--ops N]\n"
      "  [--max-io BYTES] [--snapshot-every N --snapshot-cmd CMD\n"
      "  --snapshot-path PATH [--snapshot-delete-cmd CMD]] (%%n in\n"
      "  CMD/PATH is the snapshot name) [--verify-every N]\n"
      "  [--progress N] [--fsync-every N] [--minimize] [--minimize-seconds S]\n"
      "  [--init-zero] [--log-file PATH] [--weights "
      "R,W,DISCARD,ZERO,FSYNC,REOPEN]\n"
      "  [--replay LOG [--minimize]] (needs the --seed of the run)\n"
      "  [--inject-lost-write OP_INDEX] (self-test of the checker)\n",
      msg);
  std::exit(2);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fsx: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(2);
}

uint64_t ParseU64(const char* s, const char* flag) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 0);
  if (errno != 0 || end == s)
    Usage((std::string("bad number for ") + flag).c_str());
  uint64_t mult = 1;
  if (*end == 'K' || *end == 'k')
    mult = 1ull << 10, ++end;
  else if (*end == 'M' || *end == 'm')
    mult = 1ull << 20, ++end;
  else if (*end == 'G' || *end == 'g')
    mult = 1ull << 30, ++end;
  if (*end != 0) Usage((std::string("bad number for ") + flag).c_str());
  return v * mult;
}

// splitmix64: the generator for op choices and for write data.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : Next() % n; }
};

// Bytes written by op `index` at file offset `off`: a function of the seed,
// the op and the offset, so a replay writes the same bytes.
void FillWriteData(uint64_t seed, uint64_t index, uint64_t off, uint8_t* buf,
                   uint64_t len) {
  Rng r(seed * 0x100000001b3ull ^ (index << 1) ^ 0x5bd1e995);
  uint64_t base = r.Next();
  for (uint64_t i = 0; i < len;) {
    uint64_t word = (base ^ ((off + i) >> 3)) * 0x9e3779b97f4a7c15ull;
    word ^= word >> 29;
    for (int b = 0; b < 8 && i < len; ++b, ++i) {
      buf[i] = static_cast<uint8_t>(word >> (8 * b));
    }
  }
}

std::string Subst(const std::string& tmpl, const std::string& name) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '%' && i + 1 < tmpl.size() && tmpl[i + 1] == 'n') {
      out += name;
      ++i;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

int RunShell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc == -1) return -1;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

struct Mismatch {
  uint64_t op_index = 0;
  OpType during = OpType::kRead;
  uint64_t offset = 0;  // first differing byte (file offset)
  uint8_t expected = 0;
  uint8_t got = 0;
  std::string where;  // the file that was read
  std::string detail;
};

class Exerciser {
 public:
  explicit Exerciser(const Options& o) : opt_(o) {}

  // Opens the file and loads its current content into the shadow.
  bool Open(bool init_zero) {
    fd_ = open(opt_.file.c_str(), O_RDWR | O_CREAT, 0600);
    if (fd_ < 0) Die("open " + opt_.file);
    struct stat st;
    if (fstat(fd_, &st) != 0) Die("stat " + opt_.file);
    uint64_t size = opt_.size;
    if (size == 0) size = static_cast<uint64_t>(st.st_size);
    if (size == 0) Usage("the file is empty: give --size");
    if (static_cast<uint64_t>(st.st_size) != size) {
      if (S_ISREG(st.st_mode) && ftruncate(fd_, static_cast<off_t>(size)) != 0)
        Die("ftruncate " + opt_.file +
            " (a cmkfs disk has a fixed size: "
            "omit --size or use the disk's size)");
    }
    shadow_.assign(size, 0);
    if (init_zero) {
      std::vector<uint8_t> zeros(1 << 20, 0);
      for (uint64_t off = 0; off < size; off += zeros.size()) {
        uint64_t n = std::min<uint64_t>(zeros.size(), size - off);
        PwriteAll(zeros.data(), n, off);
      }
      if (fsync(fd_) != 0) Die("fsync");
    } else {
      PreadAll(shadow_.data(), size, 0, opt_.file);
    }
    return true;
  }

  uint64_t size() const { return shadow_.size(); }
  uint64_t snapshots_taken() const { return snapshots_; }
  uint64_t discard_fallbacks() const { return discard_unsupported_; }

  // Applies one op; false on a mismatch (recorded in `mismatch_`).
  bool Apply(const Op& op) {
    switch (op.type) {
      case OpType::kRead: {
        buf_.resize(op.length);
        PreadAll(buf_.data(), op.length, op.offset, opt_.file);
        return Compare(op, buf_.data(), op.offset, op.length, opt_.file);
      }
      case OpType::kWrite: {
        buf_.resize(op.length);
        FillWriteData(opt_.seed, op.index, op.offset, buf_.data(), op.length);
        if (opt_.inject_lost_write && !dropped_ &&
            (opt_.inject_exact ? op.index == *opt_.inject_lost_write
                               : op.index >= *opt_.inject_lost_write)) {
          dropped_ = op.index;
        } else {
          PwriteAll(buf_.data(), op.length, op.offset);
        }
        std::memcpy(shadow_.data() + op.offset, buf_.data(), op.length);
        return true;
      }
      case OpType::kDiscard:
      case OpType::kZero: {
        int mode = (op.type == OpType::kDiscard ? FALLOC_FL_PUNCH_HOLE
                                                : FALLOC_FL_ZERO_RANGE) |
                   FALLOC_FL_KEEP_SIZE;
        if (fallocate(fd_, mode, static_cast<off_t>(op.offset),
                      static_cast<off_t>(op.length)) != 0) {
          if (errno != EOPNOTSUPP)
            Die(std::string("fallocate ") + OpName(op.type));
          ++discard_unsupported_;
          return true;  // the file is unchanged: so is the shadow
        }
        std::memset(shadow_.data() + op.offset, 0, op.length);
        return true;
      }
      case OpType::kFsync:
        if (fsync(fd_) != 0) Die("fsync");
        return true;
      case OpType::kReopen:
        close(fd_);
        fd_ = open(opt_.file.c_str(), O_RDWR);
        if (fd_ < 0) Die("reopen " + opt_.file);
        return true;
      case OpType::kSnapshot:
        return Snapshot(op);
      case OpType::kVerify:
        return VerifyAll(op);
    }
    return true;
  }

  bool VerifyAll(const Op& op) { return CompareFile(op, opt_.file, fd_); }

  const Mismatch& mismatch() const { return mismatch_; }
  std::optional<uint64_t> dropped() const { return dropped_; }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  bool Snapshot(const Op& op) {
    if (fsync(fd_) != 0) Die("fsync before snapshot");
    std::string name =
        "fsx-" + std::to_string(opt_.seed) + "-" + std::to_string(op.index);
    int rc = RunShell(Subst(opt_.snapshot_cmd, name));
    if (rc != 0) {
      std::fprintf(stderr, "fsx: snapshot command failed (exit %d): %s\n", rc,
                   Subst(opt_.snapshot_cmd, name).c_str());
      std::exit(2);
    }
    ++snapshots_;
    std::string path = Subst(opt_.snapshot_path, name);
    int sfd = open(path.c_str(), O_RDONLY);
    if (sfd < 0) Die("open snapshot " + path);
    bool ok = CompareFile(op, path, sfd);
    close(sfd);
    if (ok && !opt_.snapshot_delete_cmd.empty()) {
      rc = RunShell(Subst(opt_.snapshot_delete_cmd, name));
      if (rc != 0) {
        std::fprintf(stderr, "fsx: snapshot delete failed (exit %d)\n", rc);
        std::exit(2);
      }
    }
    return ok;
  }

  bool CompareFile(const Op& op, const std::string& path, int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) Die("stat " + path);
    if (static_cast<uint64_t>(st.st_size) != shadow_.size()) {
      mismatch_ = {op.index,
                   op.type,
                   0,
                   0,
                   0,
                   path,
                   "size " + std::to_string(st.st_size) + ", expected " +
                       std::to_string(shadow_.size())};
      return false;
    }
    std::vector<uint8_t> chunk(1 << 20);
    for (uint64_t off = 0; off < shadow_.size(); off += chunk.size()) {
      uint64_t n = std::min<uint64_t>(chunk.size(), shadow_.size() - off);
      PreadAllFd(fd, chunk.data(), n, off, path);
      if (!Compare(op, chunk.data(), off, n, path)) return false;
    }
    return true;
  }

  bool Compare(const Op& op, const uint8_t* got, uint64_t off, uint64_t len,
               const std::string& path) {
    if (std::memcmp(got, shadow_.data() + off, len) == 0) return true;
    uint64_t i = 0;
    while (got[i] == shadow_[off + i]) ++i;
    mismatch_ = {op.index, op.type, off + i, shadow_[off + i],
                 got[i],   path,    ""};
    return false;
  }

  void PreadAll(uint8_t* buf, uint64_t len, uint64_t off,
                const std::string& path) {
    PreadAllFd(fd_, buf, len, off, path);
  }
  static void PreadAllFd(int fd, uint8_t* buf, uint64_t len, uint64_t off,
                         const std::string& path) {
    uint64_t done = 0;
    while (done < len) {
      ssize_t n =
          pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) Die("pread " + path + " at " + std::to_string(off + done));
      if (n == 0) {
        errno = EIO;
        Die("short read (end of file) " + path + " at " +
            std::to_string(off + done));
      }
      done += static_cast<uint64_t>(n);
    }
  }
  void PwriteAll(const uint8_t* buf, uint64_t len, uint64_t off) {
    uint64_t done = 0;
    while (done < len) {
      ssize_t n =
          pwrite(fd_, buf + done, len - done, static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        Die("pwrite " + opt_.file + " at " + std::to_string(off + done));
      done += static_cast<uint64_t>(n);
    }
  }

  const Options& opt_;
  int fd_ = -1;
  std::vector<uint8_t> shadow_;
  std::vector<uint8_t> buf_;
  Mismatch mismatch_;
  uint64_t snapshots_ = 0;
  uint64_t discard_unsupported_ = 0;
  std::optional<uint64_t> dropped_;
};

// Chooses the next operation. Sizes are mostly small (so a million ops stay
// fast), half of them aligned to 4 KiB.
Op NextOp(Rng& rng, const Options& o, uint64_t index, uint64_t file_size) {
  Op op;
  op.index = index;
  if (o.snapshot_every && index > 0 && index % o.snapshot_every == 0) {
    op.type = OpType::kSnapshot;
    return op;
  }
  if (o.verify_every && index > 0 && index % o.verify_every == 0) {
    op.type = OpType::kVerify;
    return op;
  }
  if (o.fsync_every && index > 0 && index % o.fsync_every == 0) {
    op.type = OpType::kFsync;
    return op;
  }
  unsigned total =
      o.w_read + o.w_write + o.w_discard + o.w_zero + o.w_fsync + o.w_reopen;
  unsigned pick = static_cast<unsigned>(rng.Below(total));
  unsigned acc = 0;
  const std::pair<unsigned, OpType> table[] = {
      {o.w_read, OpType::kRead},       {o.w_write, OpType::kWrite},
      {o.w_discard, OpType::kDiscard}, {o.w_zero, OpType::kZero},
      {o.w_fsync, OpType::kFsync},     {o.w_reopen, OpType::kReopen}};
  for (const auto& [w, t] : table) {
    acc += w;
    if (pick < acc) {
      op.type = t;
      break;
    }
  }
  if (op.type == OpType::kFsync || op.type == OpType::kReopen) return op;
  uint64_t max_io = std::min<uint64_t>(o.max_io, file_size);
  bool aligned = rng.Below(2) == 0 && file_size >= 4096;
  uint64_t shape = rng.Below(100);
  uint64_t len;
  if (shape < 70) {
    len = 1 + rng.Below(std::min<uint64_t>(max_io, 1024));
  } else if (shape < 95) {
    len = 1 + rng.Below(std::min<uint64_t>(max_io, 16384));
  } else {
    len = 1 + rng.Below(max_io);
  }
  if (op.type == OpType::kDiscard || op.type == OpType::kZero) {
    // Discards span extents more often, to free whole 64 KiB extents.
    if (rng.Below(4) == 0)
      len = 1 + rng.Below(std::min<uint64_t>(file_size, 256 * 1024));
  }
  uint64_t off;
  if (aligned) {
    len = std::max<uint64_t>(4096, (len + 4095) / 4096 * 4096);
    len = std::min<uint64_t>(len, file_size / 4096 * 4096);
    off = rng.Below((file_size - len) / 4096 + 1) * 4096;
  } else {
    len = std::min<uint64_t>(len, file_size);
    off = rng.Below(file_size - len + 1);
  }
  op.offset = off;
  op.length = len;
  return op;
}

void PrintOp(FILE* f, const Op& op) {
  if (op.type == OpType::kFsync || op.type == OpType::kReopen ||
      op.type == OpType::kSnapshot || op.type == OpType::kVerify) {
    std::fprintf(f, "  #%-9" PRIu64 " %s\n", op.index, OpName(op.type));
  } else {
    std::fprintf(
        f,
        "  #%-9" PRIu64 " %-8s offset=%" PRIu64 " (0x%" PRIx64
        ") length=%" PRIu64 " end=0x%" PRIx64 "%s\n",
        op.index, OpName(op.type), op.offset, op.offset, op.length,
        op.offset + op.length,
        (op.offset % 4096 == 0 && op.length % 4096 == 0) ? " aligned" : "");
  }
}

bool Touches(const Op& op, uint64_t lo, uint64_t hi) {
  switch (op.type) {
    case OpType::kWrite:
    case OpType::kDiscard:
    case OpType::kZero:
    case OpType::kRead:
      return op.offset < hi && op.offset + op.length > lo;
    default:
      return true;  // fsync/reopen/snapshot may matter to any range
  }
}

std::string OpTypeArg(OpType t) { return OpName(t); }

bool ParseOpLine(const char* line, Op* op) {
  char name[32];
  unsigned long long idx, off, len;
  if (std::sscanf(line, "%llu %31s %llu %llu", &idx, name, &off, &len) != 4)
    return false;
  for (int t = 0; t <= static_cast<int>(OpType::kVerify); ++t) {
    if (OpTypeArg(static_cast<OpType>(t)) == name) {
      op->type = static_cast<OpType>(t);
      op->index = idx;
      op->offset = off;
      op->length = len;
      return true;
    }
  }
  return false;
}

void WriteLog(const std::string& path, const std::vector<Op>& ops) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "fsx: cannot write %s\n", path.c_str());
    return;
  }
  for (const Op& op : ops) {
    std::fprintf(f, "%" PRIu64 " %s %" PRIu64 " %" PRIu64 "\n", op.index,
                 OpName(op.type), op.offset, op.length);
  }
  std::fclose(f);
}

// Replays `ops` on a zeroed file and ends with a full verify. True when the
// sequence still fails.
bool ReplayFails(const Options& o, const std::vector<Op>& ops) {
  Exerciser ex(o);
  ex.Open(/*init_zero=*/true);
  bool ok = true;
  for (const Op& op : ops) {
    if (!ex.Apply(op)) {
      ok = false;
      break;
    }
  }
  if (ok) {
    Op v;
    v.type = OpType::kVerify;
    v.index = ops.empty() ? 0 : ops.back().index;
    ok = ex.VerifyAll(v);
  }
  ex.Close();
  return !ok;
}

// Delta debugging (ddmin) over the op sequence, within a time budget.
std::vector<Op> Minimize(const Options& o, std::vector<Op> ops) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration<double>(o.minimize_seconds);
  if (!ReplayFails(o, ops)) {
    std::fprintf(stderr,
                 "fsx: the failure does not reproduce on a zeroed file; "
                 "not minimizing\n");
    return ops;
  }
  size_t n = 2;
  while (ops.size() >= 2 && std::chrono::steady_clock::now() < deadline) {
    size_t chunk = (ops.size() + n - 1) / n;
    bool reduced = false;
    for (size_t start = 0; start < ops.size(); start += chunk) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::vector<Op> rest;
      rest.reserve(ops.size());
      rest.insert(rest.end(), ops.begin(), ops.begin() + start);
      rest.insert(rest.end(), ops.begin() + std::min(ops.size(), start + chunk),
                  ops.end());
      if (ReplayFails(o, rest)) {
        ops = std::move(rest);
        n = std::max<size_t>(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= ops.size()) break;
      n = std::min(ops.size(), n * 2);
    }
  }
  return ops;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) Usage((std::string(flag) + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--file")
      o.file = need("--file");
    else if (a == "--size")
      o.size = ParseU64(need("--size"), "--size");
    else if (a == "--seed")
      o.seed = ParseU64(need("--seed"), "--seed"), o.seed_given = true;
    else if (a == "--ops")
      o.ops = ParseU64(need("--ops"), "--ops");
    else if (a == "--max-io")
      o.max_io = ParseU64(need("--max-io"), "--max-io");
    else if (a == "--snapshot-every")
      o.snapshot_every = ParseU64(need(a.c_str()), "--snapshot-every");
    else if (a == "--snapshot-cmd")
      o.snapshot_cmd = need("--snapshot-cmd");
    else if (a == "--snapshot-path")
      o.snapshot_path = need("--snapshot-path");
    else if (a == "--snapshot-delete-cmd")
      o.snapshot_delete_cmd = need(a.c_str());
    else if (a == "--verify-every")
      o.verify_every = ParseU64(need(a.c_str()), "--verify-every");
    else if (a == "--progress")
      o.progress_every = ParseU64(need(a.c_str()), "--progress");
    else if (a == "--minimize")
      o.minimize = true;
    else if (a == "--minimize-seconds")
      o.minimize_seconds =
          static_cast<double>(ParseU64(need(a.c_str()), a.c_str()));
    else if (a == "--init-zero")
      o.init_zero = true;
    else if (a == "--log-file")
      o.log_file = need("--log-file");
    else if (a == "--replay")
      o.replay_file = need("--replay");
    else if (a == "--fsync-every")
      o.fsync_every = ParseU64(need(a.c_str()), a.c_str());
    else if (a == "--inject-lost-write")
      o.inject_lost_write = ParseU64(need(a.c_str()), a.c_str());
    else if (a == "--weights") {
      unsigned w[6];
      if (std::sscanf(need("--weights"), "%u,%u,%u,%u,%u,%u", &w[0], &w[1],
                      &w[2], &w[3], &w[4], &w[5]) != 6)
        Usage("--weights needs six comma-separated integers");
      o.w_read = w[0], o.w_write = w[1], o.w_discard = w[2], o.w_zero = w[3],
      o.w_fsync = w[4], o.w_reopen = w[5];
      if (w[0] + w[1] + w[2] + w[3] + w[4] + w[5] == 0)
        Usage("all weights are 0");
    } else if (a == "-h" || a == "--help")
      Usage("help");
    else
      Usage(("unknown option " + a).c_str());
  }
  if (o.file.empty()) Usage("--file is required");
  if (o.max_io == 0) Usage("--max-io must be positive");
  if (o.snapshot_every && (o.snapshot_cmd.empty() || o.snapshot_path.empty()))
    Usage("--snapshot-every needs --snapshot-cmd and --snapshot-path");
  if (!o.seed_given) {
    o.seed = static_cast<uint64_t>(
                 std::chrono::steady_clock::now().time_since_epoch().count()) ^
             static_cast<uint64_t>(getpid());
  }
  if (o.log_file.empty()) {
    o.log_file = "/tmp/fsx-" + std::to_string(o.seed) + ".log";
  }
  return o;
}

}  // namespace

int ReplayMain(const Options& o) {
  FILE* f = std::fopen(o.replay_file.c_str(), "r");
  if (!f) Die("open " + o.replay_file);
  std::vector<Op> ops;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    Op op;
    if (!ParseOpLine(line, &op)) {
      std::fprintf(stderr, "fsx: bad line in %s: %s", o.replay_file.c_str(),
                   line);
      std::exit(2);
    }
    ops.push_back(op);
  }
  std::fclose(f);
  if (!o.minimize) {
    bool fails = ReplayFails(o, ops);
    std::printf("fsx: replay of %zu ops: %s\n", ops.size(),
                fails ? "MISMATCH" : "no mismatch");
    return fails ? 1 : 0;
  }
  std::vector<Op> small = Minimize(o, ops);
  std::printf("fsx: shortest failing sequence found (%zu ops):\n",
              small.size());
  for (const Op& op : small) PrintOp(stdout, op);
  return 1;
}

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (!o.replay_file.empty()) return ReplayMain(o);
  Exerciser ex(o);
  ex.Open(o.init_zero);
  std::printf("fsx: file=%s size=%" PRIu64 " seed=%" PRIu64 " ops=%" PRIu64
              "\n",
              o.file.c_str(), ex.size(), o.seed, o.ops);
  Rng rng(o.seed);
  std::vector<Op> log;
  log.reserve(static_cast<size_t>(std::min<uint64_t>(o.ops + 1, 1u << 24)));
  uint64_t counts[8] = {};
  auto start = std::chrono::steady_clock::now();
  bool ok = true;
  for (uint64_t i = 0; i <= o.ops; ++i) {
    Op op;
    if (i == o.ops) {
      op.type = OpType::kVerify;  // final full comparison
      op.index = i;
    } else {
      op = NextOp(rng, o, i, ex.size());
    }
    log.push_back(op);
    ++counts[static_cast<int>(op.type)];
    if (!ex.Apply(op)) {
      ok = false;
      break;
    }
    if (o.progress_every && i > 0 && i % o.progress_every == 0) {
      double s = std::chrono::duration<double>(
                     std::chrono::steady_clock::now() - start)
                     .count();
      std::printf("fsx: %" PRIu64 " ops, %.0f ops/s\n", i, i / s);
    }
  }
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ex.Close();
  if (ok) {
    std::printf(
        "fsx: PASS seed=%" PRIu64 " ops=%" PRIu64
        " in %.1f s (%.0f ops/s):"
        " read=%" PRIu64 " write=%" PRIu64 " discard=%" PRIu64 " zero=%" PRIu64
        " fsync=%" PRIu64 " reopen=%" PRIu64 " snapshot=%" PRIu64
        " verify=%" PRIu64 " mismatches=0%s\n",
        o.seed, o.ops, secs, o.ops / std::max(secs, 1e-9), counts[0], counts[1],
        counts[2], counts[3], counts[4], counts[5], counts[6], counts[7],
        ex.discard_fallbacks() ? " (fallocate not supported: skipped)" : "");
    return 0;
  }

  if (ex.dropped()) {
    std::printf("fsx: fault injection: write #%" PRIu64 " was not issued\n",
                *ex.dropped());
    o.inject_lost_write = ex.dropped();
    o.inject_exact = true;
  }
  const Mismatch& m = ex.mismatch();
  std::printf("fsx: MISMATCH seed=%" PRIu64 " at op #%" PRIu64
              " (%s) file=%s\n",
              o.seed, m.op_index, OpName(m.during), m.where.c_str());
  if (!m.detail.empty()) {
    std::printf("fsx: %s\n", m.detail.c_str());
  } else {
    std::printf("fsx: offset %" PRIu64 " (0x%" PRIx64 ", sector %" PRIu64
                " + %" PRIu64 "): expected 0x%02x, got 0x%02x\n",
                m.offset, m.offset, m.offset / 4096, m.offset % 4096,
                m.expected, m.got);
  }
  uint64_t lo = m.offset >= 4096 ? m.offset - 4096 : 0;
  uint64_t hi = m.offset + 4096;
  std::vector<Op> near;
  for (auto it = log.rbegin();
       it != log.rend() && static_cast<int>(near.size()) < o.context_ops;
       ++it) {
    if (Touches(*it, lo, hi) && it->type != OpType::kRead) near.push_back(*it);
  }
  std::reverse(near.begin(), near.end());
  std::printf("fsx: last %zu ops (not reads) touching [0x%" PRIx64
              ", 0x%" PRIx64 "), oldest first:\n",
              near.size(), lo, hi);
  for (const Op& op : near) PrintOp(stdout, op);
  WriteLog(o.log_file, log);
  std::printf("fsx: full op log (%zu ops) in %s\n", log.size(),
              o.log_file.c_str());
  std::printf("fsx: replay: %s --file %s --seed %" PRIu64 " --ops %" PRIu64
              " --max-io %" PRIu64 "%s\n",
              argv[0], o.file.c_str(), o.seed, m.op_index + 1, o.max_io,
              o.snapshot_every ? " (plus the same snapshot options)" : "");
  if (o.minimize) {
    std::printf("fsx: minimizing (budget %.0f s)...\n", o.minimize_seconds);
    // Only ops that change state, plus the failing read.
    std::vector<Op> seq;
    for (const Op& op : log) {
      if (op.type != OpType::kRead && op.type != OpType::kVerify)
        seq.push_back(op);
    }
    std::vector<Op> small = Minimize(o, seq);
    std::printf(
        "fsx: shortest failing sequence found (%zu ops, then a full "
        "verify):\n",
        small.size());
    for (const Op& op : small) PrintOp(stdout, op);
    WriteLog(o.log_file + ".min", small);
  }
  return 1;
}
