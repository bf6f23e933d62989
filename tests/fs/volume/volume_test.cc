// One typed suite for the Volume interface (volume_suite.h), run against
// every layer combination the product stacks (fs/volume/layers.h) over the
// memory volume of tests/support, and over the thin layer on the real stores
// (an LMDB metadata store, the pool file in memory).
#include <memory>

#include "fs/volume/volume_suite.h"
#include "layers.h"
#include "support/memory_volume.h"
#include "thin_stores.h"

namespace cmkfs::fs {
namespace {

using volume_suite::EncryptedOver;
using volume_suite::kSize;
using volume_suite::LoadedKey;
using volume_suite::ReadOnlyOver;
using volume_suite::Stack;

Stack Memory() {
  Stack s;
  s.vol = s.writer = s.bottom = NewMemoryVolume(kSize);
  return s;
}
Stack Thin() {
  Stack s;
  auto stores = std::make_shared<ThinStores>();
  s.keep = stores;
  s.vol = s.writer = s.bottom = stores->Thin(1, kSize);
  return s;
}
// As the factory assembles it: the thin layer's fill is the key's encrypted
// zeros.
Stack EncryptedOverThin() {
  Stack s;
  auto stores = std::make_shared<ThinStores>();
  s.keep = stores;
  s.key = LoadedKey();
  s.bottom = stores->Thin(
      1, kSize, [key = s.key](uint64_t sector, std::span<uint8_t> out) {
        return EncryptedZeros(*key, sector, out);
      });
  s.vol = s.writer = NewEncryptedVolume(s.bottom, s.key, "disk test");
  return s;
}

struct MemoryStack {
  static Stack Make() { return Memory(); }
};
struct EncryptedMemoryStack {
  static Stack Make() { return EncryptedOver(Memory()); }
};
struct ReadOnlyMemoryStack {
  static Stack Make() { return ReadOnlyOver(Memory()); }
};
struct ReadOnlyEncryptedMemoryStack {
  static Stack Make() { return ReadOnlyOver(EncryptedOver(Memory())); }
};
struct ThinStack {
  static Stack Make() { return Thin(); }
};
struct EncryptedThinStack {
  static Stack Make() { return EncryptedOverThin(); }
};
struct ReadOnlyThinStack {
  static Stack Make() { return ReadOnlyOver(Thin()); }
};
struct ReadOnlyEncryptedThinStack {
  static Stack Make() { return ReadOnlyOver(EncryptedOverThin()); }
};

using Stacks =
    ::testing::Types<MemoryStack, EncryptedMemoryStack, ReadOnlyMemoryStack,
                     ReadOnlyEncryptedMemoryStack, ThinStack,
                     EncryptedThinStack, ReadOnlyThinStack,
                     ReadOnlyEncryptedThinStack>;

}  // namespace
}  // namespace cmkfs::fs

namespace cmkfs::fs::volume_suite {
// The prefix repeats the suite's name so that ctest's names stay
// engine.VolumeTest.<test><type>.
INSTANTIATE_TYPED_TEST_SUITE_P(VolumeTest, VolumeTest, Stacks);
}  // namespace cmkfs::fs::volume_suite
