// The erase slots of a vault: one file of fixed-size slots, each holding a
// 32-byte secret that a sealed software key needs besides the vault master
// key. LMDB is copy-on-write and keeps a deleted record's bytes in free pages,
// so deleting a sealed key from the database does not erase it; erasing its
// slot does: the slot is overwritten in place, and no copy of the database,
// old or new, opens without it (docs/threat-model.md, "What purge erases").
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "cmkfs/crypto.h"
#include "cmkfs/status.h"

namespace cmkfs::keystore {

// Thread-safe, and safe to share between processes that open the same file:
// Allocate holds an exclusive flock(2) on it while it picks a slot.
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
  Status Erase(uint32_t slot);

  const std::filesystem::path& path() const { return path_; }

 private:
  EraseSlotFile(std::filesystem::path path, int fd)
      : path_(std::move(path)), fd_(fd) {}

  const std::filesystem::path path_;
  const int fd_;
};

}  // namespace cmkfs::keystore
