#include "engine_test_support.h"

#include <stdlib.h>

#include <random>

#include "test_keys.h"

namespace cmkfs::fs::testing {

std::filesystem::path MakeTempDir(const std::string& prefix) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  char* p = ::mkdtemp(tmpl.data());
  if (!p) return {};
  return p;
}

std::vector<uint8_t> Pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t x = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j)
      v[i + j] = uint8_t(x >> (8 * j));
  }
  return v;
}

bool IsZero(const std::vector<uint8_t>& v) {
  for (uint8_t b : v) {
    if (b) return false;
  }
  return true;
}

namespace {
class SharedKeyStore : public ::testing::Environment {
 public:
  keystore::KeyStore* Get() {
    if (!ks_) {
      dir_ = MakeTempDir("cmkfs-engine-vault");
      keystore::KeyStoreOptions ko;
      ko.dir = dir_ / "vault";
      ko.master_key_file = dir_ / "vault.key";
      auto ks = keystore::OpenKeyStore(ko);
      if (!ks.ok()) {
        ADD_FAILURE() << ks.status().ToString();
        return nullptr;
      }
      ks_ = std::move(*ks);
      // The engine finds its platform key and does not generate one.
      keystore::VaultSpec sys;
      sys.name = "cmkfs-system";
      sys.purge_protection = true;
      auto v = ks_->CreateVault(sys);
      if (!v.ok()) ADD_FAILURE() << v.status().ToString();
      auto k = ks_->ImportKey("", "cmkfs-system", "platform", kTestPems[0],
                              keystore::KeyType::kRsa);
      if (!k.ok()) ADD_FAILURE() << k.status().ToString();
    }
    return ks_.get();
  }
  void TearDown() override {
    ks_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<keystore::KeyStore> ks_;
};
SharedKeyStore* g_keystore = static_cast<SharedKeyStore*>(
    ::testing::AddGlobalTestEnvironment(new SharedKeyStore));
int g_test_counter = 0;
}  // namespace

std::string EngineTest::V(const std::string& base) const {
  return base + "-t" + std::to_string(test_number_);
}

void EngineTest::SetUp() {
  root_ = MakeTempDir("cmkfs-engine-test");
  ASSERT_FALSE(root_.empty());
  test_number_ = ++g_test_counter;
  ks_ = g_keystore->Get();
  ASSERT_TRUE(ks_);
  options_.dir = root_ / "engine";
  options_.system_key_bits = 2048;
  options_.cache_bytes = 1 << 20;
  auto e = OpenWith(io_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  engine_ = std::move(*e);
}

void EngineTest::TearDown() {
  engine_.reset();
  std::error_code ec;
  if (!root_.empty()) std::filesystem::remove_all(root_, ec);
}

Result<std::unique_ptr<Engine>> EngineTest::OpenWith(
    std::shared_ptr<IoLayer> io) {
  EngineStores stores = Stores();
  stores.io = std::move(io);
  return OpenEngine(options_, ks_, std::move(stores));
}

EngineStores EngineTest::Stores() const {
  EngineStores stores;
  stores.io = io_;
  stores.open_meta = open_meta_;
  return stores;
}

void EngineTest::Reopen() {
  engine_.reset();
  auto e = OpenWith(io_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  engine_ = std::move(*e);
}

keystore::KeyId EngineTest::MakeKey(const std::string& base_vault,
                                    const std::string& key,
                                    bool purge_protection,
                                    const std::string& subscription,
                                    const std::string& region) {
  const std::string vault = V(base_vault);
  if (!ks_->GetVault(vault).ok()) {
    keystore::VaultSpec spec;
    spec.name = vault;
    spec.purge_protection = purge_protection;
    spec.subscription = subscription;
    spec.region = region;
    auto v = ks_->CreateVault(spec);
    EXPECT_TRUE(v.ok()) << vault << ": " << v.status().ToString();
  }
  static int next_pem = 0;
  auto k = ks_->ImportKey("", vault, key, kTestPems[next_pem++ % 3],
                          keystore::KeyType::kRsa);
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return k.ok() ? k->id : keystore::KeyId{};
}

void EngineTest::Grant(const std::string& base_vault,
                       const std::string& identity) {
  const std::string vault = V(base_vault);
  auto perms = keystore::ParsePermissions({"get", "wrapKey", "unwrapKey"});
  ASSERT_TRUE(perms.ok());
  ASSERT_OK(ks_->SetAccessPolicy("", vault, identity, *perms));
}

DesInfo EngineTest::MakeDes(const std::string& name, const std::string& vault,
                            const std::string& key, bool grant) {
  DesSpec spec;
  spec.name = name;
  spec.key_id = keystore::KeyId{V(vault), key, ""};
  auto d = engine_->CreateDes(spec);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  if (!d.ok()) return {};
  if (grant) Grant(vault, d->identity);
  return *d;
}

std::shared_ptr<DiskHandle> EngineTest::OpenDisk(const std::string& name,
                                                 bool writable) {
  auto h = engine_->Open(ResourceKind::kDisk, name, writable);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  return h.ok() ? *h : nullptr;
}

ResourceInfo EngineTest::MakeDisk(const std::string& name, uint64_t size,
                                  const std::string& des) {
  DiskSpec spec;
  spec.name = name;
  spec.size = size;
  spec.des = des;
  auto r = engine_->CreateDisk(spec);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ResourceInfo{};
}

std::vector<uint8_t> EngineTest::ReadAll(DiskHandle& h, uint64_t offset,
                                         size_t n) {
  std::vector<uint8_t> out(n);
  auto r = h.Read(offset, out);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (r.ok()) out.resize(*r);
  return out;
}

void EngineTest::WriteAll(DiskHandle& h, uint64_t offset,
                          const std::vector<uint8_t>& d) {
  auto r = h.Write(offset, d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(*r, d.size());
}

}  // namespace cmkfs::fs::testing
