// cmkvault's identity table: one record per identity it issued a certificate
// to (object id, name, role, certificate fingerprint, revoked). An LMDB
// environment of its own in <state>/identities, so `cmkvault identity revoke`
// in another process takes effect on the service's next call.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/lmdb.h"
#include "cmkfs/status.h"
#include "cmkfs/units.h"
#include "vault/transport/transport.h"

namespace cmkfs::vault {

// kAdmin: the vault owner (vaults, policies, identities). kClient: what
// access policies grant, nothing more (a DES's system-assigned identity).
// kHost: a storage host, which may mint client identities for its DES and
// watch key changes, and nothing else (no key permission at all).
enum class Role { kAdmin, kClient, kHost };
std::string_view RoleName(Role r);  // "admin", "client", "host"

struct Identity {
  std::string object_id;
  std::string name;
  Role role = Role::kClient;
  std::string fingerprint;  // SHA-256 of its certificate's DER, hex
  int64_t issued = 0;       // Unix seconds
  int64_t not_after = 0;
  bool revoked = false;
  int64_t revoked_at = 0;
  // The host identity that minted it (CreateManagedIdentity); empty for an
  // identity the owner issued.
  std::string minted_by;
};

class IdentityTable {
 public:
  // Opens (creating) the table in `dir`. Thread-safe.
  static Result<std::unique_ptr<IdentityTable>> Open(
      const std::filesystem::path& dir);

  // AlreadyExists for a known object id.
  Status Add(const Identity& id);
  // NotFound for an unknown id; FailedPrecondition when already revoked.
  Status Revoke(std::string_view object_id, int64_t now);
  Result<std::vector<Identity>> List() const;

  // The caller a verified client certificate (PEM) stands for:
  // PermissionDenied unless the certificate names an identity of this table
  // (URI SAN cmkvault:identity:<id>) that is not revoked and whose recorded
  // fingerprint is this certificate's.
  Result<Caller> Authenticate(std::string_view cert_pem) const;

 private:
  IdentityTable(std::unique_ptr<lmdb::Env> env, lmdb::Dbi dbi)
      : env_(std::move(env)), dbi_(dbi) {}
  std::unique_ptr<lmdb::Env> env_;
  lmdb::Dbi dbi_;
};

}  // namespace cmkfs::vault
