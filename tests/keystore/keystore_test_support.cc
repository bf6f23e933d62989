#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>

#include "keystore_test_util.h"

namespace cmkfs::keystore::testing {
namespace {

// PEM fixtures are committed test-only keys (tests/keystore/testdata, see
// its README); the PKCS#8 DER forms are made from them with the openssl
// command line once per build tree in CMKFS_BINARY_DIR/keystore-test-fixtures,
// each written to a temp name and renamed, so concurrent test processes are
// safe.
struct FixtureCache {
  std::mutex mu;
  std::filesystem::path dir;
  std::map<std::string, std::string, std::less<>> pems;
  std::map<std::string, std::vector<uint8_t>, std::less<>> ders;
};

FixtureCache& Cache() {
  static FixtureCache* cache = new FixtureCache;
  return *cache;
}

std::string ReadText(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::filesystem::path PemPath(std::string_view kind) {
  return std::filesystem::path(CMKFS_SOURCE_DIR) / "tests" / "keystore" /
         "testdata" / (std::string(kind) + ".pem");
}

}  // namespace

TempDir::TempDir() {
  std::string templ =
      (std::filesystem::temp_directory_path() / "cmkfs-keystore-test-XXXXXX")
          .string();
  char* made = ::mkdtemp(templ.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool Run(const std::string& command) {
  int rc = std::system((command + " 2>/dev/null").c_str());
  EXPECT_EQ(rc, 0) << command;
  return rc == 0;
}

std::vector<uint8_t> ReadFileBytes(const std::filesystem::path& path) {
  std::string s = ReadText(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

const std::string& Pem(std::string_view kind) {
  FixtureCache& cache = Cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  auto it = cache.pems.find(kind);
  if (it != cache.pems.end()) return it->second;
  const std::filesystem::path path = PemPath(kind);
  std::string pem = ReadText(path);
  if (pem.empty()) ADD_FAILURE() << "missing PEM fixture " << path;
  return cache.pems[std::string(kind)] = std::move(pem);
}

const std::vector<uint8_t>& Pkcs8Der(std::string_view kind) {
  FixtureCache& cache = Cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  auto it = cache.ders.find(kind);
  if (it != cache.ders.end()) return it->second;
  if (cache.dir.empty()) {
    cache.dir =
        std::filesystem::path(CMKFS_BINARY_DIR) / "keystore-test-fixtures";
    std::filesystem::create_directories(cache.dir);
  }
  const std::string der = (cache.dir / (std::string(kind) + ".der")).string();
  const std::string tmp = der + "." + std::to_string(::getpid());
  if (!std::filesystem::exists(der) &&
      Run("openssl pkcs8 -topk8 -nocrypt -in " + PemPath(kind).string() +
          " -outform DER -out " + tmp)) {
    std::filesystem::rename(tmp, der);
  }
  return cache.ders[std::string(kind)] = ReadFileBytes(der);
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TestKeyStore::TestKeyStore(std::optional<Config::Pkcs11> hsm)
    : dir_(tmp_.path() / "vault"),
      key_file_(tmp_.path() / "vault.key"),
      now_(std::make_shared<TimePoint>(
          std::chrono::time_point_cast<std::chrono::seconds>(Clock::now()))),
      hsm_(std::move(hsm)) {
  Reopen();
}

KeyStoreOptions TestKeyStore::Options() const {
  KeyStoreOptions o;
  o.dir = dir_;
  o.master_key_file = key_file_;
  std::shared_ptr<TimePoint> now = now_;
  o.clock = [now] { return *now; };
  if (hsm_) {
    o.pkcs11 = *hsm_;
    o.hsm_enabled = true;
  }
  return o;
}

void TestKeyStore::Reopen() {
  store_.reset();
  auto opened = OpenKeyStore(Options());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(*opened);
}

VaultInfo MakeVault(KeyStore& ks, const std::string& name,
                    bool purge_protection, VaultSku sku) {
  VaultSpec spec;
  spec.name = name;
  spec.purge_protection = purge_protection;
  spec.sku = sku;
  auto v = ks.CreateVault(spec);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : VaultInfo{};
}

KeyVersionInfo ImportFixtureKey(KeyStore& ks, const std::string& vault,
                                const std::string& name,
                                std::string_view pem_kind) {
  auto k = ks.ImportKey("", vault, name, Pem(pem_kind), KeyType::kRsa);
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return k.ok() ? *k : KeyVersionInfo{};
}

VaultInfo TestKeyStore::MakeVault(const std::string& name,
                                  bool purge_protection, VaultSku sku) {
  return keystore::testing::MakeVault(*store_, name, purge_protection, sku);
}

KeyVersionInfo TestKeyStore::ImportKey(const std::string& vault,
                                       const std::string& name,
                                       std::string_view pem_kind) {
  return ImportFixtureKey(*store_, vault, name, pem_kind);
}

}  // namespace cmkfs::keystore::testing
