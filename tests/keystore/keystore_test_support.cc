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

// Fixtures are generated once per build tree (RSA 8192 generation can take
// a minute) in CMKFS_BINARY_DIR/keystore-test-fixtures; each is written to a
// temp name and renamed, so concurrent test processes are safe.
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

std::string GenCommand(std::string_view kind, const std::string& out,
                       const std::string& dir) {
  auto rsa = [&](int bits) {
    return "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:" +
           std::to_string(bits) + " -out " + out;
  };
  if (kind == "rsa2048" || kind == "rsa2048-b") return rsa(2048);
  if (kind == "rsa3072") return rsa(3072);
  if (kind == "rsa4096") return rsa(4096);
  if (kind == "rsa1024") return rsa(1024);
  if (kind == "rsa8192") return rsa(8192);
  if (kind == "rsa2048-pkcs1") {
    return "openssl genrsa -traditional -out " + out + " 2048";
  }
  if (kind == "ec") {
    return "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
           "-out " +
           out;
  }
  if (kind == "ed25519")
    return "openssl genpkey -algorithm ed25519 -out " + out;
  if (kind == "public") {
    Pem("rsa2048");
    return "openssl pkey -in " + dir + "/rsa2048.pem -pubout -out " + out;
  }
  if (kind == "encrypted") {
    Pem("rsa2048");
    return "openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:secret -in " +
           dir + "/rsa2048.pem -out " + out;
  }
  if (kind == "garbage") {
    return "printf 'this is not a key\\n' > " + out;
  }
  ADD_FAILURE() << "unknown fixture " << kind;
  return "false";
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
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    if (cache.dir.empty()) {
      cache.dir =
          std::filesystem::path(CMKFS_BINARY_DIR) / "keystore-test-fixtures";
      std::filesystem::create_directories(cache.dir);
    }
    auto it = cache.pems.find(kind);
    if (it != cache.pems.end()) return it->second;
  }
  const std::string dir = cache.dir.string();
  const std::string out = dir + "/" + std::string(kind) + ".pem";
  if (!std::filesystem::exists(out)) {
    const std::string tmp = out + "." + std::to_string(::getpid());
    if (Run(GenCommand(kind, tmp, dir))) {
      std::filesystem::rename(tmp, out);
    }
  }
  std::lock_guard<std::mutex> lock(cache.mu);
  return cache.pems[std::string(kind)] = ReadText(out);
}

const std::vector<uint8_t>& Pkcs8Der(std::string_view kind) {
  Pem(kind);
  FixtureCache& cache = Cache();
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.ders.find(kind);
    if (it != cache.ders.end()) return it->second;
  }
  const std::string base = cache.dir.string() + "/" + std::string(kind);
  const std::string tmp = base + ".der." + std::to_string(::getpid());
  if (!std::filesystem::exists(base + ".der") &&
      Run("openssl pkcs8 -topk8 -nocrypt -in " + base +
          ".pem -outform DER -out " + tmp)) {
    std::filesystem::rename(tmp, base + ".der");
  }
  std::lock_guard<std::mutex> lock(cache.mu);
  return cache.ders[std::string(kind)] = ReadFileBytes(base + ".der");
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

VaultInfo TestKeyStore::MakeVault(const std::string& name,
                                  bool purge_protection, VaultSku sku) {
  VaultSpec spec;
  spec.name = name;
  spec.purge_protection = purge_protection;
  spec.sku = sku;
  auto v = store_->CreateVault(spec);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : VaultInfo{};
}

KeyVersionInfo TestKeyStore::ImportKey(const std::string& vault,
                                       const std::string& name,
                                       std::string_view pem_kind) {
  auto k = store_->ImportKey("", vault, name, Pem(pem_kind), KeyType::kRsa);
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return k.ok() ? *k : KeyVersionInfo{};
}

}  // namespace cmkfs::keystore::testing
