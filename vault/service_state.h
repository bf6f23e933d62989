// cmkvault's state directory (docs/vault-api.md, "State directory"): the
// vault master key, the keystore, the identity table, and the service's CA
// and server certificate, whose private keys are stored sealed
// (AES-256-GCM) under the vault master key, never in the clear.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/keystore.h"
#include "cmkfs/status.h"
#include "vault/identity_table.h"

namespace cmkfs::vault {

struct IssueRequest {
  std::string name;  // shown in `identity list` and the certificate's CN
  Role role = Role::kClient;
  // The object id to issue the credential for (a DES's system-assigned
  // identity, made by the storage host); empty = a new random one.
  // AlreadyExists when the table has it.
  std::string object_id;
  int64_t not_before = 0;  // Unix seconds; 0 = a minute ago
  int64_t not_after = 0;   // 0 = not_before + 365 days
  // Where the credential bundle is written (created 0600, never replaced).
  std::filesystem::path out;
};

class ServiceState {
 public:
  // Creates the state directory (0700, path_guard checks), its master key,
  // the CA (ECDSA P-256, 10 years), the server certificate (DNS SAN cmkvault
  // and localhost, IP SAN 127.0.0.1 and ::1, plus `extra_names`) and the
  // first admin identity, whose bundle goes to `admin.out`.
  // AlreadyExists when `dir` is already initialised.
  static Result<Identity> Init(const std::filesystem::path& dir,
                               const std::vector<std::string>& extra_names,
                               const IssueRequest& admin);
  // Opens an initialised directory: CheckStateDir, master key, CA, server
  // key. FailedPrecondition naming `cmkvault init` when it is not one.
  static Result<std::unique_ptr<ServiceState>> Open(
      const std::filesystem::path& dir);

  // Issues a client certificate for a new object id (URI SAN
  // cmkvault:identity:<id>), records it, writes the bundle. Thread-safe.
  Result<Identity> Issue(const IssueRequest& request);

  // CreateManagedIdentity: a client identity named `name` (1 to 64
  // printable characters) for the holder of `public_key_pem`, recorded as
  // minted by `host`. No bundle is written: the private key stays with the
  // holder. Thread-safe.
  Result<MintedIdentity> Mint(const Caller& host, std::string_view name,
                              std::string_view public_key_pem);

  IdentityTable& identities() { return *identities_; }
  keystore::KeyStoreOptions KeystoreOptions() const;
  const std::string& ca_cert_pem() const { return ca_cert_pem_; }
  const std::string& server_cert_pem() const { return server_cert_pem_; }
  const crypto::SecretBytes& server_key_pem() const { return server_key_; }

 private:
  ServiceState() = default;
  // Fills in `id`'s fingerprint and dates and adds it to the table.
  Status Record(Identity& id, std::string_view cert_pem, int64_t not_after);
  std::filesystem::path dir_;
  crypto::SecretBytes master_;
  std::string ca_cert_pem_;
  crypto::SecretBytes ca_key_;
  std::string server_cert_pem_;
  crypto::SecretBytes server_key_;
  std::unique_ptr<IdentityTable> identities_;
};

// A new random object id (8-4-4-4-12 lowercase hex).
Result<std::string> NewObjectId();

}  // namespace cmkfs::vault
