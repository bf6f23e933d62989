// Erase slots: one file of fixed-size slots, each holding a 32-byte secret
// that a sealed record needs besides its other key (a sealed software key
// besides the vault master key, a wrapped DEK besides the vault's private
// key). LMDB is copy-on-write and keeps a deleted record's bytes in free
// pages, so deleting a record does not erase it; erasing its slot does: the
// slot is overwritten in place, and no copy of the database, old or new,
// opens the record without it (docs/threat-model.md, "What purge erases").
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/mutex.h"
#include "cmkfs/status.h"

namespace cmkfs {

// Where a sealed record's slot secret is: the header the record starts with,
// "MAGC" (4 bytes, names the record's format), the slot (u32 little endian)
// and the secret's fingerprint (the first 8 bytes of SHA-256 over a fixed
// prefix and the secret: public, and identifies the secret, not the slot).
struct SlotRef {
  static constexpr size_t kFingerprintSize = 8;
  static constexpr size_t kEncodedSize = 4 + 4 + kFingerprintSize;
  uint32_t slot = 0;
  std::array<uint8_t, kFingerprintSize> fingerprint{};

  static SlotRef Of(uint32_t slot, const crypto::SecretBytes& secret);
  // The header, with `magic` (4 characters).
  std::vector<uint8_t> Encode(std::string_view magic) const;
  // nullopt when `sealed` does not start with `magic` and a whole header.
  static std::optional<SlotRef> Decode(std::string_view magic,
                                       std::span<const uint8_t> sealed);
};

// Thread-safe, and safe to share between processes that open the same file:
// Allocate and Erase(SlotRef) hold `mu_` (the threads of this instance) and
// an exclusive flock(2) on the file (other instances and processes).
class EraseSlotFile {
 public:
  static constexpr size_t kSecretSize = 32;

  // Opens `path`, creating it (0600) if missing; the file must pass the state
  // directory's checks (path_guard::OpenNoFollow, owner only). Corruption when
  // its size is not a whole number of slots.
  static Result<std::unique_ptr<EraseSlotFile>> Open(
      const std::filesystem::path& path);
  ~EraseSlotFile();
  EraseSlotFile(const EraseSlotFile&) = delete;
  EraseSlotFile& operator=(const EraseSlotFile&) = delete;

  // Fills an erased slot (or a new one at the end) with a fresh random secret
  // and syncs it before returning the slot number and the secret.
  Result<uint32_t> Allocate(crypto::SecretBytes* secret);
  // The secret in `slot`. NotFound when the slot is erased or past the end.
  Result<crypto::SecretBytes> Read(uint32_t slot) const;
  // Overwrites `slot` with zeros and syncs. An erased or missing slot is Ok.
  // Only for a slot nobody else can have been given (just allocated, or
  // named by no record of the file's only user).
  Status Erase(uint32_t slot);
  // Erase(slot) if the slot still holds the secret of `ref` (its
  // fingerprint, checked under the allocation lock); a slot erased and
  // given to another record meanwhile is left alone. Ok either way.
  Status Erase(const SlotRef& ref);
  // Every slot that holds a secret, in order. For a sweep by the only user
  // of the file: a slot allocated meanwhile may be missing.
  Result<std::vector<uint32_t>> UsedSlots() const;

  const std::filesystem::path& path() const { return path_; }

 private:
  // Calls visit(slot, erased) for each slot in order until it returns false;
  // `count` receives the number of slots in the file.
  Status ScanSlots(const std::function<bool(uint64_t slot, bool erased)>& visit,
                   uint64_t* count) const;
  EraseSlotFile(std::filesystem::path path, int fd)
      : path_(std::move(path)), fd_(fd) {}

  const std::filesystem::path path_;
  const int fd_;
  Mutex mu_;  // with the flock: one allocation or checked erase at a time
};

}  // namespace cmkfs
