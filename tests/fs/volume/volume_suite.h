// The typed Volume suite (include/cmkfs/volume.h), shared by every test
// binary that has a volume stack to check: tests/fs/volume/volume_test.cc
// runs it over the layers of fs/volume (memory, thin, encrypted, read-only),
// tests/fs/ceph/rbd_volume_test.cc over the RBD volume.
//
// A test file defines its stacks, each a type with `static Stack Make()`,
// and instantiates the suite over them in this namespace:
//
//   namespace cmkfs::fs::volume_suite {
//   INSTANTIATE_TYPED_TEST_SUITE_P(VolumeTest, VolumeTest, MyStacks);
//   }
//
// (ctest's name of a case is then <label>.VolumeTest.<test><stack type>.)
//
// Every stack is kSize bytes; a factory that cannot build one returns a
// Stack with a null `vol` after ADD_FAILURE (the test then fails in SetUp).
// The hole and unmap checks are per kBlock (the thin layer's extent): a
// stack must report holes at least that finely. Include this header in one
// file of a test binary.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/volume.h"
#include "layers.h"

namespace cmkfs::fs::volume_suite {

inline constexpr uint64_t kSector = kVolumeSectorSize;
inline constexpr uint64_t kBlock = 64 * 1024;  // the thin layer's extent
// Not a multiple of a block: the last block is partial.
inline constexpr uint64_t kSize = 16 * kBlock + 3 * kSector;

// A stack under test: `vol` is what the test drives; `writer` fills it (the
// layer below a read-only one, else `vol`); `bottom` is the lowest layer,
// where the stored bytes (ciphertext for an encrypted stack) are read.
struct Stack {
  std::shared_ptr<Volume> vol, writer, bottom;
  std::shared_ptr<OwnedKeySlot> key;  // encrypted stacks only
  bool read_only = false;
  // What the layers need alive that they do not own (the thin stores).
  std::shared_ptr<void> keep;
};

inline std::shared_ptr<OwnedKeySlot> LoadedKey() {
  auto key = std::make_shared<OwnedKeySlot>("disk test");
  auto dek = crypto::RandomSecret(64);
  EXPECT_TRUE(dek.ok());
  EXPECT_TRUE(key->Load(*dek).ok());
  return key;
}

// The encryption layer over `below`, with a new loaded key.
inline Stack EncryptedOver(Stack below) {
  Stack s;
  s.bottom = below.bottom;
  s.keep = below.keep;
  s.key = LoadedKey();
  s.vol = s.writer = NewEncryptedVolume(below.vol, s.key, "disk test");
  return s;
}
inline Stack ReadOnlyOver(Stack below) {
  below.writer = below.vol;
  below.vol = NewReadOnlyVolume(below.vol, "snapshot test");
  below.read_only = true;
  return below;
}

inline std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<uint8_t>(seed + i * 7 + i / 4096);
  return v;
}

inline std::vector<uint8_t> ReadBack(Volume& v, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n, 0xEE);
  Status st = v.Read(offset, out, nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

inline bool AllZero(const std::vector<uint8_t>& v) {
  return std::all_of(v.begin(), v.end(), [](uint8_t b) { return b == 0; });
}

template <typename T>
class VolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    s_ = T::Make();
    ASSERT_NE(s_.vol, nullptr) << "the stack under test could not be built";
  }
  Volume& vol() { return *s_.vol; }
  Volume& writer() { return *s_.writer; }
  bool aligned_only() const { return s_.vol->alignment() > 1; }
  Stack s_;
};

TYPED_TEST_SUITE_P(VolumeTest);

TYPED_TEST_P(VolumeTest, ReadsBackWhatWasWritten) {
  EXPECT_EQ(this->vol().Size(), kSize);
  // One sector, a whole block, a run across blocks, the partial last block.
  const std::pair<uint64_t, size_t> writes[] = {
      {0, kSector},
      {kBlock, kBlock},
      {3 * kBlock - 2 * kSector, 5 * kBlock},
      {16 * kBlock, 3 * kSector}};
  uint8_t seed = 1;
  for (auto [off, n] : writes) {
    auto data = Pattern(n, seed++);
    ASSERT_TRUE(this->writer().Write(off, data).ok()) << off;
  }
  seed = 1;
  for (auto [off, n] : writes) {
    EXPECT_EQ(ReadBack(this->vol(), off, n), Pattern(n, seed++)) << off;
  }
  // One read over everything: written parts and holes between them.
  auto all = ReadBack(this->vol(), 0, kSize);
  EXPECT_EQ(std::vector<uint8_t>(all.begin() + kSector, all.begin() + kBlock),
            std::vector<uint8_t>(kBlock - kSector, 0));
}

TYPED_TEST_P(VolumeTest, UnalignedIo) {
  auto data = Pattern(3 * kSector + 123, 9);
  const uint64_t off = kBlock - 1000;  // crosses sectors and a block
  Status st = this->writer().Write(off, data);
  if (this->s_.writer->alignment() > 1) {
    EXPECT_EQ(st.kind(), ErrorKind::kInvalidArgument) << st.ToString();
    std::vector<uint8_t> buf(100);
    EXPECT_EQ(this->vol().Read(10, buf, nullptr).kind(),
              ErrorKind::kInvalidArgument);
    return;
  }
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ReadBack(this->vol(), off, data.size()), data);
  // Neighbours of a partial sector are untouched; a later sub-sector write
  // keeps the bytes around it.
  EXPECT_TRUE(AllZero(ReadBack(this->vol(), off - 3000, 3000)));
  const uint8_t one[3] = {1, 2, 3};
  ASSERT_TRUE(this->writer().Write(off + 10, one).ok());
  auto expect = data;
  std::memcpy(expect.data() + 10, one, 3);
  EXPECT_EQ(ReadBack(this->vol(), off, data.size()), expect);
  auto odd = ReadBack(this->vol(), off + 5, 17);
  EXPECT_EQ(odd, std::vector<uint8_t>(expect.begin() + 5, expect.begin() + 22));
}

TYPED_TEST_P(VolumeTest, HolesReadAsZero) {
  EXPECT_TRUE(AllZero(ReadBack(this->vol(), 0, kSize)));
  auto run = this->vol().BlockStatus(0, kSize);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_FALSE(run->data);
  EXPECT_EQ(run->length, kSize);
  // A hole reported sector by sector by a read that asks for them.
  ASSERT_TRUE(this->writer().Write(2 * kBlock, Pattern(kBlock, 3)).ok());
  std::vector<uint8_t> buf(4 * kBlock);
  HoleMap holes;
  ASSERT_TRUE(this->vol().Read(kBlock, buf, &holes).ok());
  EXPECT_TRUE(holes.hole(0));
  EXPECT_FALSE(holes.hole(kBlock / kSector));
  EXPECT_TRUE(holes.hole(2 * kBlock / kSector));
  EXPECT_EQ(
      std::vector<uint8_t>(buf.begin() + kBlock, buf.begin() + 2 * kBlock),
      Pattern(kBlock, 3));
  run = this->vol().BlockStatus(kBlock, 3 * kBlock);
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(run->data);
  EXPECT_EQ(run->length, kBlock);
  run = this->vol().BlockStatus(2 * kBlock, 3 * kBlock);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->data);
  EXPECT_EQ(run->length, kBlock);
}

TYPED_TEST_P(VolumeTest, ZeroWithAndWithoutUnmap) {
  ASSERT_TRUE(this->writer().Write(0, Pattern(8 * kBlock, 5)).ok());
  // With unmap: whole blocks become holes; the partial sector at its start
  // is written as zeros.
  Status st = this->writer().Zero(kBlock - kSector, 2 * kBlock + kSector,
                                  /*unmap=*/true);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(
      AllZero(ReadBack(this->vol(), kBlock - kSector, 2 * kBlock + kSector)));
  auto run = this->vol().BlockStatus(kBlock, 2 * kBlock);
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(run->data);
  EXPECT_EQ(run->length, 2 * kBlock);
  run = this->vol().BlockStatus(0, kBlock);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->data);
  // Without unmap: zeros, still allocated.
  ASSERT_TRUE(this->writer().Zero(4 * kBlock, kBlock, /*unmap=*/false).ok());
  EXPECT_TRUE(AllZero(ReadBack(this->vol(), 4 * kBlock, kBlock)));
  run = this->vol().BlockStatus(4 * kBlock, kBlock);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->data);
  // The rest is intact.
  auto all = Pattern(8 * kBlock, 5);
  EXPECT_EQ(
      ReadBack(this->vol(), 3 * kBlock, kBlock),
      std::vector<uint8_t>(all.begin() + 3 * kBlock, all.begin() + 4 * kBlock));
  EXPECT_EQ(ReadBack(this->vol(), 5 * kBlock, 3 * kBlock),
            std::vector<uint8_t>(all.begin() + 5 * kBlock, all.end()));
  if (!this->aligned_only()) {
    // Unaligned zero inside one sector.
    ASSERT_TRUE(this->writer().Zero(5 * kBlock + 100, 50, true).ok());
    auto part = ReadBack(this->vol(), 5 * kBlock, 200);
    EXPECT_TRUE(AllZero({part.begin() + 100, part.begin() + 150}));
    EXPECT_EQ(part[99], all[5 * kBlock + 99]);
    EXPECT_EQ(part[150], all[5 * kBlock + 150]);
  }
}

TYPED_TEST_P(VolumeTest, SizeBounds) {
  std::vector<uint8_t> buf(2 * kSector);
  EXPECT_EQ(this->vol().Read(kSize - kSector, buf, nullptr).kind(),
            ErrorKind::kOutOfRange);
  EXPECT_EQ(this->vol().Read(kSize + kSector, buf, nullptr).kind(),
            ErrorKind::kOutOfRange);
  EXPECT_TRUE(this->vol().Read(kSize - 2 * kSector, buf, nullptr).ok());
  const ErrorKind write_error =
      this->s_.read_only ? ErrorKind::kReadOnly : ErrorKind::kOutOfRange;
  EXPECT_EQ(this->vol().Write(kSize - kSector, buf).kind(), write_error);
  EXPECT_EQ(this->vol().Zero(kSize - kSector, 2 * kSector, true).kind(),
            write_error);
  EXPECT_EQ(this->vol().Write(~0ull - kSector + 1, buf).kind(), write_error);
  EXPECT_EQ(this->vol().BlockStatus(kSize, kSector).status().kind(),
            ErrorKind::kOutOfRange);
  // Nothing was written by the refused calls.
  EXPECT_TRUE(AllZero(ReadBack(this->vol(), kSize - 2 * kSector, 2 * kSector)));
}

TYPED_TEST_P(VolumeTest, ReadOnlyRefusesWrites) {
  auto data = Pattern(kBlock, 11);
  ASSERT_TRUE(this->writer().Write(0, data).ok());
  Status w = this->vol().Write(0, Pattern(kBlock, 12));
  Status z = this->vol().Zero(0, kBlock, true);
  if (this->s_.read_only) {
    EXPECT_EQ(w.kind(), ErrorKind::kReadOnly) << w.ToString();
    EXPECT_EQ(z.kind(), ErrorKind::kReadOnly) << z.ToString();
    EXPECT_EQ(ReadBack(this->vol(), 0, kBlock), data);
  } else {
    EXPECT_TRUE(w.ok()) << w.ToString();
    EXPECT_TRUE(z.ok()) << z.ToString();
    EXPECT_TRUE(AllZero(ReadBack(this->vol(), 0, kBlock)));
  }
  EXPECT_TRUE(this->vol().Flush().ok());
}

// An encrypted stack stores no plaintext, and once sealed returns none: reads
// and writes fail with KeyUnavailable and leave the caller's buffer alone. An
// unencrypted stack is the control: the same probe finds its plaintext.
TYPED_TEST_P(VolumeTest, SealedRefusesIoAndNeverReturnsPlaintext) {
  auto data = Pattern(2 * kBlock, 13);
  ASSERT_TRUE(this->writer().Write(kBlock, data).ok());
  std::vector<uint8_t> stored(2 * kBlock);
  ASSERT_TRUE(this->s_.bottom->Read(kBlock, stored, nullptr).ok());
  if (!this->s_.key) {
    EXPECT_EQ(stored, data);
    return;
  }
  EXPECT_NE(stored, data);
  for (size_t i = 0; i + kSector <= stored.size(); i += kSector) {
    EXPECT_NE(0, std::memcmp(stored.data() + i, data.data() + i, kSector)) << i;
  }
  this->s_.key->Seal("key disabled");
  std::vector<uint8_t> buf(2 * kBlock, 0xAA);
  Status r = this->vol().Read(kBlock, buf, nullptr);
  EXPECT_EQ(r.kind(), ErrorKind::kKeyUnavailable) << r.ToString();
  EXPECT_NE(r.message().find("key disabled"), std::string::npos);
  EXPECT_EQ(buf, std::vector<uint8_t>(2 * kBlock, 0xAA));
  HoleMap holes;
  EXPECT_EQ(this->vol().Read(kBlock, buf, &holes).kind(),
            ErrorKind::kKeyUnavailable);
  EXPECT_EQ(buf, std::vector<uint8_t>(2 * kBlock, 0xAA));
  const ErrorKind write_error =
      this->s_.read_only ? ErrorKind::kReadOnly : ErrorKind::kKeyUnavailable;
  EXPECT_EQ(this->vol().Write(0, data).kind(), write_error);
  EXPECT_EQ(this->vol().Zero(kBlock, kBlock, true).kind(), write_error);
  std::vector<uint8_t> after(2 * kBlock);
  ASSERT_TRUE(this->s_.bottom->Read(kBlock, after, nullptr).ok());
  EXPECT_EQ(after, stored);
  // A new key is another volume: the old ciphertext does not read as the
  // plaintext under it.
  auto other = crypto::RandomSecret(64);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(this->s_.key->Load(*other).ok());
  EXPECT_NE(ReadBack(this->vol(), kBlock, 2 * kBlock), data);
}

REGISTER_TYPED_TEST_SUITE_P(VolumeTest, ReadsBackWhatWasWritten, UnalignedIo,
                            HolesReadAsZero, ZeroWithAndWithoutUnmap,
                            SizeBounds, ReadOnlyRefusesWrites,
                            SealedRefusesIoAndNeverReturnsPlaintext);

}  // namespace cmkfs::fs::volume_suite
