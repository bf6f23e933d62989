// Shared helpers of the vault service tests: a cmkvault state directory and
// server in this process (real gRPC, mutual TLS on an ephemeral loopback
// port and a unix socket), and clients holding credentials it issued.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"
#include "vault/service_state.h"
#include "vault/transport/transport.h"

namespace cmkfs::vault::testing {

using keystore::testing::TempDir;

class TestVaultService {
 public:
  // `unix_peers`: ServerOptions::unix_peers (the unix socket then has a
  // PeerCheckedSocket in front).
  explicit TestVaultService(std::vector<uid_t> unix_peers = {});
  ~TestVaultService();

  // host:port of the TCP listener, unix:/path of the socket.
  std::string tcp_endpoint() const;
  std::string unix_endpoint() const;
  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& admin_bundle() const { return admin_bundle_; }
  // credentials/<object-id>.pem bundles of Issue'd identities.
  std::filesystem::path credentials_dir() const {
    return tmp_.path() / "creds";
  }
  ServiceState& state() { return *state_; }
  // The KeyStore the server serves, for in-process calls.
  keystore::KeyStore& store() { return *store_; }

  // Issues an identity; its bundle goes to credentials_dir()/<id>.pem.
  Identity Issue(const std::string& name, Role role = Role::kClient,
                 int64_t not_before = 0, int64_t not_after = 0);
  std::filesystem::path BundleOf(const std::string& object_id) const {
    return credentials_dir() / (object_id + ".pem");
  }
  // A client with `bundle` as its default credential (admin when empty).
  std::unique_ptr<keystore::KeyStore> Connect(
      const std::filesystem::path& bundle = {}, bool unix_socket = false);
  // ConnectKeyStore's result, for tests of refusals. Short deadline, no
  // retries.
  Result<std::unique_ptr<keystore::KeyStore>> TryConnect(
      const std::string& endpoint, const std::filesystem::path& bundle);

 private:
  TempDir tmp_;
  std::filesystem::path dir_;
  std::filesystem::path admin_bundle_;
  std::unique_ptr<ServiceState> state_;
  std::unique_ptr<keystore::KeyStore> store_;
  std::unique_ptr<Server> server_;
};

struct Ran {
  int rc = -1;
  std::string out;
  std::string err;
};

// A child process (the cmkvault binary) with its stdout and stderr piped to
// the test; killed (SIGKILL) and reaped by the destructor if still running.
class Process {
 public:
  Process(const std::string& binary, std::vector<std::string> args);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Reads stdout until it holds `want` (or the timeout); all read so far.
  std::string ReadUntil(std::string_view want,
                        std::chrono::milliseconds timeout);
  // Exit status, or -1 if it did not exit in time.
  int Wait(std::chrono::milliseconds timeout);
  Ran Finish(std::chrono::milliseconds timeout);
  void Signal(int sig);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int rc_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string stdout_;
};

// `binary serve` on the initialised state directory `state_dir`, listening on
// `endpoint` ("unix:/path"); returns once it prints its listening line, or
// nullptr (a test failure is recorded) if it does not within 30 s.
std::unique_ptr<Process> StartCmkvaultServe(
    const std::string& binary, const std::filesystem::path& state_dir,
    const std::string& endpoint);

// Writes a credential bundle of a certificate that `issuer` did not record:
// self-signed when issuer_* are empty. `ca_pem` is the CA put in the bundle.
void WriteForeignBundle(const std::filesystem::path& out,
                        const std::string& object_id,
                        const crypto::SecretBytes& issuer_key,
                        const std::string& issuer_cert,
                        const std::string& ca_pem);

}  // namespace cmkfs::vault::testing
