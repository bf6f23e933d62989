// Loading the vault master key from a key file.
#pragma once

#include <filesystem>

#include "cmkfs/crypto.h"
#include "cmkfs/status.h"

namespace cmkfs::keystore {

constexpr size_t kMasterKeySize = 32;

// Reads the 32-byte master key from `path`, creating the file (mode 0600,
// O_EXCL, 32 random bytes, fsync'ed) if it does not exist. InvalidArgument for
// a file readable or writable by group or others, or of the wrong length.
Result<crypto::SecretBytes> LoadOrCreateMasterKeyFile(
    const std::filesystem::path& path);

// Reads a passphrase file (trailing newline dropped) into secret memory.
// InvalidArgument unless it is a trusted private file (CheckTrustedFile:
// owned by root or us, no group/other permissions, in trusted directories),
// and for an empty passphrase or one over 4 KiB.
Result<crypto::SecretBytes> ReadPassphraseFile(
    const std::filesystem::path& path);

}  // namespace cmkfs::keystore
