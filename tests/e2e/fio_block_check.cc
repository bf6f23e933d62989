// fio_block_check FILE OFFSET LENGTH BLOCK_SIZE [--no-zero]
// Checks that every block of the range is either all zeros or an intact
// block written by fio with verify=crc32c: magic, length and offset in its
// header, and both the header and the data checksum match. A torn block
// (half old, half new) fails the data checksum. Prints "valid=N zero=M" and
// exits 1 on the first bad block.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// fio's struct verify_header (fio 3.x), followed by struct vhdr_crc32.
struct VerifyHeader {
  uint16_t magic;
  uint16_t verify_type;
  uint32_t len;
  uint64_t rand_seed;
  uint64_t offset;
  uint32_t time_sec;
  uint32_t time_nsec;
  uint16_t thread;
  uint16_t numberio;
  uint32_t crc32;
};
static_assert(sizeof(VerifyHeader) == 40);
constexpr uint16_t kFioMagic = 0xacca;
constexpr size_t kHeaderSize = sizeof(VerifyHeader) + sizeof(uint32_t);

std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

uint32_t Crc32c(const uint8_t* p, size_t n) {
  static const std::array<uint32_t, 256> table = MakeTable();
  uint32_t crc = ~0u;
  while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

bool CrcMatches(uint32_t stored, uint32_t computed) {
  return stored == computed || stored == ~computed;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: fio_block_check FILE OFFSET LENGTH BLOCK_SIZE "
                 "[--no-zero]\n");
    return 2;
  }
  const uint64_t offset = std::strtoull(argv[2], nullptr, 0);
  const uint64_t length = std::strtoull(argv[3], nullptr, 0);
  const uint64_t bs = std::strtoull(argv[4], nullptr, 0);
  const bool allow_zero = !(argc > 5 && std::string(argv[5]) == "--no-zero");
  if (bs < kHeaderSize || length % bs != 0) {
    std::fprintf(stderr, "bad block size or length\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) {
    std::perror(argv[1]);
    return 2;
  }
  std::vector<uint8_t> block(bs);
  const std::vector<uint8_t> zero(bs, 0);
  uint64_t valid = 0, zeros = 0;
  for (uint64_t off = offset; off < offset + length; off += bs) {
    if (pread(fd, block.data(), bs, static_cast<off_t>(off)) !=
        static_cast<ssize_t>(bs)) {
      std::fprintf(stderr, "short read at %llu\n",
                   static_cast<unsigned long long>(off));
      return 1;
    }
    if (block == zero) {
      if (!allow_zero) {
        std::fprintf(stderr, "zero block at %llu\n",
                     static_cast<unsigned long long>(off));
        return 1;
      }
      ++zeros;
      continue;
    }
    VerifyHeader h;
    std::memcpy(&h, block.data(), sizeof(h));
    uint32_t data_crc;
    std::memcpy(&data_crc, block.data() + sizeof(h), sizeof(data_crc));
    const char* problem = nullptr;
    if (h.magic != kFioMagic) {
      problem = "bad magic";
    } else if (h.len != bs) {
      problem = "bad length";
    } else if (h.offset != off) {
      problem = "block from another offset";
    } else if (!CrcMatches(h.crc32, Crc32c(block.data(),
                                           offsetof(VerifyHeader, crc32)))) {
      problem = "header checksum mismatch";
    } else if (!CrcMatches(data_crc, Crc32c(block.data() + kHeaderSize,
                                            bs - kHeaderSize))) {
      problem = "data checksum mismatch (torn block)";
    }
    if (problem != nullptr) {
      std::fprintf(stderr, "%s at %llu\n", problem,
                   static_cast<unsigned long long>(off));
      return 1;
    }
    ++valid;
  }
  std::printf("valid=%llu zero=%llu\n", static_cast<unsigned long long>(valid),
              static_cast<unsigned long long>(zeros));
  close(fd);
  return 0;
}
