// crash_writer: the writer and checker of the crash loop (crash_loop.sh).
//
//   crash_writer write --file DISK --log ACKLOG --gen-base N [--seconds S]
//                      [--seed N]
//     Writes runs of 1-16 self-describing 4 KiB sectors at random positions,
//     fsyncs after every batch of 1-32 writes, and only after fsync returned
//     appends "first_sector count generation" for each write of the batch to
//     ACKLOG (a file outside the mount, fdatasync'ed). Runs until it is
//     killed, the file fails (the daemon died), or S seconds pass.
//   crash_writer check --file DISK --log ACKLOG [--torn-only]
//     Every sector must be all zeros or a valid sector (magic, its own sector
//     number, checksum): anything else is a torn or foreign sector. Every
//     sector named in ACKLOG must hold that generation or a newer one (a
//     newer, unacknowledged write may have landed too). --torn-only skips the
//     acknowledgement check (for snapshots taken at an unknown moment).
//
// Sector layout: u64 magic "CMKCRSH1", u64 sector number, u64 generation,
// u64 checksum (FNV-1a 64 of the sector with this field zeroed), then bytes
// derived from (sector, generation).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr uint64_t kSector = 4096;
constexpr uint64_t kMagic = 0x31485352434b4d43ull;  // "CMKCRSH1"

uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

void MakeSector(uint64_t sector, uint64_t gen, uint8_t* out) {
  Put64(out, kMagic);
  Put64(out + 8, sector);
  Put64(out + 16, gen);
  Put64(out + 24, 0);
  uint64_t x = sector * 0x9e3779b97f4a7c15ull ^ gen;
  for (size_t i = 32; i < kSector; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    Put64(out + i, x);
  }
  Put64(out + 24, Fnv1a(out, kSector));
}

enum class SectorState { kZero, kValid, kTorn };

SectorState Classify(uint64_t sector, const uint8_t* s, uint64_t* gen,
                     std::string* why) {
  bool zero = true;
  for (size_t i = 0; i < kSector; ++i) {
    if (s[i] != 0) {
      zero = false;
      break;
    }
  }
  if (zero) return SectorState::kZero;
  if (Get64(s) != kMagic) {
    *why = "bad magic";
    return SectorState::kTorn;
  }
  if (Get64(s + 8) != sector) {
    *why = "holds sector " + std::to_string(Get64(s + 8));
    return SectorState::kTorn;
  }
  uint8_t copy[kSector];
  std::memcpy(copy, s, kSector);
  Put64(copy + 24, 0);
  if (Fnv1a(copy, kSector) != Get64(s + 24)) {
    *why = "checksum mismatch (torn or corrupted)";
    return SectorState::kTorn;
  }
  *gen = Get64(s + 16);
  return SectorState::kValid;
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: crash_writer write --file DISK --log ACKLOG --gen-base "
               "N [--seconds S] [--seed N]\n"
               "       crash_writer check --file DISK --log ACKLOG "
               "[--torn-only]\n");
  std::exit(2);
}

struct Args {
  std::string mode, file, log;
  uint64_t gen_base = 1;
  double seconds = 0;
  uint64_t seed = 0;
  bool torn_only = false;
};

Args Parse(int argc, char** argv) {
  if (argc < 2) Usage();
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Usage();
      return argv[++i];
    };
    if (f == "--file")
      a.file = val();
    else if (f == "--log")
      a.log = val();
    else if (f == "--gen-base")
      a.gen_base = std::stoull(val());
    else if (f == "--seconds")
      a.seconds = std::stod(val());
    else if (f == "--seed")
      a.seed = std::stoull(val());
    else if (f == "--torn-only")
      a.torn_only = true;
    else
      Usage();
  }
  if (a.file.empty() || (a.log.empty() && !a.torn_only)) Usage();
  return a;
}

struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
};

int Write(const Args& a) {
  int fd = open(a.file.c_str(), O_RDWR);
  if (fd < 0) {
    std::fprintf(stderr, "crash_writer: open %s: %s\n", a.file.c_str(),
                 std::strerror(errno));
    return 2;
  }
  int log = open(a.log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (log < 0) {
    std::fprintf(stderr, "crash_writer: open %s: %s\n", a.log.c_str(),
                 std::strerror(errno));
    return 2;
  }
  struct stat st;
  fstat(fd, &st);
  uint64_t sectors = static_cast<uint64_t>(st.st_size) / kSector;
  if (sectors == 0) return 2;
  Rng rng{a.seed ? a.seed : a.gen_base ^ static_cast<uint64_t>(getpid())};
  uint64_t gen = a.gen_base;
  uint64_t acked = 0;
  auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> buf(16 * kSector);
  struct Pending {
    uint64_t first, count, gen;
  };
  std::vector<Pending> batch;
  std::string why = "time limit";
  for (;;) {
    if (a.seconds > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                .count() > a.seconds)
      break;
    uint64_t batch_size = 1 + rng.Below(32);
    batch.clear();
    bool failed = false;
    for (uint64_t w = 0; w < batch_size; ++w) {
      uint64_t count = 1 + rng.Below(16);
      if (count > sectors) count = sectors;
      uint64_t first = rng.Below(sectors - count + 1);
      ++gen;
      for (uint64_t i = 0; i < count; ++i) {
        MakeSector(first + i, gen, buf.data() + i * kSector);
      }
      ssize_t n = pwrite(fd, buf.data(), count * kSector,
                         static_cast<off_t>(first * kSector));
      if (n != static_cast<ssize_t>(count * kSector)) {
        why = std::string("write failed: ") + std::strerror(errno);
        failed = true;
        break;
      }
      batch.push_back({first, count, gen});
    }
    if (failed) break;
    if (fsync(fd) != 0) {
      why = std::string("fsync failed: ") + std::strerror(errno);
      break;
    }
    std::string lines;
    for (const Pending& p : batch) {
      lines += std::to_string(p.first) + " " + std::to_string(p.count) + " " +
               std::to_string(p.gen) + "\n";
    }
    if (write(log, lines.data(), lines.size()) !=
            static_cast<ssize_t>(lines.size()) ||
        fdatasync(log) != 0) {
      std::fprintf(stderr, "crash_writer: ack log: %s\n", std::strerror(errno));
      return 2;
    }
    acked += batch.size();
  }
  std::printf("crash_writer: %" PRIu64 " writes acknowledged, last gen %" PRIu64
              ", stopped: %s\n",
              acked, gen, why.c_str());
  return 0;
}

int Check(const Args& a) {
  std::unordered_map<uint64_t, uint64_t> expected;  // sector -> acked gen
  if (!a.torn_only) {
    FILE* f = std::fopen(a.log.c_str(), "r");
    if (f) {
      unsigned long long first, count, gen;
      while (std::fscanf(f, "%llu %llu %llu", &first, &count, &gen) == 3) {
        for (uint64_t s = first; s < first + count; ++s) {
          uint64_t& e = expected[s];
          if (gen > e) e = gen;
        }
      }
      std::fclose(f);
    }
  }
  int fd = open(a.file.c_str(), O_RDONLY);
  if (fd < 0) {
    std::fprintf(stderr, "crash_writer: open %s: %s\n", a.file.c_str(),
                 std::strerror(errno));
    return 2;
  }
  struct stat st;
  fstat(fd, &st);
  uint64_t sectors = static_cast<uint64_t>(st.st_size) / kSector;
  std::vector<uint8_t> buf(256 * kSector);
  uint64_t zero = 0, valid = 0, newer = 0, bad = 0;
  for (uint64_t base = 0; base < sectors; base += 256) {
    uint64_t n = std::min<uint64_t>(256, sectors - base);
    uint64_t done = 0;
    while (done < n * kSector) {
      ssize_t r = pread(fd, buf.data() + done, n * kSector - done,
                        static_cast<off_t>(base * kSector + done));
      if (r <= 0) {
        std::fprintf(stderr,
                     "crash_writer: read %s at sector %" PRIu64 ": %s\n",
                     a.file.c_str(), base + done / kSector,
                     r == 0 ? "end of file" : std::strerror(errno));
        return 1;
      }
      done += static_cast<uint64_t>(r);
    }
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t s = base + i;
      uint64_t gen = 0;
      std::string why;
      SectorState st2 = Classify(s, buf.data() + i * kSector, &gen, &why);
      auto it = expected.find(s);
      uint64_t want = it == expected.end() ? 0 : it->second;
      if (st2 == SectorState::kTorn) {
        if (++bad <= 20)
          std::printf("TORN sector %" PRIu64 ": %s\n", s, why.c_str());
        continue;
      }
      if (st2 == SectorState::kZero) {
        ++zero;
        if (want != 0 && ++bad <= 20)
          std::printf("LOST sector %" PRIu64
                      ": reads zeros, acknowledged "
                      "generation %" PRIu64 "\n",
                      s, want);
        continue;
      }
      ++valid;
      if (gen < want) {
        if (++bad <= 20)
          std::printf("LOST sector %" PRIu64 ": generation %" PRIu64
                      " is older than the acknowledged %" PRIu64 "\n",
                      s, gen, want);
      } else if (gen > want && want != 0) {
        ++newer;
      }
    }
  }
  close(fd);
  std::printf("crash_writer: %s: %" PRIu64 " sectors, %" PRIu64
              " valid, %" PRIu64 " zero, %zu acknowledged, %" PRIu64
              " newer than acknowledged, %" PRIu64 " bad\n",
              a.file.c_str(), sectors, valid, zero, expected.size(), newer,
              bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Args a = Parse(argc, argv);
  if (a.mode == "write") return Write(a);
  if (a.mode == "check") return Check(a);
  Usage();
}
