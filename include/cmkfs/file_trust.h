// Files that cmkfs trusts with its privileges: the config file (it names the
// on_seal command and the PKCS#11 module, both run as the daemon's user), the
// PKCS#11 module, and the secret files (PKCS#11 PIN, vault passphrase). The
// rule is sshd's for authorized_keys: the file and every directory above it
// belong to root or to the running user, and nobody else can write them.
// (The state directory has checks of its own.)
#pragma once

#include <cstddef>
#include <filesystem>
#include <string_view>

#include "cmkfs/crypto.h"
#include "cmkfs/status.h"

namespace cmkfs {

enum class FileSecrecy {
  kShared,   // others may read it (config file, module)
  kPrivate,  // no group or other permission at all (PIN, passphrase)
};

// Resolves symlinks in `path` and refuses (InvalidArgument, naming `what`, the
// path, the owner and mode found, and the fix) unless the file is a regular
// file owned by root or the running uid and not writable by group or others
// (kPrivate: no group or other permission bits at all), and every directory
// above it is owned by root or the running uid and not writable by group or
// others; a root-owned directory with the sticky bit (/tmp) is accepted, since
// nobody else can rename or remove what it holds. NotFound when it does not
// exist. Returns the resolved path, which only root or we can change: open or
// load that path, not `path`.
Result<std::filesystem::path> CheckTrustedFile(
    const std::filesystem::path& path, std::string_view what,
    FileSecrecy secrecy);

// Reads all of `path` into locked memory, which is wiped when it is freed.
// InvalidArgument naming `what`, the file and the limit when the file holds
// more than `limit` bytes; NotFound when it does not exist.
Result<crypto::SecretBytes> ReadFileToSecret(const std::filesystem::path& path,
                                             std::string_view what,
                                             size_t limit);

}  // namespace cmkfs
