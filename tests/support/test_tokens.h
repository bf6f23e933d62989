// Real PKCS#11 tokens for tests, private to the test process: SoftHSM2 (the
// CKM_RSA_X_509 fallback path) and NSS softokn (native CKM_RSA_PKCS_OAEP with
// SHA-256 and a label), each reached directly (the module loaded into the
// process) or behind `p11-kit server` through p11-kit-client.so (the remote
// HSM form, over a unix socket).
//
// Everything is made on first use and kept for the process, because
// C_Initialize and P11_KIT_SERVER_ADDRESS are process-wide; it is removed,
// and the p11-kit server stopped, when the process exits. The server runs in
// its own process group under `timeout`, which also stops it if the test
// process dies. Not thread-safe: call from the test's main thread.
//
// With CMKFS_TEST_P11KIT_TLS_RELAY=<path of tests/support/tls_relay.py>, the
// kP11Kit tokens are reached through a loopback mutual-TLS relay in front of
// the server (a throw-away CA, a server and a client certificate made with
// openssl): the TLS-tunnel form of a remote HSM.
#pragma once

#include <filesystem>
#include <string>

#include "cmkfs/config.h"
#include "cmkfs/status.h"

namespace cmkfs::test_tokens {

enum class Kind { kSoftHsm, kNss };
enum class Transport { kDirect, kP11Kit };

struct Token {
  Config::Pkcs11 config;     // the token the test uses (user PIN 1234)
  Config::Pkcs11 isolated;   // another token reached the same way
  Config::Pkcs11 wrong_pin;  // `config` with a PIN file holding 9999
  std::string description;   // "NSS softokn behind p11-kit", ...
};

// The token of `kind` reached through `transport`. Errors name the step that
// failed (certutil, softhsm2-util, p11-kit server start).
Result<Token> Get(Kind kind, Transport transport);

// A private directory of this process (trusted for PIN files).
const std::filesystem::path& Dir();

// The p11-kit server serving the kP11Kit tokens: stop it (the "server gone"
// tests) and start it again on the same socket. Start waits at most 10 s for
// the socket.
Status StopServer();
Status StartServer();
// unix:path=... as P11_KIT_SERVER_ADDRESS carries it.
std::string ServerAddress();
// The p11-kit server's socket path.
std::filesystem::path ServerSocket();

}  // namespace cmkfs::test_tokens
