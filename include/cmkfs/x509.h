// X.509 certificates for cmkvault's identities (docs/vault-api.md,
// "Identities"): a service CA, its server certificate and one client
// certificate per identity. Part of cmkfs_crypto (the only OpenSSL user).
// Keys are ECDSA P-256: fast to make, and every TLS 1.3 stack accepts them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/status.h"

namespace cmkfs::crypto::x509 {

struct CertificateRequest {
  std::string common_name;
  std::vector<std::string> uri_sans;  // "cmkvault:identity:<object-id>"
  std::vector<std::string> dns_sans;  // "localhost"
  std::vector<std::string> ip_sans;   // "127.0.0.1"
  bool is_ca = false;
  bool server = false;     // extendedKeyUsage serverAuth (else clientAuth)
  int64_t not_before = 0;  // Unix seconds
  int64_t not_after = 0;
};

struct IssuedCertificate {
  std::string cert_pem;
  SecretBytes key_pem;  // PKCS#8 PEM of the new private key
};

struct CertificateInfo {
  std::string common_name;
  std::vector<std::string> uri_sans;
  std::string fingerprint;  // SHA-256 of the DER, lowercase hex
  std::string serial;       // lowercase hex
  int64_t not_before = 0;
  int64_t not_after = 0;
};

// A new P-256 key and its certificate signed by `issuer_key_pem` /
// `issuer_cert_pem`, or self-signed when both are empty. InvalidArgument for
// an issuer that does not parse, IOError when OpenSSL fails. Thread-safe.
Result<IssuedCertificate> Issue(const CertificateRequest& request,
                                const SecretBytes& issuer_key_pem,
                                std::string_view issuer_cert_pem);

struct KeyPair {
  SecretBytes private_key_pem;  // PKCS#8 PEM
  std::string public_key_pem;   // SubjectPublicKeyInfo PEM ("PUBLIC KEY")
};

// A new P-256 key, for a certificate another party issues
// (IssueForPublicKey): the private half never leaves its maker. IOError when
// OpenSSL fails. Thread-safe.
Result<KeyPair> NewKeyPair();

// A certificate for the holder of `public_key_pem` (an EC P-256 public key),
// signed by the issuer. InvalidArgument for a key that does not parse or is
// not P-256, or an issuer that does not parse. Thread-safe.
Result<std::string> IssueForPublicKey(const CertificateRequest& request,
                                      std::string_view public_key_pem,
                                      const SecretBytes& issuer_key_pem,
                                      std::string_view issuer_cert_pem);

// The first certificate of `pem`. InvalidArgument when none parses.
Result<CertificateInfo> Inspect(std::string_view pem);

// The "CERTIFICATE" PEM blocks of `pem`, each with its BEGIN/END lines, in
// order (a credential bundle: its own certificate, then the CA's).
std::vector<std::string> CertificateBlocks(std::string_view pem);
// The first "PRIVATE KEY" block of `pem` (a credential bundle) in locked
// memory; InvalidArgument naming `what` when there is none.
Result<SecretBytes> PrivateKeyBlock(const SecretBytes& pem,
                                    std::string_view what);

}  // namespace cmkfs::crypto::x509
