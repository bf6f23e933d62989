// memscan: searches the whole address space of a process for secrets, via
// /proc/PID/maps and /proc/PID/mem (root, CAP_SYS_PTRACE: works even when the
// target set PR_SET_DUMPABLE to 0).
//   memscan PID HEX [HEX...]
// Prints one line per needle: "HEX_PREFIX... found N times" with the
// mapping of each hit, and "regions=R bytes=B unreadable=U". Exit 0 when no
// needle was found, 1 when one was, 2 on error.
#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<uint8_t> FromHex(const std::string& h) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(
        static_cast<uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
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
      std::fprintf(stderr, "memscan: needle %d is shorter than 16 bytes\n",
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
  uint64_t regions = 0, bytes = 0, unreadable = 0;
  std::string line;
  std::vector<uint8_t> buf;
  while (std::getline(maps, line)) {
    std::istringstream ls(line);
    std::string range, perms;
    ls >> range >> perms;
    if (perms.empty() || perms[0] != 'r') continue;
    uint64_t lo = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    uint64_t hi = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    if (line.find("[vvar]") != std::string::npos) continue;
    buf.resize(hi - lo);
    ssize_t n = pread(mem, buf.data(), buf.size(), static_cast<off_t>(lo));
    if (n <= 0) {
      ++unreadable;
      continue;
    }
    ++regions;
    bytes += static_cast<uint64_t>(n);
    for (size_t k = 0; k < needles.size(); ++k) {
      const auto& nd = needles[k];
      const uint8_t* p = buf.data();
      const uint8_t* end = buf.data() + n;
      while (p < end) {
        const void* f =
            memmem(p, static_cast<size_t>(end - p), nd.data(), nd.size());
        if (!f) break;
        ++hits[k];
        uint64_t at = lo + static_cast<uint64_t>(
                               static_cast<const uint8_t*>(f) - buf.data());
        std::printf("hit: %s at 0x%" PRIx64 " in %s\n", names[k].c_str(), at,
                    line.c_str());
        p = static_cast<const uint8_t*>(f) + 1;
      }
    }
  }
  close(mem);
  bool any = false;
  for (size_t k = 0; k < needles.size(); ++k) {
    std::printf("%s found %" PRIu64 " times\n", names[k].c_str(), hits[k]);
    any = any || hits[k] > 0;
  }
  std::printf("regions=%" PRIu64 " bytes=%" PRIu64 " unreadable=%" PRIu64 "\n",
              regions, bytes, unreadable);
  return any ? 1 : 0;
}
