// Shared helpers of the keystore tests: temp dirs, committed PEM fixtures,
// and a keystore with a controllable clock.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/keystore.h"

namespace cmkfs::keystore::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// PEM fixtures: committed test-only keys in tests/keystore/testdata/KIND.pem
// (read once per process):
//   rsa2048 (PKCS#8), rsa2048-pkcs1, rsa2048-b, rsa3072, rsa4096, rsa1024,
//   rsa8192, ec, ed25519, public (RSA public key), encrypted (PKCS#8
//   encrypted RSA 2048), garbage.
const std::string& Pem(std::string_view kind);
// PKCS#8 DER of an RSA fixture (openssl pkcs8 -topk8 -nocrypt -outform DER).
const std::vector<uint8_t>& Pkcs8Der(std::string_view kind);
// Runs a shell command; fails the test (ADD_FAILURE) on a non-zero exit.
bool Run(const std::string& command);
std::vector<uint8_t> ReadFileBytes(const std::filesystem::path& path);

// A SoftHSM2 installation private to this test process: a temp dir with
// softhsm2.conf (SOFTHSM2_CONF is set to it), tokens "cmkfs" and
// "cmkfs-other" (user PIN 1234, SO PIN 5678) and PIN files. Made on first
// call and kept for the process, since C_Initialize is process-global.
struct SoftHsm {
  std::filesystem::path dir;
  Config::Pkcs11 token;        // label cmkfs, correct PIN file
  Config::Pkcs11 other_token;  // label cmkfs-other
  std::filesystem::path wrong_pin_file;
};
const SoftHsm& SoftHsmTokens();

// A keystore in a temp dir whose clock the test moves. With `hsm`, the
// PKCS#11 backend is enabled with that configuration.
class TestKeyStore {
 public:
  explicit TestKeyStore(std::optional<Config::Pkcs11> hsm = std::nullopt);
  KeyStoreOptions Options() const;
  // (Re)opens the keystore; closes the previous instance first.
  void Reopen();
  void Close() { store_.reset(); }
  KeyStore& operator*() { return *store_; }
  KeyStore* operator->() { return store_.get(); }
  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& key_file() const { return key_file_; }
  TimePoint now() const { return *now_; }
  void Advance(std::chrono::seconds d) { *now_ += d; }
  void SetNow(TimePoint t) { *now_ = t; }

  // Creates a vault (standard, no purge protection unless asked).
  VaultInfo MakeVault(const std::string& name, bool purge_protection = false,
                      VaultSku sku = VaultSku::kStandard);
  // Imports the rsa2048 fixture as `name` (fast: no key generation).
  KeyVersionInfo ImportKey(const std::string& vault, const std::string& name,
                           std::string_view pem_kind = "rsa2048");

 private:
  TempDir tmp_;
  std::filesystem::path dir_;
  std::filesystem::path key_file_;
  std::shared_ptr<TimePoint> now_;
  std::optional<Config::Pkcs11> hsm_;
  std::unique_ptr<KeyStore> store_;
};

std::span<const uint8_t> Bytes(std::string_view s);

// On any KeyStore (embedded or a vault service client), as its admin:
// creates a vault (standard, no purge protection unless asked) and imports a
// PEM fixture as a key (fast: no key generation). A failure fails the test.
VaultInfo MakeVault(KeyStore& ks, const std::string& name,
                    bool purge_protection = false,
                    VaultSku sku = VaultSku::kStandard);
KeyVersionInfo ImportFixtureKey(KeyStore& ks, const std::string& vault,
                                const std::string& name,
                                std::string_view pem_kind = "rsa2048");

}  // namespace cmkfs::keystore::testing
