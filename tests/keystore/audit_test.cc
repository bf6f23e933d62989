// The audit trail: every operation, allowed or refused, with time, identity,
// operation, key id with version and result; filters by key and time.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "cmkfs/keystore.h"
#include "keystore_test_util.h"

namespace cmkfs::keystore {
namespace {

using testing::TestKeyStore;

// Replaces the default logger while alive and keeps every line it is given
// at warn level or above. Create it before the keystore and destroy it after,
// so that no keystore thread logs while the default logger is swapped.
class WarningCapture {
 public:
  WarningCapture()
      : previous_(spdlog::default_logger()),
        sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_level(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
  }
  ~WarningCapture() { spdlog::set_default_logger(previous_); }
  WarningCapture(const WarningCapture&) = delete;
  WarningCapture& operator=(const WarningCapture&) = delete;
  std::vector<std::string> Lines() { return sink_->last_formatted(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

TEST(AuditTest, RecordsEveryOperationWithVersionedKeyIds) {
  TestKeyStore ks;
  VaultInfo vault = ks.MakeVault("vault1");
  const TimePoint t0 = ks.now();
  auto v1 = ks.ImportKey("vault1", "k");
  ks.Advance(std::chrono::seconds(1));
  std::vector<uint8_t> dek(32, 9);
  auto blob = ks->WrapKey("", v1.id, dek, {});
  ASSERT_TRUE(blob.ok());
  ks.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(ks->SetAccessPolicy("", "vault1", "des-1",
                                  static_cast<uint32_t>(Permission::kGet))
                  .ok());
  EXPECT_FALSE(ks->UnwrapKey("des-1", v1.id, *blob, {}).ok());
  std::vector<uint8_t> garbage(256, 3);
  EXPECT_EQ(ks->UnwrapKey("", v1.id, garbage, {}).status().kind(),
            ErrorKind::kCorruption);

  auto audit = ks->ReadAudit("vault1", {});
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 6u);
  const auto& e = *audit;
  EXPECT_EQ(e[0].operation, "vault.create");
  EXPECT_EQ(e[0].identity, vault.admin_identity);
  EXPECT_EQ(e[0].time, t0);
  EXPECT_EQ(e[1].operation, "key.import");
  EXPECT_EQ(e[1].key_id, v1.id.ToString());
  EXPECT_EQ(e[1].result, "ok");
  EXPECT_EQ(e[2].operation, "wrapKey");
  EXPECT_EQ(e[2].key_id, v1.id.ToString());
  EXPECT_EQ(e[2].time, t0 + std::chrono::seconds(1));
  EXPECT_EQ(e[2].identity, vault.admin_identity);
  EXPECT_EQ(e[3].operation, "vault.set-policy");
  EXPECT_EQ(e[4].operation, "unwrapKey");
  EXPECT_EQ(e[4].identity, "des-1");
  EXPECT_EQ(e[4].key_id, v1.id.ToString());
  EXPECT_EQ(e[4].result.rfind("denied: identity des-1 lacks 'unwrapKey'", 0),
            0u)
      << e[4].result;
  EXPECT_EQ(e[5].operation, "unwrapKey");
  EXPECT_EQ(e[5].result.rfind("error: ", 0), 0u) << e[5].result;
}

TEST(AuditTest, FilterByKeyAndSince) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  ks.MakeVault("vault2");
  ks.ImportKey("vault1", "a");
  ks.Advance(std::chrono::seconds(10));
  const TimePoint mid = ks.now();
  ks.ImportKey("vault1", "b");
  ks.ImportKey("vault2", "a");
  ks.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(ks->GetKey("", "vault1", "a").ok());

  auto only_a = ks->ReadAudit("vault1", AuditFilter{"a", std::nullopt});
  ASSERT_TRUE(only_a.ok());
  ASSERT_EQ(only_a->size(), 2u);
  EXPECT_EQ((*only_a)[0].operation, "key.import");
  EXPECT_EQ((*only_a)[1].operation, "key.get");

  auto since = ks->ReadAudit("vault1", AuditFilter{std::nullopt, mid});
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since->size(), 2u);
  EXPECT_EQ((*since)[0].key_id.find("cmk://vault1/keys/b/"), 0u);
  for (const auto& e : *since) EXPECT_GE(e.time, mid);

  auto both = ks->ReadAudit("vault1", AuditFilter{"b", mid});
  ASSERT_EQ(both->size(), 1u);
  auto none = ks->ReadAudit(
      "vault1", AuditFilter{std::nullopt, ks.now() + std::chrono::seconds(1)});
  EXPECT_TRUE(none->empty());
  // Vaults do not see each other's entries.
  auto v2 = ks->ReadAudit("vault2", {});
  ASSERT_EQ(v2->size(), 2u);
  EXPECT_EQ(ks->ReadAudit("nope-vault", {}).status().kind(),
            ErrorKind::kNotFound);
}

TEST(AuditTest, AppendAuditFromDependentServices) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  auto v1 = ks.ImportKey("vault1", "k");
  AuditEntry e;
  e.identity = "cmkfs-engine";
  e.operation = "disk.seal";
  e.key_id = v1.id.ToString();
  e.result = "ok: disk d1 sealed (key version disabled)";
  ASSERT_TRUE(ks->AppendAudit("vault1", e).ok());
  auto audit = ks->ReadAudit("vault1", AuditFilter{"k", std::nullopt});
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ(audit->back().operation, "disk.seal");
  EXPECT_EQ(audit->back().time, ks.now());
  EXPECT_EQ(audit->back().result, e.result);
  EXPECT_EQ(ks->AppendAudit("nope-vault", e).kind(), ErrorKind::kNotFound);
}

TEST(AuditTest, RefusedCallsOfAllKindsAreAudited) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  EXPECT_FALSE(ks->CreateKey("", "vault1", "k", KeyType::kRsa, 1024).ok());
  EXPECT_FALSE(ks->ImportKey("", "vault1", "k", "junk", KeyType::kRsa).ok());
  EXPECT_FALSE(ks->CreateKey("", "vault1", "h", KeyType::kRsaHsm, 2048).ok());
  auto audit = ks->ReadAudit("vault1", {});
  ASSERT_EQ(audit->size(), 4u);
  EXPECT_EQ((*audit)[1].operation, "key.create");
  EXPECT_NE((*audit)[1].result.find("error: unsupported RSA key size 1024"),
            std::string::npos);
  EXPECT_EQ((*audit)[2].operation, "key.import");
  EXPECT_NE((*audit)[2].result.find("error: unsupported key"),
            std::string::npos);
  EXPECT_NE((*audit)[3].result.find("premium vault"), std::string::npos);
}

TEST(AuditTest, SurvivesReopenIncludingQueuedReadEntries) {
  TestKeyStore ks;
  ks.MakeVault("vault1");
  auto v = ks.ImportKey("vault1", "k");
  std::vector<uint8_t> dek(32, 2);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ks->WrapKey("", v.id, dek, {}).ok());
  ks.Reopen();  // closing drains the audit queue
  auto audit = ks->ReadAudit("vault1", {});
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(audit->size(), 22u);
  EXPECT_EQ(audit->back().operation, "wrapKey");
}

// A refused mutation that picked up queued audit entries of earlier reads
// puts them back for the audit writer; the user sees only the refusal, never
// a "writing N audit entries" error carrying the refusal's message. Every
// entry is written exactly once. The reads queue entries that the refused
// purge races the audit writer for, so most of the 100 rounds exercise the
// requeue path.
TEST(AuditTest, RefusedMutationLogsNothingAndKeepsQueuedEntries) {
  WarningCapture warnings;
  constexpr int kRounds = 100;
  {
    TestKeyStore ks;
    ks.MakeVault("vault1", /*purge_protection=*/true);
    ks.ImportKey("vault1", "k");
    ASSERT_TRUE(ks->DeleteKey("", "vault1", "k").ok());
    for (int i = 0; i < kRounds; ++i) {
      ASSERT_TRUE(ks->ListKeys("", "vault1").ok());
      Status purge = ks->PurgeKey("", "vault1", "k");
      ASSERT_EQ(purge.kind(), ErrorKind::kFailedPrecondition);
      ASSERT_NE(purge.message().find("purge protection"), std::string::npos);
    }
    auto audit = ks->ReadAudit("vault1", {});
    ASSERT_TRUE(audit.ok());
    auto count = [&](std::string_view op) {
      return std::count_if(
          audit->begin(), audit->end(),
          [&](const AuditEntry& e) { return e.operation == op; });
    };
    EXPECT_EQ(count("key.list"), kRounds);
    EXPECT_EQ(count("key.purge"), kRounds);
    EXPECT_EQ(audit->size(), 3u + 2 * kRounds);
  }
  std::vector<std::string> lines = warnings.Lines();
  EXPECT_TRUE(lines.empty())
      << lines.size() << " warning(s), first: " << lines.front();
}

}  // namespace
}  // namespace cmkfs::keystore
