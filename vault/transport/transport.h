// The gRPC transport of cmkvault (docs/vault-api.md), seen through types that
// name no gRPC or protobuf type: a server that serves a KeyStore to
// authenticated callers, and a KeyStore that is a client of such a server.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/keystore.h"
#include "cmkfs/status.h"

namespace cmkfs::vault {

// The name every cmkvault server certificate carries (DNS SAN) and that every
// client verifies, whatever address it dialled: trust is the vault's own CA,
// not the network name.
inline constexpr std::string_view kServerName = "cmkvault";

// The caller behind a verified client certificate.
struct Caller {
  std::string object_id;
  bool admin = false;  // the service's admin (the vault owner)
  // A storage host: may mint DES identities and watch key changes only.
  bool host = false;
  std::string fingerprint;  // SHA-256 of the certificate
};

// Maps the verified client certificate (PEM) of a call to its caller.
// PermissionDenied (a one-line reason) refuses the call. Called on every call,
// from gRPC's threads concurrently.
using Authenticator = std::function<Result<Caller>(std::string_view cert_pem)>;

// A client certificate issued to a new identity for a public key its holder
// keeps (CreateManagedIdentity).
struct MintedIdentity {
  std::string object_id;
  std::string cert_pem;
};

// Issues, for the host identity `host`, a client identity named `name` whose
// certificate carries `public_key_pem`. InvalidArgument for a bad name or key.
// Called from gRPC's threads concurrently.
using IdentityMinter = std::function<Result<MintedIdentity>(
    const Caller& host, std::string_view name,
    std::string_view public_key_pem)>;

struct ServerOptions {
  // "127.0.0.1:0" (port 0: an ephemeral port), "[::1]:7443", "unix:/path".
  std::vector<std::string> listen;
  std::string ca_cert_pem;      // client certificates must chain to it
  std::string server_cert_pem;  // SAN DNS:cmkvault
  crypto::SecretBytes server_key_pem;
  Authenticator authenticate;
  // Serves CreateManagedIdentity; null refuses it (FailedPrecondition).
  IdentityMinter mint_identity;
  // Local users (uids) besides root and the service's own that may connect
  // to the unix sockets. Empty: each unix socket is gRPC's own, mode 0600.
  // Else each is a PeerCheckedSocket (mode 0666, SO_PEERCRED checked) in
  // front of gRPC's socket at PATH.inner (0600).
  std::vector<uid_t> unix_peers;
  // How often WatchKeys looks at the change counter.
  std::chrono::milliseconds watch_interval{100};
};

class Server {
 public:
  virtual ~Server() = default;
  // The port bound for the first TCP address (0 when there is none).
  virtual int port() const = 0;
  // Stops accepting calls, cancels streams after `grace` and returns once
  // every call has ended. Idempotent; thread-safe.
  virtual void Shutdown(std::chrono::milliseconds grace) = 0;
};

// Serves `store` (which must outlive the server) with mutual TLS on every
// address. IOError naming the address when one cannot be bound;
// InvalidArgument when the certificates or key do not parse.
Result<std::unique_ptr<Server>> StartServer(keystore::KeyStore* store,
                                            ServerOptions options);

struct ClientOptions {
  std::string endpoint;  // "host:port" or "unix:/path"
  // The credential bundle (certificate, PKCS#8 key, CA certificate) used for
  // calls whose caller is empty or is its own identity.
  std::filesystem::path credential;
  // Optional: <object-id>.pem bundles for calls made as other identities
  // (the DES identities of a storage host).
  std::filesystem::path credentials_dir;
  std::chrono::milliseconds deadline{std::chrono::seconds(10)};
  int attempts = 4;  // on UNAVAILABLE, with backoff 100ms, 200ms, 400ms
  std::chrono::milliseconds first_backoff{100};
};

// A KeyStore whose every method is a call to the service at
// options.endpoint. The caller argument of a method selects the credential:
// empty or the default credential's own identity = `credential`, any other
// object id = credentials_dir/<id>.pem (PermissionDenied naming the file when
// there is none). Errors keep the service's kind and message; an unreachable
// service or a certificate that does not verify is IOError naming the
// endpoint. Fails at once when `credential` is not a trusted private file
// (CheckTrustedFile) or holds no certificate, key and CA certificate.
// Thread-safe.
Result<std::unique_ptr<keystore::KeyStore>> ConnectKeyStore(
    const ClientOptions& options);

// Asks the service, with the default credential (a host identity), to mint
// a client identity named `name` for a disk encryption set: the key pair is
// made here and only the public half is sent; the certificate comes back and
// the bundle (certificate, private key, CA) is written to
// credentials_dir/<object-id>.pem (0600, never replacing a file). Returns the
// new object id. FailedPrecondition when credentials_dir is not set;
// PermissionDenied when the default credential is not a host (or admin)
// identity; transport errors as ConnectKeyStore's calls.
Result<std::string> MintManagedIdentity(const ClientOptions& options,
                                        std::string_view name);

// The identity a credential bundle's certificate names (URI SAN
// cmkvault:identity:<id>); InvalidArgument naming the file otherwise.
Result<std::string> CredentialIdentity(const std::filesystem::path& bundle);

// "cmkvault:identity:" + object id.
inline constexpr std::string_view kIdentityUriPrefix = "cmkvault:identity:";

}  // namespace cmkfs::vault
