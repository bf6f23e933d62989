// A real keystore and a real engine in a temporary directory, one vault with
// purge protection, one 2048-bit key, one DES granted get/wrapKey/unwrapKey,
// for the key watcher tests.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/status.h"
#include "cmkfs/units.h"
#include "cmkfs/watcher.h"

namespace cmkfs::fs::testing {

#define CMKFS_ASSERT_OK(expr)                          \
  do {                                                 \
    const ::cmkfs::Status cmkfs_s_ = (expr);           \
    ASSERT_TRUE(cmkfs_s_.ok()) << cmkfs_s_.ToString(); \
  } while (0)

// Test code only: gtest reports the exception as the test's failure.
template <typename T>
T ValueOrThrow(Result<T> r, const char* what) {
  if (!r.ok()) {
    throw std::runtime_error(std::string(what) + ": " + r.status().ToString());
  }
  return std::move(r).value();
}
#define CMKFS_VALUE(expr) ::cmkfs::fs::testing::ValueOrThrow((expr), #expr)

inline constexpr uint64_t kDiskSize = 4ull << 20;
inline constexpr size_t kPatternSize = 64 << 10;

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Runs before the keystore and engine open (the process has no other
  // threads yet): the two-process test forks its helper here.
  virtual void BeforeOpen() {}

  keystore::KeyStoreOptions KeyStoreOptionsFor() const;
  void OpenStores();
  void CloseStores();

  // A DES named `name` on key `key_name` in vault "vlt", its identity granted
  // get, wrapKey, unwrapKey.
  DesInfo MakeDes(const std::string& name, bool auto_rotate,
                  const std::string& key_name = "k");
  ResourceInfo MakeDisk(const std::string& name, DiskSku sku,
                        const std::string& des = "des1");

  // Versioned id of the key's first version.
  const keystore::KeyId& key() const { return key_version_; }
  Status SetEnabled(bool enabled);
  Status Grant(const std::string& identity, keystore::PermissionSet perms);

  static std::vector<uint8_t> Pattern(uint8_t seed);
  static void WritePattern(DiskHandle& h, uint8_t seed);
  static void ExpectPattern(DiskHandle& h, uint8_t seed);

  PollReport Poll(KeyWatcher& w);
  std::unique_ptr<KeyWatcher> MakeWatcher(WatcherOptions options = {});

  ResourceState StateOf(ResourceKind kind, const std::string& name);
  // Waits up to `timeout` for the state; returns the time it took, or
  // nullopt on timeout.
  std::optional<std::chrono::milliseconds> WaitForState(
      ResourceKind kind, const std::string& name, ResourceState want,
      std::chrono::milliseconds timeout);
  // Waits up to `timeout` for a read on `h` to fail with KeyUnavailable
  // (what a VM sees); returns the time it took, or nullopt on timeout.
  static std::optional<std::chrono::milliseconds> WaitForReadFailure(
      DiskHandle& h, std::chrono::milliseconds timeout);
  bool AuditHas(const std::string& operation, const std::string& needle);

  std::filesystem::path dir_;
  std::atomic<int64_t> clock_offset_seconds_{0};
  std::unique_ptr<keystore::KeyStore> ks_;
  std::unique_ptr<Engine> engine_;
  keystore::KeyId key_version_;
  DesInfo des_;
};

}  // namespace cmkfs::fs::testing
