// Sealing a secret (the vault master key) to a TPM 2.0 through tpm2-tss
// ESAPI. The only file of the project that includes tss2 headers is
// tpm2_seal.cc.
//
// The secret becomes a keyed-hash object (fixedTPM, fixedParent) under a
// primary storage key that the TPM derives from its owner seed each time (an
// ECC P-256 key from the standard storage template), so only the TPM that
// sealed the blob can load it. With PCRs, the object's policy is PolicyPCR
// over their SHA-256 values at sealing time. Commands that carry the secret
// (Create, Unseal) run in a session salted with the primary key and with
// parameter encryption, so it never crosses the TCTI in the clear.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/status.h"

namespace cmkfs::keystore {

struct Tpm2Options {
  // tpm2-tss TCTI configuration: "device:/dev/tpmrm0",
  // "swtpm:path=/run/swtpm/sock", "mssim:host=localhost,port=2321", ...
  std::string tcti = "device:/dev/tpmrm0";
  // PCRs (SHA-256 bank, 0..23) the secret is bound to; empty = none.
  std::vector<uint32_t> pcrs;
};

// Parses "7", "0,7", "0+7" or "" into PCR indexes. InvalidArgument naming
// the accepted form otherwise.
Result<std::vector<uint32_t>> ParsePcrList(std::string_view text);

// Seals `secret` (at most 128 bytes) to the TPM. The blob (magic, PCR
// selection, TPM2B_PUBLIC and TPM2B_PRIVATE) is no secret: only that TPM
// opens it. FailedPrecondition when the TPM cannot be reached (naming the
// TCTI and the config key), IOError for a TPM command that fails.
Result<std::vector<uint8_t>> Tpm2Seal(const Tpm2Options& options,
                                      const crypto::SecretBytes& secret);

// Unseals a blob of Tpm2Seal, into locked memory. FailedPrecondition when
// the TPM cannot be reached, when this TPM did not seal the blob (another
// TPM, or its owner hierarchy was cleared), or when the PCRs differ from
// those it was sealed to; Corruption for a malformed blob. `options.pcrs` is
// not used: the blob carries its own selection.
Result<crypto::SecretBytes> Tpm2Unseal(const Tpm2Options& options,
                                       std::span<const uint8_t> blob);

}  // namespace cmkfs::keystore
