// memscan: searches the whole address space of a process for secrets, via
// /proc/PID/maps and /proc/PID/mem (root, CAP_SYS_PTRACE: works even when the
// target set PR_SET_DUMPABLE to 0).
//   memscan PID HEX [HEX...]
// Prints one line per needle: "HEX_PREFIX... found N times" with the
// mapping of each hit, and "regions=R bytes=B unreadable=U skipped=S"
// (mappings over 1 TiB, i.e. a sanitizer's shadow, are skipped). Exit 0 when no
// needle was found, 1 when one was, 2 on error: a needle that is not an even
// number of hex digits or is shorter than 16 bytes, a process whose maps or
// memory cannot be opened, or a scan that read no memory at all (nothing
// scanned is not "not found").
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

// No real mapping of the daemon comes near this; sanitizer shadows do.
constexpr uint64_t kMaxMappingBytes = 1ull << 40;

// Empty when `h` is not an even number of hex digits.
std::vector<uint8_t> FromHex(const std::string& h) {
  std::vector<uint8_t> out;
  if (h.size() % 2 != 0) return out;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < h.size(); i += 2) {
    const int hi = digit(h[i]), lo = digit(h[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: memscan PID HEX [HEX...]\n");
    return 2;
  }
  std::string pid = argv[1];
  std::vector<std::vector<uint8_t>> needles;
  std::vector<std::string> names;
  for (int i = 2; i < argc; ++i) {
    needles.push_back(FromHex(argv[i]));
    names.push_back(std::string(argv[i]).substr(0, 16) + "...(" +
                    std::to_string(needles.back().size()) + " bytes)");
    if (needles.back().size() < 16) {
      std::fprintf(stderr,
                   "memscan: needle %d is not hex of at least 16 bytes; "
                   "accepted: an even number (>= 32) of hex digits\n",
                   i - 1);
      return 2;
    }
  }
  std::ifstream maps("/proc/" + pid + "/maps");
  if (!maps) {
    std::fprintf(stderr, "memscan: cannot read /proc/%s/maps\n", pid.c_str());
    return 2;
  }
  int mem = open(("/proc/" + pid + "/mem").c_str(), O_RDONLY);
  if (mem < 0) {
    std::fprintf(stderr, "memscan: open /proc/%s/mem: %s\n", pid.c_str(),
                 std::strerror(errno));
    return 2;
  }
  std::vector<uint64_t> hits(needles.size(), 0);
  uint64_t regions = 0, bytes = 0, unreadable = 0, skipped = 0;
  size_t overlap = 0;
  for (const auto& nd : needles) overlap = std::max(overlap, nd.size() - 1);
  // Read each mapping in chunks; consecutive chunks overlap by one needle
  // length less one byte, so a needle across a chunk boundary is still found
  // (once: hits must start in the new part of a chunk).
  constexpr uint64_t kChunk = 16u << 20;
  std::vector<uint8_t> buf(kChunk + overlap);
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream ls(line);
    std::string range, perms;
    ls >> range >> perms;
    if (perms.empty() || perms[0] != 'r') continue;
    uint64_t lo = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    uint64_t hi = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    if (line.find("[vvar]") != std::string::npos) continue;
    if (hi - lo > kMaxMappingBytes) {
      // A sanitizer's shadow (ASan reserves ~14 TiB, MAP_NORESERVE): shadow
      // bytes describe memory, they never hold a copy of it.
      ++skipped;
      std::printf("skipped %" PRIu64 " GiB mapping (sanitizer shadow): %s\n",
                  (hi - lo) >> 30, line.c_str());
      continue;
    }
    bool read_any = false;
    for (uint64_t at = lo; at < hi; at += kChunk) {
      const uint64_t start = at == lo ? lo : at - overlap;
      const size_t want =
          static_cast<size_t>(std::min(hi, at + kChunk) - start);
      ssize_t n = pread(mem, buf.data(), want, static_cast<off_t>(start));
      if (n <= 0) break;
      read_any = true;
      bytes += static_cast<uint64_t>(n) - (start == lo ? 0 : overlap);
      const size_t fresh_from = start == lo ? 0 : overlap;
      for (size_t k = 0; k < needles.size(); ++k) {
        const auto& nd = needles[k];
        const uint8_t* p = buf.data();
        const uint8_t* end = buf.data() + n;
        while (p < end) {
          const void* f =
              memmem(p, static_cast<size_t>(end - p), nd.data(), nd.size());
          if (!f) break;
          const size_t off =
              static_cast<size_t>(static_cast<const uint8_t*>(f) - buf.data());
          p = static_cast<const uint8_t*>(f) + 1;
          if (off + nd.size() <= fresh_from) continue;  // seen in last chunk
          ++hits[k];
          std::printf("hit: %s at 0x%" PRIx64 " in %s\n", names[k].c_str(),
                      start + off, line.c_str());
        }
      }
      if (static_cast<size_t>(n) < want) break;
    }
    if (read_any) {
      ++regions;
    } else {
      ++unreadable;
    }
  }
  close(mem);
  if (regions == 0 || bytes == 0) {
    std::fprintf(stderr,
                 "memscan: read no memory of process %s (%" PRIu64
                 " unreadable mappings): nothing was scanned\n",
                 pid.c_str(), unreadable);
    return 2;
  }
  bool any = false;
  for (size_t k = 0; k < needles.size(); ++k) {
    std::printf("%s found %" PRIu64 " times\n", names[k].c_str(), hits[k]);
    any = any || hits[k] > 0;
  }
  std::printf("regions=%" PRIu64 " bytes=%" PRIu64 " unreadable=%" PRIu64
              " skipped=%" PRIu64 "\n",
              regions, bytes, unreadable, skipped);
  return any ? 1 : 0;
}
