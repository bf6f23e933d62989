// The gRPC transport of cmkvault (docs/vault-api.md), seen through types that
// name no gRPC or protobuf type: a server that serves a KeyStore to
// authenticated callers, and a KeyStore that is a client of such a server.
#pragma once

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
  bool admin = false;       // the service's admin (the vault owner)
  std::string fingerprint;  // SHA-256 of the certificate
};

// Maps the verified client certificate (PEM) of a call to its caller.
// PermissionDenied (a one-line reason) refuses the call. Called on every call,
// from gRPC's threads concurrently.
using Authenticator = std::function<Result<Caller>(std::string_view cert_pem)>;

struct ServerOptions {
  // "127.0.0.1:0" (port 0: an ephemeral port), "[::1]:7443", "unix:/path".
  std::vector<std::string> listen;
  std::string ca_cert_pem;      // client certificates must chain to it
  std::string server_cert_pem;  // SAN DNS:cmkvault
  crypto::SecretBytes server_key_pem;
  Authenticator authenticate;
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

// The identity a credential bundle's certificate names (URI SAN
// cmkvault:identity:<id>); InvalidArgument naming the file otherwise.
Result<std::string> CredentialIdentity(const std::filesystem::path& bundle);

// "cmkvault:identity:" + object id.
inline constexpr std::string_view kIdentityUriPrefix = "cmkvault:identity:";

}  // namespace cmkfs::vault
