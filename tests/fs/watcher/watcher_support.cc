#include <stdlib.h>

#include <fstream>
#include <thread>

#include "watcher_fixture.h"

namespace cmkfs::fs::testing {

using std::chrono::milliseconds;

namespace {

// RSA key generation dominates a test's setup (the engine's 3072-bit
// platform key, our 2048-bit key), so a keystore holding the system vault
// and vault "vlt" with key "k" is made once (per hour, so rotation-policy
// ages stay small) and copied into each test's directory.
std::filesystem::path KeystoreTemplate() {
  namespace stdfs = std::filesystem;
  const auto hours = std::chrono::duration_cast<std::chrono::hours>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  const stdfs::path base = stdfs::path(CMKFS_BINARY_DIR) / "tests/fs/watcher";
  const stdfs::path ready =
      base / ("keystore-template-" + std::to_string(hours));
  if (stdfs::exists(ready / "complete")) return ready;

  std::string tmp = (base / "keystore-template-tmp-XXXXXX").string();
  if (mkdtemp(tmp.data()) == nullptr) {
    throw std::runtime_error("mkdtemp in " + base.string() + " failed");
  }
  {
    keystore::KeyStoreOptions ko;
    ko.dir = stdfs::path(tmp) / "vault";
    ko.master_key_file = stdfs::path(tmp) / "vault.key";
    std::unique_ptr<keystore::KeyStore> ks =
        CMKFS_VALUE(keystore::OpenKeyStore(ko));
    EngineOptions eo;
    eo.dir = stdfs::path(tmp) / "engine";
    CMKFS_VALUE(OpenEngine(eo, ks.get()));  // creates the system vault
    keystore::VaultSpec vault;
    vault.name = "vlt";
    vault.purge_protection = true;
    CMKFS_VALUE(ks->CreateVault(vault));
    CMKFS_VALUE(ks->CreateKey("", "vlt", "k", keystore::KeyType::kRsa, 2048));
  }
  stdfs::remove_all(stdfs::path(tmp) / "engine");
  std::ofstream(stdfs::path(tmp) / "complete") << "ok\n";
  std::error_code ec;
  stdfs::rename(tmp, ready, ec);
  if (ec) stdfs::remove_all(tmp, ec);  // another test process won the race
  for (const auto& entry : stdfs::directory_iterator(base, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("keystore-template-") && entry.path() != ready &&
        !name.starts_with("keystore-template-tmp-")) {
      stdfs::remove_all(entry.path(), ec);  // an older hour's template
    }
  }
  return ready;
}

}  // namespace

void WatcherTest::SetUp() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "cmkfs-watcher-test-XXXXXX")
          .string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  dir_ = tmpl;
  const std::filesystem::path source = KeystoreTemplate();
  std::filesystem::copy(source / "vault", dir_ / "vault",
                        std::filesystem::copy_options::recursive);
  std::filesystem::copy_file(source / "vault.key", dir_ / "vault.key");
  BeforeOpen();
  OpenStores();
  ASSERT_NE(engine_, nullptr);
  keystore::KeyVersionInfo latest = CMKFS_VALUE(ks_->GetKeyVersion(
      "", CMKFS_VALUE(keystore::KeyId::Parse("cmk://vlt/keys/k"))));
  key_version_ = latest.id;
  des_ = MakeDes("des1", /*auto_rotate=*/false);
}

void WatcherTest::TearDown() {
  CloseStores();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

keystore::KeyStoreOptions WatcherTest::KeyStoreOptionsFor() const {
  keystore::KeyStoreOptions o;
  o.dir = dir_ / "vault";
  o.master_key_file = dir_ / "vault.key";
  return o;
}

void WatcherTest::OpenStores() {
  keystore::KeyStoreOptions ko = KeyStoreOptionsFor();
  ko.clock = [this] {
    return Now() + std::chrono::seconds(clock_offset_seconds_.load());
  };
  ks_ = CMKFS_VALUE(keystore::OpenKeyStore(ko));
  EngineOptions eo;
  eo.dir = dir_ / "engine";
  engine_ = CMKFS_VALUE(OpenEngine(eo, ks_.get()));
}

void WatcherTest::CloseStores() {
  engine_.reset();
  ks_.reset();
}

DesInfo WatcherTest::MakeDes(const std::string& name, bool auto_rotate,
                             const std::string& key_name) {
  DesSpec spec;
  spec.name = name;
  spec.key_id =
      CMKFS_VALUE(keystore::KeyId::Parse("cmk://vlt/keys/" + key_name));
  spec.auto_rotate = auto_rotate;
  DesInfo des = CMKFS_VALUE(engine_->CreateDes(spec));
  Status granted =
      Grant(des.identity,
            keystore::Permission::kGet | keystore::Permission::kWrapKey |
                static_cast<uint32_t>(keystore::Permission::kUnwrapKey));
  if (!granted.ok()) throw std::runtime_error(granted.ToString());
  return des;
}

ResourceInfo WatcherTest::MakeDisk(const std::string& name, DiskSku sku,
                                   const std::string& des) {
  DiskSpec spec;
  spec.name = name;
  spec.size = kDiskSize;
  spec.sku = sku;
  spec.des = des;
  return CMKFS_VALUE(engine_->CreateDisk(spec));
}

Status WatcherTest::SetEnabled(bool enabled) {
  keystore::AttributeUpdate u;
  u.enabled = enabled;
  return ks_->UpdateKeyAttributes("", key_version_, u).status();
}

Status WatcherTest::Grant(const std::string& identity,
                          keystore::PermissionSet perms) {
  return ks_->SetAccessPolicy("", "vlt", identity, perms);
}

std::vector<uint8_t> WatcherTest::Pattern(uint8_t seed) {
  std::vector<uint8_t> p(kPatternSize);
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = static_cast<uint8_t>(i * 7 + seed + (i >> 12));
  }
  return p;
}

void WatcherTest::WritePattern(DiskHandle& h, uint8_t seed) {
  std::vector<uint8_t> p = Pattern(seed);
  Result<size_t> n = h.Write(8192, p);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(*n, p.size());
}

void WatcherTest::ExpectPattern(DiskHandle& h, uint8_t seed) {
  std::vector<uint8_t> got(kPatternSize);
  Result<size_t> n = h.Read(8192, got);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(*n, got.size());
  EXPECT_TRUE(got == Pattern(seed)) << "data differs from what was written";
}

PollReport WatcherTest::Poll(KeyWatcher& w) {
  PollReport r = CMKFS_VALUE(w.PollOnce());
  for (const std::string& e : r.errors) ADD_FAILURE() << "poll error: " << e;
  return r;
}

std::unique_ptr<KeyWatcher> WatcherTest::MakeWatcher(WatcherOptions options) {
  return std::make_unique<KeyWatcher>(engine_.get(), ks_.get(),
                                      std::move(options));
}

ResourceState WatcherTest::StateOf(ResourceKind kind, const std::string& name) {
  return CMKFS_VALUE(engine_->Get(kind, name)).state;
}

std::optional<milliseconds> WatcherTest::WaitForState(ResourceKind kind,
                                                      const std::string& name,
                                                      ResourceState want,
                                                      milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const auto elapsed = std::chrono::duration_cast<milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (StateOf(kind, name) == want) return elapsed;
    if (elapsed > timeout) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

std::optional<milliseconds> WatcherTest::WaitForReadFailure(
    DiskHandle& h, milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> buf(4096);
  while (true) {
    const auto elapsed = std::chrono::duration_cast<milliseconds>(
        std::chrono::steady_clock::now() - start);
    Result<size_t> r = h.Read(8192, buf);
    if (!r.ok()) {
      EXPECT_EQ(r.status().kind(), ErrorKind::kKeyUnavailable)
          << r.status().ToString();
      return elapsed;
    }
    if (elapsed > timeout) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

bool WatcherTest::AuditHas(const std::string& operation,
                           const std::string& needle) {
  std::vector<keystore::AuditEntry> entries =
      CMKFS_VALUE(ks_->ReadAudit("vlt", keystore::AuditFilter{}));
  for (const keystore::AuditEntry& e : entries) {
    if (e.operation == operation &&
        e.result.find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace cmkfs::fs::testing
