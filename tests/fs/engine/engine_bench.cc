// Engine throughput bench (not a test): sequential and 4K random I/O through
// DiskHandle against raw XtsCipher throughput, and snapshot creation time as
// a function of the number of mapped extents.
//
//   engine_bench [DIR] [--quick] [--written GIB[,GIB...]]
// DIR (default: a new directory under /var/tmp) must be on the filesystem to
// measure. Results are printed as a Markdown table.
// --written 1,16 also writes each size for real (GIB GiB of encrypted data on
// DIR's filesystem, one at a time, removed afterwards) and times snapshot
// creation on it; it needs that much free space and takes minutes, so it is
// never part of the default or --quick run.
#include <stdlib.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/lmdb.h"
#include "cmkfs/record.h"
#include "records.h"

using namespace cmkfs;
using namespace cmkfs::fs;
using BenchClock = std::chrono::steady_clock;

namespace {

double Seconds(BenchClock::time_point a, BenchClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void Die(const Status& st, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, st.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) Die(r.status(), what);
  return std::move(r).value();
}

// CPU time of the whole process (all threads), user + system: unlike wall
// time it barely moves when other work shares the cores.
double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec * 1e-6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

void Row(const std::string& what, double value, const char* unit,
         double per_cpu_second = -1) {
  if (per_cpu_second < 0) {
    std::printf("| %s | %.1f %s | |\n", what.c_str(), value, unit);
  } else {
    std::printf("| %s | %.1f %s | %.1f %s |\n", what.c_str(), value, unit,
                per_cpu_second, unit);
  }
  std::fflush(stdout);
}

void BenchCipher() {
  auto key = Must(crypto::RandomSecret(64), "key");
  auto cipher = Must(crypto::XtsCipher::Create(key), "cipher");
  std::vector<uint8_t> buf(1 << 20, 7);
  for (size_t chunk : {size_t{4096}, size_t{65536}, size_t{1} << 20}) {
    uint64_t bytes = 0;
    double c0 = CpuSeconds();
    auto t0 = BenchClock::now();
    while (Seconds(t0, BenchClock::now()) < 1.0) {
      for (size_t off = 0; off < buf.size(); off += chunk) {
        if (!cipher
                 ->EncryptSectors(off / 4096, buf.data() + off,
                                  buf.data() + off, chunk)
                 .ok()) {
          std::exit(1);
        }
      }
      bytes += buf.size();
    }
    Row("raw XtsCipher encrypt, " + std::to_string(chunk / 1024) + " KiB calls",
        bytes / Seconds(t0, BenchClock::now()) / 1e6, "MB/s",
        bytes / (CpuSeconds() - c0) / 1e6);
  }
}

void Sequential(DiskHandle& h, uint64_t bytes, bool write, const char* label) {
  std::vector<uint8_t> buf(1 << 20);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = uint8_t(i * 131 + 7);
  double c0 = CpuSeconds();
  auto t0 = BenchClock::now();
  for (uint64_t off = 0; off < bytes; off += buf.size()) {
    if (write) {
      if (!h.Write(off, buf).ok()) std::exit(1);
    } else {
      if (!h.Read(off, buf).ok()) std::exit(1);
    }
  }
  if (write && !h.Sync().ok()) std::exit(1);
  Row(label, bytes / Seconds(t0, BenchClock::now()) / 1e6, "MB/s",
      bytes / (CpuSeconds() - c0) / 1e6);
}

void Random4k(DiskHandle& h, uint64_t span, int threads, bool write,
              const std::string& label) {
  std::atomic<uint64_t> ops{0};
  double c0 = CpuSeconds();
  auto t0 = BenchClock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<uint8_t> buf(4096, uint8_t(t));
      while (Seconds(t0, BenchClock::now()) < 2.0) {
        for (int i = 0; i < 256; ++i) {
          uint64_t off = (rng() % (span / 4096)) * 4096;
          bool ok = write ? h.Write(off, buf).ok() : h.Read(off, buf).ok();
          if (!ok) std::exit(1);
        }
        ops += 256;
      }
    });
  }
  for (auto& t : ts) t.join();
  Row(label, ops / Seconds(t0, BenchClock::now()) / 1e3, "K IOPS",
      ops / (CpuSeconds() - c0) / 1e3);
}

// Maps `extents` extents of disk `name` directly in the metadata (slots that
// hold no data): snapshot cost depends on metadata only.
void SyntheticMap(const std::filesystem::path& dir, uint64_t rid,
                  uint64_t first_slot, uint64_t extents) {
  lmdb::EnvOptions eo;
  auto env = Must(lmdb::Env::Open(dir / "meta", eo), "env");
  auto map = Must(env->OpenDb("extmap"), "db");
  auto ref = Must(env->OpenDb("refcount"), "db");
  auto cnt = Must(env->OpenDb("counts"), "db");
  auto meta = Must(env->OpenDb("meta"), "db");
  Status st = env->Update([&](lmdb::Txn& txn) -> Status {
    for (uint64_t i = 0; i < extents; ++i) {
      CMKFS_RETURN_IF_ERROR(
          txn.Put(map, MapKey(rid, i), EncodeSlot(first_slot + i)));
      CMKFS_RETURN_IF_ERROR(
          txn.Put(ref, EncodeSlot(first_slot + i), EncodeCount(1)));
    }
    CMKFS_RETURN_IF_ERROR(
        txn.Put(cnt, EncodeU64Key(rid), EncodeCount(extents)));
    return txn.Put(meta, "alloc", EncodeCount(first_slot + extents));
  });
  if (!st.ok()) Die(st, "synthetic map");
  // Sparse slots up to the new high-water mark: a consistent state, not
  // one whose mapped slots lie past the end of the pool file.
  std::error_code ec;
  std::filesystem::resize_file(dir / "extents" / "pool.0",
                               (first_slot + extents) * kExtentSize, ec);
  if (ec) {
    std::fprintf(stderr, "synthetic map: %s\n", ec.message().c_str());
    std::exit(1);
  }
}

// Writes `gibs` GiB for real into a fresh engine, then times snapshot
// creation (and a second one, which shares every extent with the first).
void SnapshotOfWritten(const EngineOptions& base, keystore::KeyStore* ks,
                       uint64_t gibs) {
  const uint64_t bytes = gibs << 30;
  EngineOptions eo = base;
  eo.dir = base.dir.parent_path() / ("written-" + std::to_string(gibs));
  {
    auto engine = Must(OpenEngine(eo, ks), "engine");
    DiskSpec spec;
    spec.name = "full";
    spec.size = bytes;
    Must(engine->CreateDisk(spec), "disk");
    auto h = Must(engine->Open(ResourceKind::kDisk, "full", true), "open");
    Sequential(
        *h, bytes, true,
        ("write " + std::to_string(gibs) + " GiB (1 MiB writes)").c_str());
    h.reset();
    if (!engine->Flush().ok()) std::exit(1);
  }
  // A fresh process state: nothing of the disk in the extent cache.
  auto engine = Must(OpenEngine(eo, ks), "engine");
  auto info = Must(engine->Get(ResourceKind::kDisk, "full"), "get");
  if (info.allocated_bytes != bytes) {
    std::fprintf(stderr, "only %llu of %llu bytes allocated\n",
                 static_cast<unsigned long long>(info.allocated_bytes),
                 static_cast<unsigned long long>(bytes));
    std::exit(1);
  }
  const uint64_t extents = bytes / kExtentSize;
  for (const char* name : {"snap1", "snap2"}) {
    auto t0 = BenchClock::now();
    Must(engine->CreateSnapshot(name, "full"), "snapshot");
    double ms = Seconds(t0, BenchClock::now()) * 1e3;
    Row(std::string("snapshot ") + (name[4] == '1' ? "" : "(second) ") + "of " +
            std::to_string(gibs) + " GiB written (" + std::to_string(extents) +
            " extents)",
        ms, "ms");
    Row("  per extent", ms * 1e3 / extents, "us");
  }
  engine.reset();
  std::error_code ec;
  std::filesystem::remove_all(eo.dir, ec);
}

std::vector<uint64_t> ParseGibList(const std::string& text) {
  std::vector<uint64_t> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    char* end = nullptr;
    unsigned long long v = std::strtoull(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v == 0) {
      std::fprintf(stderr,
                   "--written: '%s' is not a list of GiB counts such as "
                   "1,16\n",
                   text.c_str());
      std::exit(2);
    }
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<uint64_t> written;
  std::filesystem::path dir;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--written" && i + 1 < argc) {
      written = ParseGibList(argv[++i]);
    } else if (arg.starts_with("--written=")) {
      written = ParseGibList(arg.substr(10));
    } else if (arg.starts_with("-")) {
      std::fprintf(stderr,
                   "unknown option %s; usage: engine_bench [DIR] [--quick] "
                   "[--written GIB[,GIB...]]\n",
                   arg.c_str());
      return 2;
    } else {
      dir = argv[i];
    }
  }
  if (dir.empty()) {
    char tmpl[] = "/var/tmp/cmkfs-bench-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  keystore::KeyStoreOptions ko;
  ko.dir = dir / "vault";
  ko.master_key_file = dir / "vault.key";
  auto ks = Must(keystore::OpenKeyStore(ko), "keystore");
  EngineOptions eo;
  eo.dir = dir / "engine";
  eo.system_key_bits = 2048;
  std::printf(
      "| measurement | result (wall clock) | per CPU-second |\n"
      "| --- | ---: | ---: |\n");
  BenchCipher();

  const uint64_t gib = 1ull << 30;
  const uint64_t seq_bytes = quick ? 256ull << 20 : gib;
  {
    auto engine = Must(OpenEngine(eo, ks.get()), "engine");
    DiskSpec spec;
    spec.name = "bench";
    spec.size = gib;
    Must(engine->CreateDisk(spec), "disk");
    auto h = Must(engine->Open(ResourceKind::kDisk, "bench", true), "open");
    Sequential(*h, seq_bytes, true,
               "seq write 1 MiB, first write (allocating)");
    Sequential(*h, seq_bytes, true, "seq write 1 MiB, overwrite (in place)");
    Sequential(*h, seq_bytes, false, "seq read 1 MiB");
    Random4k(*h, seq_bytes, 1, false, "rand read 4K, 1 thread");
    Random4k(*h, seq_bytes, 2, false, "rand read 4K, 2 threads");
    Random4k(*h, seq_bytes, 1, true, "rand write 4K (in place), 1 thread");
    Random4k(*h, seq_bytes, 2, true, "rand write 4K (in place), 2 threads");
    auto t0 = BenchClock::now();
    Must(engine->CreateSnapshot("snap", "bench"), "snapshot");
    Row("snapshot of " + std::to_string(seq_bytes >> 20) + " MiB written (" +
            std::to_string(seq_bytes / kExtentSize) + " extents)",
        Seconds(t0, BenchClock::now()) * 1e3, "ms");
    Random4k(*h, seq_bytes, 1, true,
             "rand write 4K after snapshot (CoW), 1 thread");
    h.reset();
    if (!engine->Flush().ok()) return 1;
  }
  // Snapshot cost against mapped extents, metadata written directly.
  for (uint64_t gibs :
       quick ? std::vector<uint64_t>{1, 4} : std::vector<uint64_t>{1, 4, 16}) {
    EngineOptions so = eo;
    so.dir = dir / ("synthetic-" + std::to_string(gibs));
    uint64_t rid;
    {
      auto engine = Must(OpenEngine(so, ks.get()), "engine");
      DiskSpec spec;
      spec.name = "big";
      spec.size = gibs * gib;
      Must(engine->CreateDisk(spec), "disk");
      rid = 1;
    }
    uint64_t extents = gibs * gib / kExtentSize;
    SyntheticMap(so.dir, rid, 0, extents);
    auto engine = Must(OpenEngine(so, ks.get()), "engine");
    auto t0 = BenchClock::now();
    Must(engine->CreateSnapshot("snap", "big"), "snapshot");
    double ms = Seconds(t0, BenchClock::now()) * 1e3;
    Row("snapshot of " + std::to_string(gibs) + " GiB mapped (" +
            std::to_string(extents) + " extents, metadata only)",
        ms, "ms");
    Row("  per extent", ms * 1e3 / extents, "us");
  }
  for (uint64_t gibs : written) SnapshotOfWritten(eo, ks.get(), gibs);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
