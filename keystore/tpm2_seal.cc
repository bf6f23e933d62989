#include "tpm2_seal.h"

#include <string.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <string>

namespace cmkfs::keystore {
namespace {

// "CMKTPM2" + version 1, then u32 PCR mask (big-endian), TPM2B_PUBLIC,
// TPM2B_PRIVATE (tss2-mu marshalling).
constexpr std::string_view kBlobMagic = "CMKTPM2\x01";
constexpr size_t kMaxSecret = 128;

std::string RcText(TSS2_RC rc) {
  const char* text = Tss2_RC_Decode(rc);
  return text != nullptr ? text : "unknown error";
}

// The TPM's own response code without the handle/parameter/session number.
TSS2_RC TpmBase(TSS2_RC rc) {
  if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) return rc;
  if (rc & TPM2_RC_FMT1) return rc & (TPM2_RC_FMT1 | 0x3f);
  return rc & 0xfff;
}

bool IsTpmLayer(TSS2_RC rc) {
  return (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER;
}

TPML_PCR_SELECTION Selection(uint32_t mask) {
  TPML_PCR_SELECTION sel{};
  sel.count = 1;
  sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
  sel.pcrSelections[0].sizeofSelect = 3;
  for (int i = 0; i < 3; ++i) {
    sel.pcrSelections[0].pcrSelect[i] =
        static_cast<uint8_t>((mask >> (8 * i)) & 0xff);
  }
  return sel;
}

std::string PcrNames(uint32_t mask) {
  std::string out;
  for (uint32_t i = 0; i < 24; ++i) {
    if (!(mask & (1u << i))) continue;
    if (!out.empty()) out += ",";
    out += std::to_string(i);
  }
  return out;
}

// One ESAPI connection with the primary storage key loaded; everything is
// flushed and closed on destruction.
class Tpm {
 public:
  static Result<std::unique_ptr<Tpm>> Open(const std::string& tcti) {
    std::unique_ptr<Tpm> t(new Tpm);
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti.c_str(), &t->tcti_);
    if (rc != TSS2_RC_SUCCESS) {
      return FailedPreconditionError(
          "TPM 2.0 unreachable through TCTI '" + tcti + "': " + RcText(rc) +
          "; set [keystore] tpm2_tcti (device:/dev/tpmrm0, "
          "swtpm:path=SOCKET, ...) or use another master_key");
    }
    rc = Esys_Initialize(&t->esys_, t->tcti_, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      return FailedPreconditionError("TPM 2.0 through TCTI '" + tcti +
                                     "' cannot be initialised: " + RcText(rc));
    }
    t->tcti_name_ = tcti;
    CMKFS_RETURN_IF_ERROR(t->CreatePrimary());
    return t;
  }

  ~Tpm() {
    for (ESYS_TR h : {session_, item_, primary_}) {
      if (h != ESYS_TR_NONE) Esys_FlushContext(esys_, h);
    }
    if (esys_ != nullptr) Esys_Finalize(&esys_);
    if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  }

  ESYS_CONTEXT* esys() { return esys_; }
  ESYS_TR primary() const { return primary_; }

  Status Error(std::string_view what, TSS2_RC rc) const {
    return IOError("TPM 2.0 (" + tcti_name_ + ") " + std::string(what) +
                   " failed: " + RcText(rc));
  }

  // A session salted with the primary key, with parameter encryption of
  // the command's (decrypt) and the response's (encrypt) first parameter.
  // `policy`: a policy session, else an HMAC session.
  Result<ESYS_TR> StartSession(bool policy) {
    TPMT_SYM_DEF sym{};
    sym.algorithm = TPM2_ALG_AES;
    sym.keyBits.aes = 128;
    sym.mode.aes = TPM2_ALG_CFB;
    ESYS_TR s = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(
        esys_, primary_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
        nullptr, policy ? TPM2_SE_POLICY : TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256,
        &s);
    if (rc != TSS2_RC_SUCCESS) return Error("StartAuthSession", rc);
    session_ = s;
    // continueSession: the session stays until the destructor flushes it.
    rc = Esys_TRSess_SetAttributes(esys_, s,
                                   TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT |
                                       TPMA_SESSION_CONTINUESESSION,
                                   0xff);
    if (rc != TSS2_RC_SUCCESS) return Error("TRSess_SetAttributes", rc);
    return s;
  }

  // The policy digest of PolicyPCR over the current values of `mask`.
  Result<TPM2B_DIGEST> TrialPcrPolicy(uint32_t mask) {
    TPMT_SYM_DEF none{};
    none.algorithm = TPM2_ALG_NULL;
    ESYS_TR trial = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(
        esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
        ESYS_TR_NONE, nullptr, TPM2_SE_TRIAL, &none, TPM2_ALG_SHA256, &trial);
    if (rc != TSS2_RC_SUCCESS) return Error("StartAuthSession (trial)", rc);
    TPM2B_DIGEST empty{};
    TPML_PCR_SELECTION sel = Selection(mask);
    rc = Esys_PolicyPCR(esys_, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                        &empty, &sel);
    TPM2B_DIGEST* digest = nullptr;
    if (rc == TSS2_RC_SUCCESS) {
      rc = Esys_PolicyGetDigest(esys_, trial, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, &digest);
    }
    Esys_FlushContext(esys_, trial);
    if (rc != TSS2_RC_SUCCESS) return Error("PolicyPCR (trial)", rc);
    TPM2B_DIGEST out = *digest;
    Esys_Free(digest);
    return out;
  }

  void set_item(ESYS_TR item) { item_ = item; }

 private:
  Tpm() = default;

  Status CreatePrimary() {
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_PUBLIC in{};
    TPMT_PUBLIC& p = in.publicArea;
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED |
                         TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                         TPMA_OBJECT_FIXEDPARENT |
                         TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_NODA;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    p.parameters.eccDetail.symmetric.keyBits.aes = 128;
    p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    TSS2_RC rc = Esys_CreatePrimary(esys_, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                    ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &in,
                                    &outside, &creation_pcr, &primary_, nullptr,
                                    nullptr, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      primary_ = ESYS_TR_NONE;
      if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER) {
        return FailedPreconditionError("TPM 2.0 unreachable through TCTI '" +
                                       tcti_name_ + "': " + RcText(rc) +
                                       "; set [keystore] tpm2_tcti");
      }
      return Error("CreatePrimary (owner hierarchy storage key)", rc);
    }
    return Status::Ok();
  }

  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  std::string tcti_name_;
  ESYS_TR primary_ = ESYS_TR_NONE;
  ESYS_TR session_ = ESYS_TR_NONE;
  ESYS_TR item_ = ESYS_TR_NONE;
};

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 3; i >= 0; --i)
    out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

Result<std::vector<uint32_t>> ParsePcrList(std::string_view text) {
  std::vector<uint32_t> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = text.find_first_of(",+", i);
    if (end == std::string_view::npos) end = text.size();
    std::string_view part = text.substr(i, end - i);
    uint32_t v = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size() ||
        v > 23) {
      return InvalidArgumentError(
          "invalid TPM2 PCR list '" + std::string(text) +
          "': use PCR numbers 0 to 23 separated by ',' or '+' (e.g. \"7\" or "
          "\"0,7\"), or \"\" for none");
    }
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    i = end + 1;
  }
  return out;
}

Result<std::vector<uint8_t>> Tpm2Seal(const Tpm2Options& options,
                                      const crypto::SecretBytes& secret) {
  if (secret.size() == 0 || secret.size() > kMaxSecret) {
    return InvalidArgumentError("a TPM2-sealed secret holds 1 to 128 bytes");
  }
  uint32_t mask = 0;
  for (uint32_t pcr : options.pcrs) {
    if (pcr > 23) return InvalidArgumentError("TPM2 PCR numbers are 0 to 23");
    mask |= 1u << pcr;
  }
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<Tpm> tpm, Tpm::Open(options.tcti));
  TPM2B_PUBLIC in{};
  TPMT_PUBLIC& p = in.publicArea;
  p.type = TPM2_ALG_KEYEDHASH;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes =
      TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA;
  p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
  if (mask != 0) {
    CMKFS_ASSIGN_OR_RETURN(p.authPolicy, tpm->TrialPcrPolicy(mask));
  } else {
    p.objectAttributes |= TPMA_OBJECT_USERWITHAUTH;
  }
  CMKFS_ASSIGN_OR_RETURN(ESYS_TR session, tpm->StartSession(false));
  TPM2B_SENSITIVE_CREATE sensitive{};
  sensitive.sensitive.data.size = static_cast<UINT16>(secret.size());
  memcpy(sensitive.sensitive.data.buffer, secret.data(), secret.size());
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION creation_pcr{};
  TPM2B_PRIVATE* priv = nullptr;
  TPM2B_PUBLIC* pub = nullptr;
  TSS2_RC rc =
      Esys_Create(tpm->esys(), tpm->primary(), session, ESYS_TR_NONE,
                  ESYS_TR_NONE, &sensitive, &in, &outside, &creation_pcr, &priv,
                  &pub, nullptr, nullptr, nullptr);
  explicit_bzero(&sensitive, sizeof(sensitive));
  if (rc != TSS2_RC_SUCCESS) return tpm->Error("Create (sealed object)", rc);
  std::vector<uint8_t> blob(kBlobMagic.begin(), kBlobMagic.end());
  PutU32(blob, mask);
  const size_t head = blob.size();
  blob.resize(head + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE));
  size_t offset = head;
  rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, blob.data(), blob.size(), &offset);
  if (rc == TSS2_RC_SUCCESS) {
    rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, blob.data(), blob.size(), &offset);
  }
  Esys_Free(priv);
  Esys_Free(pub);
  if (rc != TSS2_RC_SUCCESS) return tpm->Error("marshalling the blob", rc);
  blob.resize(offset);
  return blob;
}

Result<crypto::SecretBytes> Tpm2Unseal(const Tpm2Options& options,
                                       std::span<const uint8_t> blob) {
  const Status malformed =
      CorruptionError("TPM2-sealed blob is malformed (not written by cmkfs)");
  if (blob.size() < kBlobMagic.size() + 4 ||
      !std::equal(kBlobMagic.begin(), kBlobMagic.end(), blob.begin())) {
    return malformed;
  }
  size_t offset = kBlobMagic.size();
  uint32_t mask = 0;
  for (int i = 0; i < 4; ++i) mask = (mask << 8) | blob[offset++];
  if (mask >> 24) return malformed;
  TPM2B_PUBLIC pub{};
  TPM2B_PRIVATE priv{};
  if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob.data(), blob.size(), &offset, &pub) !=
          TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob.data(), blob.size(), &offset,
                                      &priv) != TSS2_RC_SUCCESS ||
      offset != blob.size()) {
    return malformed;
  }
  CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<Tpm> tpm, Tpm::Open(options.tcti));
  ESYS_TR item = ESYS_TR_NONE;
  TSS2_RC rc = Esys_Load(tpm->esys(), tpm->primary(), ESYS_TR_PASSWORD,
                         ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &item);
  if (rc != TSS2_RC_SUCCESS) {
    if (IsTpmLayer(rc)) {
      return FailedPreconditionError(
          "the TPM 2.0 at TCTI '" + options.tcti +
          "' did not seal this vault master key (another TPM, or its owner "
          "hierarchy was cleared): Load returned " +
          RcText(rc));
    }
    return tpm->Error("Load (sealed object)", rc);
  }
  tpm->set_item(item);
  CMKFS_ASSIGN_OR_RETURN(ESYS_TR session, tpm->StartSession(mask != 0));
  if (mask != 0) {
    TPM2B_DIGEST empty{};
    TPML_PCR_SELECTION sel = Selection(mask);
    rc = Esys_PolicyPCR(tpm->esys(), session, ESYS_TR_NONE, ESYS_TR_NONE,
                        ESYS_TR_NONE, &empty, &sel);
    if (rc != TSS2_RC_SUCCESS) return tpm->Error("PolicyPCR", rc);
  }
  TPM2B_SENSITIVE_DATA* out = nullptr;
  rc =
      Esys_Unseal(tpm->esys(), item, session, ESYS_TR_NONE, ESYS_TR_NONE, &out);
  if (rc != TSS2_RC_SUCCESS) {
    if (TpmBase(rc) == TPM2_RC_POLICY_FAIL) {
      return FailedPreconditionError(
          "the TPM 2.0 refuses to unseal the vault master key: PCRs " +
          PcrNames(mask) +
          " differ from their values when it was sealed (boot chain or "
          "configuration changed)");
    }
    return tpm->Error("Unseal", rc);
  }
  crypto::SecretBytes secret(out->buffer, out->size);
  explicit_bzero(out->buffer, sizeof(out->buffer));
  Esys_Free(out);
  return secret;
}

}  // namespace cmkfs::keystore
