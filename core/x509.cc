// X.509 issuance and inspection for cmkvault (cmkfs/x509.h). Part of the
// cmkfs_crypto target, with crypto.cc the only OpenSSL users.
#include "cmkfs/x509.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <memory>

namespace cmkfs::crypto::x509 {
namespace {

struct Free {
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Free>;

Status Failure(std::string what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return IOError(what + (e != 0 ? std::string(": ") + buf : std::string()));
}

int RefusePassphrase(char*, int, int, void*) { return -1; }

Ptr<EVP_PKEY> ReadKey(const SecretBytes& pem) {
  Ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  Ptr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, RefusePassphrase, nullptr));
  ERR_clear_error();
  return key;
}

Ptr<X509> ReadCert(std::string_view pem) {
  Ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  Ptr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return cert;
}

Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& v) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Ptr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, v.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Failure("certificate extension " + v);
  }
  return Status::Ok();
}

std::string Hex(const unsigned char* p, size_t n) {
  return HexEncode(std::span<const uint8_t>(p, n));
}

Result<std::string> ToPem(X509* cert) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return Failure("PEM_write_bio_X509");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<SecretBytes> KeyToPem(EVP_PKEY* key) {
  Ptr<BIO> bio(BIO_new(BIO_s_secmem()));
  if (!bio) bio.reset(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                       nullptr, nullptr) != 1) {
    return Failure("PEM_write_bio_PrivateKey");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  SecretBytes out(reinterpret_cast<const uint8_t*>(data),
                  static_cast<size_t>(n));
  OPENSSL_cleanse(data, static_cast<size_t>(n));
  return out;
}

Ptr<EVP_PKEY> ReadPublicKey(std::string_view pem) {
  Ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  Ptr<EVP_PKEY> key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return key;
}

// The certificate `request` describes for `subject` (its public half is what
// the certificate carries), signed by the issuer, or by `subject` itself when
// the issuer's key and certificate are both empty.
Result<std::string> Sign(const CertificateRequest& request, EVP_PKEY* subject,
                         const SecretBytes& issuer_key_pem,
                         std::string_view issuer_cert_pem) {
  Ptr<EVP_PKEY> issuer_key;
  Ptr<X509> issuer_cert;
  const bool self_signed = issuer_key_pem.empty() && issuer_cert_pem.empty();
  if (!self_signed) {
    issuer_key = ReadKey(issuer_key_pem);
    issuer_cert = ReadCert(issuer_cert_pem);
    if (!issuer_key || !issuer_cert) {
      return InvalidArgumentError(
          "the issuer's key or certificate is not a PEM private key and "
          "certificate");
    }
  }
  Ptr<X509> cert(X509_new());
  if (!cert) return Failure("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  CMKFS_RETURN_IF_ERROR(RandomBytes(serial));
  serial[0] &= 0x7f;  // positive
  Ptr<BIGNUM> bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))) {
    return Failure("certificate serial");
  }
  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()), request.not_before) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), request.not_after)) {
    return Failure("certificate validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>(request.common_name.c_str()), -1,
      -1, 0);
  X509_set_issuer_name(
      cert.get(),
      self_signed ? name : X509_get_subject_name(issuer_cert.get()));
  X509_set_pubkey(cert.get(), subject);
  X509* issuer = self_signed ? cert.get() : issuer_cert.get();
  CMKFS_RETURN_IF_ERROR(
      AddExtension(cert.get(), issuer, NID_subject_key_identifier, "hash"));
  CMKFS_RETURN_IF_ERROR(AddExtension(
      cert.get(), issuer, NID_authority_key_identifier, "keyid:always"));
  if (request.is_ca) {
    CMKFS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer,
                                       NID_basic_constraints,
                                       "critical,CA:TRUE,pathlen:0"));
    CMKFS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer, NID_key_usage,
                                       "critical,keyCertSign,cRLSign"));
  } else {
    CMKFS_RETURN_IF_ERROR(AddExtension(
        cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE"));
    CMKFS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer, NID_key_usage,
                                       "critical,digitalSignature"));
    CMKFS_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer, NID_ext_key_usage,
                     request.server ? "serverAuth" : "clientAuth"));
  }
  // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict for
  // `"," + ("URI:" + u)`.
  std::string san;
  auto add_san = [&san](std::string_view kind, const std::string& value) {
    if (!san.empty()) san.push_back(',');
    san.append(kind);
    san.append(value);
  };
  for (const auto& u : request.uri_sans) add_san("URI:", u);
  for (const auto& d : request.dns_sans) add_san("DNS:", d);
  for (const auto& i : request.ip_sans) add_san("IP:", i);
  if (!san.empty()) {
    CMKFS_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer, NID_subject_alt_name, san));
  }
  EVP_PKEY* signer = self_signed ? subject : issuer_key.get();
  if (X509_sign(cert.get(), signer, EVP_sha256()) == 0) {
    return Failure("X509_sign");
  }
  return ToPem(cert.get());
}

}  // namespace

Result<IssuedCertificate> Issue(const CertificateRequest& request,
                                const SecretBytes& issuer_key_pem,
                                std::string_view issuer_cert_pem) {
  Ptr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) return Failure("EVP_EC_gen P-256");
  IssuedCertificate out;
  CMKFS_ASSIGN_OR_RETURN(
      out.cert_pem, Sign(request, key.get(), issuer_key_pem, issuer_cert_pem));
  CMKFS_ASSIGN_OR_RETURN(out.key_pem, KeyToPem(key.get()));
  return out;
}

Result<KeyPair> NewKeyPair() {
  Ptr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) return Failure("EVP_EC_gen P-256");
  KeyPair out;
  CMKFS_ASSIGN_OR_RETURN(out.private_key_pem, KeyToPem(key.get()));
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) {
    return Failure("PEM_write_bio_PUBKEY");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  out.public_key_pem.assign(data, static_cast<size_t>(n));
  return out;
}

Result<std::string> IssueForPublicKey(const CertificateRequest& request,
                                      std::string_view public_key_pem,
                                      const SecretBytes& issuer_key_pem,
                                      std::string_view issuer_cert_pem) {
  if (issuer_key_pem.empty() || issuer_cert_pem.empty()) {
    return InvalidArgumentError(
        "a certificate for a public key needs an issuer's key and "
        "certificate");
  }
  Ptr<EVP_PKEY> subject = ReadPublicKey(public_key_pem);
  if (!subject) {
    return InvalidArgumentError(
        "the public key is not a PEM \"PUBLIC KEY\" block; accepted: an EC "
        "P-256 key (SubjectPublicKeyInfo)");
  }
  if (EVP_PKEY_get_base_id(subject.get()) != EVP_PKEY_EC ||
      EVP_PKEY_get_bits(subject.get()) != 256) {
    return InvalidArgumentError(
        "the public key is not an EC P-256 key; accepted: an EC P-256 key "
        "(SubjectPublicKeyInfo)");
  }
  return Sign(request, subject.get(), issuer_key_pem, issuer_cert_pem);
}

Result<CertificateInfo> Inspect(std::string_view pem) {
  Ptr<X509> cert = ReadCert(pem);
  if (!cert) {
    return InvalidArgumentError(
        "no PEM certificate found (expected a "
        "'-----BEGIN CERTIFICATE-----' block)");
  }
  CertificateInfo info;
  X509_NAME* name = X509_get_subject_name(cert.get());
  char cn[256] = {0};
  if (X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof(cn)) > 0) {
    info.common_name = cn;
  }
  Ptr<GENERAL_NAMES> sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    info.uri_sans.emplace_back(reinterpret_cast<const char*>(s->data),
                               static_cast<size_t>(s->length));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md, &md_len) != 1) {
    return Failure("X509_digest");
  }
  info.fingerprint = Hex(md, md_len);
  Ptr<BIGNUM> bn(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
  if (bn) {
    std::vector<unsigned char> b(static_cast<size_t>(BN_num_bytes(bn.get())));
    BN_bn2bin(bn.get(), b.data());
    info.serial = Hex(b.data(), b.size());
  }
  struct tm t;
  if (ASN1_TIME_to_tm(X509_get0_notBefore(cert.get()), &t) == 1) {
    info.not_before = timegm(&t);
  }
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &t) == 1) {
    info.not_after = timegm(&t);
  }
  return info;
}

std::vector<std::string> CertificateBlocks(std::string_view pem) {
  static constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  static constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != std::string_view::npos) {
    size_t end = pem.find(kEnd, pos);
    if (end == std::string_view::npos) break;
    end += kEnd.size();
    out.emplace_back(pem.substr(pos, end - pos));
    out.back() += "\n";
    pos = end;
  }
  return out;
}

Result<SecretBytes> PrivateKeyBlock(const SecretBytes& pem,
                                    std::string_view what) {
  static constexpr std::string_view kBegin = "-----BEGIN PRIVATE KEY-----";
  static constexpr std::string_view kEnd = "-----END PRIVATE KEY-----";
  std::string_view text(reinterpret_cast<const char*>(pem.data()), pem.size());
  size_t begin = text.find(kBegin);
  size_t end = begin == std::string_view::npos ? begin : text.find(kEnd, begin);
  if (end == std::string_view::npos) {
    return InvalidArgumentError(std::string(what) +
                                " holds no '-----BEGIN PRIVATE KEY-----' "
                                "block; a credential bundle holds the "
                                "certificate, its PKCS#8 key and the CA "
                                "certificate");
  }
  end += kEnd.size();
  SecretBytes out(end - begin + 1);
  std::memcpy(out.data(), text.data() + begin, end - begin);
  out.data()[end - begin] = '\n';
  return out;
}

}  // namespace cmkfs::crypto::x509
