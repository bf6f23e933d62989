// The vault master key sealed to a TPM 2.0 (master_key = "tpm2") and the
// migration of a file key into the TPM.
#include <algorithm>
#include <string>

#include "cmkfs/keystore.h"
#include "master_key.h"
#include "tpm2_seal.h"

namespace cmkfs::keystore {
namespace {

constexpr size_t kMaxSealedFile = 4096;

std::string SealedWhere(const KeyStoreOptions& options) {
  return "TPM2-sealed vault master key " + options.tpm2_sealed_file.string();
}

Status NeedSealedFile() {
  return InvalidArgumentError(
      "master_key = tpm2 needs keystore.tpm2_sealed_file (default "
      "<state_dir>/vault.tpm2)");
}

}  // namespace

Result<MasterKeySource> ParseMasterKeySource(std::string_view text) {
  if (text.empty()) return MasterKeySource::kAuto;
  if (text == "file") return MasterKeySource::kFile;
  if (text == "passphrase") return MasterKeySource::kPassphrase;
  if (text == "tpm2") return MasterKeySource::kTpm2;
  return InvalidArgumentError("unknown master key source '" +
                              std::string(text) +
                              "'; accepted: file, passphrase, tpm2");
}

MasterKeySource EffectiveMasterKeySource(const KeyStoreOptions& options) {
  if (options.master_key != MasterKeySource::kAuto) return options.master_key;
  return options.passphrase_file.empty() ? MasterKeySource::kFile
                                         : MasterKeySource::kPassphrase;
}

Result<Tpm2Options> Tpm2OptionsOf(const KeyStoreOptions& options) {
  Tpm2Options tpm;
  tpm.tcti = options.tpm2_tcti;
  auto pcrs = ParsePcrList(options.tpm2_pcrs);
  if (!pcrs.ok()) return pcrs.status().WithContext("[keystore] tpm2_pcrs");
  tpm.pcrs = std::move(*pcrs);
  return tpm;
}

Result<crypto::SecretBytes> UnsealMasterKey(const KeyStoreOptions& options) {
  if (options.tpm2_sealed_file.empty()) return NeedSealedFile();
  CMKFS_ASSIGN_OR_RETURN(Tpm2Options tpm, Tpm2OptionsOf(options));
  CMKFS_ASSIGN_OR_RETURN(
      std::vector<uint8_t> blob,
      ReadSmallFile(options.tpm2_sealed_file, kMaxSealedFile));
  auto key = Tpm2Unseal(tpm, blob);
  if (!key.ok()) return key.status().WithContext(SealedWhere(options));
  if (key->size() != kMasterKeySize) {
    return CorruptionError(SealedWhere(options) + " holds " +
                           std::to_string(key->size()) +
                           " bytes, not a 32-byte master key");
  }
  return key;
}

Result<crypto::SecretBytes> CreateSealedMasterKey(
    const KeyStoreOptions& options) {
  if (options.tpm2_sealed_file.empty()) return NeedSealedFile();
  CMKFS_ASSIGN_OR_RETURN(Tpm2Options tpm, Tpm2OptionsOf(options));
  CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                         crypto::RandomSecret(kMasterKeySize));
  auto blob = Tpm2Seal(tpm, key);
  if (!blob.ok()) return blob.status().WithContext(SealedWhere(options));
  Status s = WriteFileAtomically(options.tpm2_sealed_file, *blob, false);
  if (s.kind() == ErrorKind::kAlreadyExists) return UnsealMasterKey(options);
  CMKFS_RETURN_IF_ERROR(s);
  return key;
}

Status MigrateMasterKeyToTpm2(
    const KeyStoreOptions& options,
    const std::function<void(std::string_view step)>& after_step) {
  auto step = [&](std::string_view name) {
    if (after_step) after_step(name);
  };
  if (options.tpm2_sealed_file.empty()) return NeedSealedFile();
  CMKFS_ASSIGN_OR_RETURN(Tpm2Options tpm, Tpm2OptionsOf(options));
  auto file_key = LoadMasterKeyFile(options.master_key_file);
  if (file_key.status().kind() == ErrorKind::kNotFound) {
    auto sealed = UnsealMasterKey(options);
    if (sealed.status().kind() == ErrorKind::kNotFound) {
      return FailedPreconditionError(
          "nothing to migrate: neither the master key file " +
          options.master_key_file.string() + " nor the sealed file " +
          options.tpm2_sealed_file.string() + " exists");
    }
    return sealed.status();  // Ok: already migrated
  }
  if (!file_key.ok()) return file_key.status();
  {
    // The file key must be the one this vault was made with.
    KeyStoreOptions check = options;
    check.master_key = MasterKeySource::kFile;
    check.hsm_enabled = false;
    CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<KeyStore> ks, OpenKeyStore(check));
  }
  auto sealed = UnsealMasterKey(options);
  if (sealed.status().kind() == ErrorKind::kNotFound) {
    CMKFS_ASSIGN_OR_RETURN(std::vector<uint8_t> blob, Tpm2Seal(tpm, *file_key));
    CMKFS_RETURN_IF_ERROR(
        WriteFileAtomically(options.tpm2_sealed_file, blob, false));
    step("sealed-file-written");
    sealed = UnsealMasterKey(options);
  }
  if (!sealed.ok()) return sealed.status();
  if (!crypto::ConstantTimeEquals(sealed->span(), file_key->span())) {
    return FailedPreconditionError(
        "the sealed file " + options.tpm2_sealed_file.string() +
        " holds another master key than " + options.master_key_file.string() +
        "; move it away and run the migration again");
  }
  CMKFS_RETURN_IF_ERROR(RemoveFileDurably(options.master_key_file));
  step("key-file-removed");
  return Status::Ok();
}

}  // namespace cmkfs::keystore
