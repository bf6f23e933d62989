// The audit hash chain (docs/keystore.md, "Audit hash chain"): every entry the
// store writes is the next link of its vault's chain; VerifyAuditChain names
// the first entry that was edited, removed or reordered; records from before
// the chain (format 1) still read, as unchained entries.
#include <gtest/gtest.h>

#include "cmkfs/keystore.h"
#include "cmkfs/record.h"
#include "keystore_test_util.h"
#include "records.h"

namespace cmkfs::keystore {
namespace {

using testing::TestKeyStore;

std::vector<AuditEntry> MakeAudit(TestKeyStore& ks) {
  ks.MakeVault("vault1");
  auto v = ks.ImportKey("vault1", "k");
  std::vector<uint8_t> dek(32, 9);
  EXPECT_TRUE(ks->WrapKey("", v.id, dek, {}).ok());
  EXPECT_FALSE(ks->UnwrapKey("des-1", v.id, dek, {}).ok());  // denied
  AuditEntry note;
  note.operation = "disk.seal";
  note.key_id = v.id.ToString();
  note.result = "sealed disks/d1: key version disabled\nforged line";
  EXPECT_TRUE(ks->AppendAudit("vault1", note).ok());
  auto audit = ks->ReadAudit("vault1", {});
  EXPECT_TRUE(audit.ok()) << audit.status().ToString();
  return audit.ok() ? *audit : std::vector<AuditEntry>{};
}

TEST(AuditChainTest, EveryEntryIsALinkAndTheChainVerifies) {
  TestKeyStore ks;
  std::vector<AuditEntry> audit = MakeAudit(ks);
  ASSERT_EQ(audit.size(), 5u);
  for (size_t i = 0; i < audit.size(); ++i) {
    EXPECT_EQ(audit[i].seq, i + 1);
    EXPECT_EQ(audit[i].hash.size(), 64u);
    EXPECT_EQ(audit[i].prev_hash,
              i == 0 ? std::string(kAuditChainGenesis) : audit[i - 1].hash);
    // In-process callers carry no certificate.
    EXPECT_TRUE(audit[i].caller_fingerprint.empty());
  }
  auto report = VerifyAuditChain("vault1", audit);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->chained, 5u);
  EXPECT_EQ(report->legacy, 0u);
  // Survives a reopen: the chain head is stored with the entries.
  ks.Reopen();
  ASSERT_TRUE(ks->SetAccessPolicy("", "vault1", "des-1",
                                  static_cast<uint32_t>(Permission::kGet))
                  .ok());
  auto after = ks->ReadAudit("vault1", {});
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 6u);
  EXPECT_EQ(after->back().seq, 6u);
  EXPECT_TRUE(VerifyAuditChain("vault1", *after).ok());
  // Each vault has its own chain.
  ks.MakeVault("vault2");
  auto other = ks->ReadAudit("vault2", {});
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->size(), 1u);
  EXPECT_EQ(other->front().seq, 1u);
}

TEST(AuditChainTest, VerifyNamesTheFirstBrokenEntry) {
  TestKeyStore ks;
  const std::vector<AuditEntry> audit = MakeAudit(ks);
  ASSERT_EQ(audit.size(), 5u);

  // The chain's order is the order of writing: reads and wraps are queued
  // and may follow a later mutation, so entries are named by their own
  // operation here.
  std::vector<AuditEntry> edited = audit;
  edited[2].result = "edited";  // rewrite history
  auto r = VerifyAuditChain("vault1", edited);
  EXPECT_EQ(r.status().kind(), ErrorKind::kCorruption);
  EXPECT_NE(
      r.status().message().find("audit entry 3 (" + FormatTime(audit[2].time) +
                                " " + audit[2].operation + " by "),
      std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("its hash does not match its contents"),
            std::string::npos);

  std::vector<AuditEntry> rehashed = audit;  // edited and re-hashed: the
  rehashed[1].result = "ok (forged)";        // next link no longer fits
  rehashed[1].hash = AuditChainHash("vault1", rehashed[1]);
  r = VerifyAuditChain("vault1", rehashed);
  EXPECT_NE(r.status().message().find(
                "audit entry 3 (" + FormatTime(audit[2].time) + " " +
                audit[2].operation + " by " + audit[2].identity +
                "): its prev_hash is not the hash of entry 2"),
            std::string::npos)
      << r.status().message();

  std::vector<AuditEntry> removed = audit;
  removed.erase(removed.begin() + 1);
  r = VerifyAuditChain("vault1", removed);
  EXPECT_NE(r.status().message().find("audit entry 2 is missing"),
            std::string::npos)
      << r.status().message();

  // Another vault's entries do not verify as this one's.
  EXPECT_FALSE(VerifyAuditChain("vault2", audit).ok());

  // Stored text is escaped in the message (the appended entry's result has
  // a newline; its operation is plain): a forged line stays on one line.
  std::vector<AuditEntry> newline = audit;
  newline[4].operation = "disk.seal\nok";
  r = VerifyAuditChain("vault1", newline);
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos)
      << r.status().message();
}

// Format change: audit records of format 1 (before the chain) are read as
// entries with seq 0, which --verify counts as "written before the chain".
TEST(AuditChainTest, FormatOneRecordsReadAsUnchained) {
  RecordWriter w(1);
  w.I64(1700000000)
      .Str("id")
      .Str("wrapKey")
      .Str("cmk://v/keys/k/1")
      .Str("ok")
      .Str("k");
  auto old = DecodeAudit(w.Take());
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->entry.operation, "wrapKey");
  EXPECT_EQ(old->entry.seq, 0u);
  EXPECT_TRUE(old->entry.hash.empty());

  AuditRecord now;
  now.entry = old->entry;
  now.entry.caller_object_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
  now.entry.caller_fingerprint = std::string(64, 'a');
  now.entry.seq = 7;
  now.entry.prev_hash = std::string(64, 'b');
  now.entry.hash = std::string(64, 'c');
  auto round = DecodeAudit(EncodeAudit(now));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->entry.caller_object_id, now.entry.caller_object_id);
  EXPECT_EQ(round->entry.caller_fingerprint, now.entry.caller_fingerprint);
  EXPECT_EQ(round->entry.seq, 7u);
  EXPECT_EQ(round->entry.hash, now.entry.hash);

  std::vector<AuditEntry> mixed = {old->entry};
  auto report = VerifyAuditChain("v", mixed);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->legacy, 1u);
  EXPECT_EQ(report->chained, 0u);
}

TEST(AuditChainTest, ScopedAuditCallerIsStampedAndNests) {
  AuditEntry e;
  ScopedAuditCaller::Stamp(e);
  EXPECT_TRUE(e.caller_object_id.empty());
  {
    ScopedAuditCaller outer("a", "fa");
    {
      ScopedAuditCaller inner("b", "fb");
      ScopedAuditCaller::Stamp(e);
      EXPECT_EQ(e.caller_object_id, "b");
    }
    ScopedAuditCaller::Stamp(e);
    EXPECT_EQ(e.caller_fingerprint, "fa");
  }
  ScopedAuditCaller::Stamp(e);
  EXPECT_TRUE(e.caller_fingerprint.empty());
}

}  // namespace
}  // namespace cmkfs::keystore
