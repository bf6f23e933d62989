// Shared fixture for the engine tests: a real keystore and a real engine in
// a fresh temporary directory, plus helpers for customer keys and data.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/io_layer.h"
#include "cmkfs/keystore.h"
#include "support/fault_io_layer.h"
#include "support/memory_io_layer.h"

namespace cmkfs::fs::testing {

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    ::cmkfs::Status s_ = (expr);                            \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)

#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                    \
  auto CMKFS_CONCAT_(r_, __LINE__) = (expr);                               \
  ASSERT_TRUE(CMKFS_CONCAT_(r_, __LINE__).ok())                            \
      << #expr << ": " << CMKFS_CONCAT_(r_, __LINE__).status().ToString(); \
  lhs = std::move(CMKFS_CONCAT_(r_, __LINE__)).value()

#define EXPECT_HAS_SUBSTR(text, sub)                         \
  do {                                                       \
    std::string t_ = (text), s_ = (sub);                     \
    EXPECT_NE(t_.find(s_), std::string::npos)                \
        << "'" << t_ << "' does not contain '" << s_ << "'"; \
  } while (0)

std::filesystem::path MakeTempDir(const std::string& prefix);
std::vector<uint8_t> Pattern(size_t n, uint64_t seed);
bool IsZero(const std::vector<uint8_t>& v);

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Closes and reopens the engine (same directory, keystore and I/O layer).
  void Reopen();
  void CloseEngine() { engine_.reset(); }
  Result<std::unique_ptr<Engine>> OpenWith(std::shared_ptr<IoLayer> io);
  // Stores for the next open: io_ and, when set, open_meta_.
  EngineStores Stores() const;

  // A vault (with or without purge protection) and an RSA key in it;
  // returns the versioned key id.
  keystore::KeyId MakeKey(const std::string& vault, const std::string& key,
                          bool purge_protection = true,
                          const std::string& subscription = "default",
                          const std::string& region = "local");
  // A DES on vault/key whose identity is granted get/wrapKey/unwrapKey.
  DesInfo MakeDes(const std::string& name, const std::string& vault,
                  const std::string& key, bool grant = true);
  void Grant(const std::string& vault, const std::string& identity);
  // Vault names are unique per test (the keystore is shared by the tests of
  // one binary, so the platform key is generated once): "v1" -> "v1-t7".
  std::string V(const std::string& base) const;
  std::shared_ptr<DiskHandle> OpenDisk(const std::string& name,
                                       bool writable = true);
  ResourceInfo MakeDisk(const std::string& name, uint64_t size,
                        const std::string& des = "");
  std::vector<uint8_t> ReadAll(DiskHandle& h, uint64_t offset, size_t n);
  void WriteAll(DiskHandle& h, uint64_t offset, const std::vector<uint8_t>& d);

  std::filesystem::path root_;
  EngineOptions options_;
  keystore::KeyStore* ks_ = nullptr;  // shared, see V()
  int test_number_ = 0;
  std::shared_ptr<IoLayer> io_;  // null: POSIX
  // Null: LMDB as the product opens it.
  std::function<Result<std::shared_ptr<MetaStore>>(
      const std::filesystem::path&)>
      open_meta_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace cmkfs::fs::testing
