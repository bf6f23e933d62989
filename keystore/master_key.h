// Loading the vault master key from a key file.
#pragma once

#include <filesystem>
#include <span>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/keystore.h"
#include "cmkfs/status.h"
#include "tpm2_seal.h"

namespace cmkfs::keystore {

constexpr size_t kMasterKeySize = 32;

// Reads the 32-byte master key from `path`, creating the file (mode 0600,
// O_EXCL, 32 random bytes, fsync'ed) if it does not exist. InvalidArgument for
// a file readable or writable by group or others, or of the wrong length.
Result<crypto::SecretBytes> LoadOrCreateMasterKeyFile(
    const std::filesystem::path& path);

// Reads the 32-byte master key from an existing `path` (same checks);
// NotFound when there is no such file.
Result<crypto::SecretBytes> LoadMasterKeyFile(
    const std::filesystem::path& path);

// Writes `data` (mode 0600) to `path` crash-safely: a temporary file in the
// same directory, fsync, then published under `path` (rename when `replace`,
// else link, AlreadyExists when `path` exists), and the directory fsync'ed.
Status WriteFileAtomically(const std::filesystem::path& path,
                           std::span<const uint8_t> data, bool replace);

// Removes `path` and fsyncs its directory. Ok when it does not exist.
Status RemoveFileDurably(const std::filesystem::path& path);

// Reads a whole file of at most `max` bytes; NotFound when it is missing.
Result<std::vector<uint8_t>> ReadSmallFile(const std::filesystem::path& path,
                                           size_t max);

// master_key = tpm2 (master_key_tpm2.cc). The TPM settings of `options`;
// InvalidArgument for a bad [keystore] tpm2_pcrs.
Result<Tpm2Options> Tpm2OptionsOf(const KeyStoreOptions& options);
// Unseals options.tpm2_sealed_file; NotFound when the file does not exist.
Result<crypto::SecretBytes> UnsealMasterKey(const KeyStoreOptions& options);
// A fresh 32-byte key sealed into options.tpm2_sealed_file (new vaults).
// When another process published one first, that one is unsealed.
Result<crypto::SecretBytes> CreateSealedMasterKey(
    const KeyStoreOptions& options);

// Reads a passphrase file (trailing newline dropped) into secret memory.
// InvalidArgument unless it is a trusted private file (CheckTrustedFile:
// owned by root or us, no group/other permissions, in trusted directories),
// and for an empty passphrase or one over 4 KiB.
Result<crypto::SecretBytes> ReadPassphraseFile(
    const std::filesystem::path& path);

}  // namespace cmkfs::keystore
