// The volume layers of a disk's data path (include/cmkfs/volume.h) and the
// key slot of the encryption layer. Internal to fs/: the engine assembles
// them; tests build each one alone.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "cmkfs/crypto.h"
#include "cmkfs/mutex.h"
#include "cmkfs/volume.h"

namespace cmkfs::fs {

class ExtentMap;

// Where an encryption layer finds its key for one I/O. Thread-safe.
class KeySlot {
 public:
  virtual ~KeySlot() = default;
  // The cipher, valid until the matching Release (a seal waits for it);
  // KeyUnavailable naming the volume and why it is sealed when there is no
  // key. Every successful Acquire is followed by exactly one Release.
  virtual Result<const crypto::XtsCipher*> Acquire() = 0;
  virtual void Release() = 0;
};

// A slot that owns its key: Load installs one, Seal drops it. Sealing waits
// for the I/O that holds the key, destroys (wipes) the cipher and makes
// every later Acquire fail until the next Load.
class OwnedKeySlot : public KeySlot {
 public:
  // `what` names the volume in errors ("disk d1").
  explicit OwnedKeySlot(std::string what);
  // InvalidArgument for a key XtsCipher refuses (not 64 bytes, equal halves).
  Status Load(const crypto::SecretBytes& key) EXCLUDES(mu_);
  void Seal(std::string reason) EXCLUDES(mu_);
  bool sealed() const EXCLUDES(mu_);

  Result<const crypto::XtsCipher*> Acquire() override EXCLUDES(mu_);
  void Release() override EXCLUDES(mu_);

 private:
  const std::string what_;
  mutable Mutex mu_;
  CondVar idle_;  // signalled when in_flight_ drops to 0
  std::unique_ptr<crypto::XtsCipher> cipher_ GUARDED_BY(mu_);
  std::string reason_ GUARDED_BY(mu_) = "no key loaded";
  uint64_t in_flight_ GUARDED_BY(mu_) = 0;
};

// AES-256-XTS over `lower`: sector s (bytes [s*4096, (s+1)*4096)) is
// encrypted with tweak s, the numbering of the on-disk format
// (docs/format.md). Accepts any alignment: partial sectors are
// read-modify-write under a per-sector lock, so concurrent writes to disjoint
// bytes of one sector both land. `lower` must be sector-aligned or finer and
// report holes (they read as zeros here); its size is this volume's.
// `name` is used in range errors. Errors of the slot (KeyUnavailable) are
// returned before any byte moves.
std::unique_ptr<Volume> NewEncryptedVolume(std::shared_ptr<Volume> lower,
                                           std::shared_ptr<KeySlot> key,
                                           std::string name);

// The ciphertext of zeros for sectors [first_sector, first_sector +
// out.size()/4096) under `key`: what the layer below writes for the sectors
// of a new block that the write does not cover (the thin layer's fill).
Status EncryptedZeros(KeySlot& key, uint64_t first_sector,
                      std::span<uint8_t> out);

// Refuses Write and Zero with ReadOnly ("<name> is open read-only"); passes
// everything else to `lower`.
std::unique_ptr<Volume> NewReadOnlyVolume(std::shared_ptr<Volume> lower,
                                          std::string name);

// What a hole holds for the layer above a thin volume, for sectors
// [first_sector, first_sector + out.size() / 4096): the thin layer writes it
// into the parts of a new extent that a write does not cover and for Zero.
// Null: zeros (a thin volume read directly).
using ZeroFill =
    std::function<Status(uint64_t first_sector, std::span<uint8_t> out)>;

struct ThinSpec {
  uint64_t rid = 0;  // the resource whose extents the volume maps
  std::string name;  // in errors
  // The size now (a resize changes it while the volume lives).
  std::shared_ptr<const std::atomic<uint64_t>> size;
  ZeroFill fill;
};

// Extent -> slot mapping over `map` and its slot pool (which outlive the
// volume): a write to an unmapped or shared extent allocates a slot and
// writes the whole extent there (copying the stored bytes of a shared one,
// the fill for a new one); Zero with unmap unmaps whole extents (and the
// tail of the last one). Offsets and lengths must be multiples of 4096
// (InvalidArgument). Holes read as the fill unless the read asks for a
// HoleMap. Flush commits the map's batch.
std::unique_ptr<Volume> NewThinVolume(ExtentMap* map, ThinSpec spec);

// A resource's data path, assembled in one place.
struct VolumeSpec {
  uint64_t rid = 0;
  std::string name;         // "d1": range errors
  std::string description;  // "disk d1": read-only errors
  std::shared_ptr<const std::atomic<uint64_t>> size;
  std::shared_ptr<KeySlot> key;
  bool read_only = false;
};

// read-only(encrypted(thin(map, pool), key)), the read-only layer only when
// spec.read_only. The thin layer's fill is the key's encrypted zeros.
std::shared_ptr<Volume> AssembleVolume(ExtentMap* map, const VolumeSpec& spec);

}  // namespace cmkfs::fs
