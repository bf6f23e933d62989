// Key changes: DES rotation re-wraps every resource (no data rewritten),
// crash-safe resume, switching a disk to a customer key.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <optional>

#include "cmkfs/erase_slots.h"
#include "cmkfs/lmdb.h"
#include "engine_test_support.h"
#include "records.h"
#include "test_keys.h"

namespace cmkfs::fs::testing {
namespace {

class EngineKeysTest : public EngineTest {
 protected:
  std::vector<char> PoolFile() {
    auto p = options_.dir / "extents" / "pool.0";
    std::vector<char> v(std::filesystem::file_size(p));
    std::ifstream f(p, std::ios::binary);
    f.read(v.data(), v.size());
    return v;
  }
  keystore::KeyId NewVersion(const std::string& vault, const std::string& key,
                             int pem) {
    auto k = ks_->ImportKey("", V(vault), key, kTestPems[pem],
                            keystore::KeyType::kRsa);
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    return k.ok() ? k->id : keystore::KeyId{};
  }
};

TEST_F(EngineKeysTest, UpdateDesRewrapsEveryResourceWithoutRewritingData) {
  auto v1 = MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20, "des1");
  auto h = OpenDisk("d");
  auto data = Pattern(1 << 20, 5);
  WriteAll(*h, 0, data);
  ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  ASSERT_TRUE(engine_->CreateImage("i", "snapshots/s").ok());
  ASSERT_OK(engine_->Flush());
  auto pool_before = PoolFile();

  auto v2 = NewVersion("v1", "k1", 1);
  ASSERT_NE(v1, v2);
  ASSERT_OK_AND_ASSIGN(
      auto des, engine_->UpdateDes("des1", keystore::KeyId{V("v1"), "k1", ""},
                                   std::nullopt));
  EXPECT_EQ(des.key_id, v2);
  EXPECT_TRUE(des.last_rotation.has_value());
  EXPECT_TRUE(des.rotation_error.empty());
  EXPECT_FALSE(des.previous_key_id.has_value());
  for (auto [kind, name] : {std::pair{ResourceKind::kDisk, "d"},
                            std::pair{ResourceKind::kSnapshot, "s"},
                            std::pair{ResourceKind::kImage, "i"}}) {
    ASSERT_OK_AND_ASSIGN(auto info, engine_->Get(kind, name));
    EXPECT_EQ(info.key_id, v2) << name;
  }
  // The open disk saw no interruption, and no data was rewritten.
  EXPECT_EQ(ReadAll(*h, 0, 1 << 20), data);
  ASSERT_OK(engine_->Flush());
  EXPECT_TRUE(PoolFile() == pool_before);
  // The old version is left enabled: it still unwraps what it wrapped.
  ASSERT_OK_AND_ASSIGN(auto old, ks_->GetKeyVersion("", v1));
  EXPECT_TRUE(old.enabled);
  // Disabling the old version does not matter any more.
  keystore::AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1, off).ok());
  h.reset();
  Reopen();
  ASSERT_OK_AND_ASSIGN(auto sh,
                       engine_->Open(ResourceKind::kSnapshot, "s", false));
  EXPECT_EQ(ReadAll(*sh, 0, 1 << 20), data);
}

TEST_F(EngineKeysTest, UpdateDesToKeyIdentityCannotUseIsRefusedWithCommand) {
  MakeKey("v1", "k1");
  DesInfo d = MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20, "des1");
  MakeKey("v2", "k2");  // identity not granted on v2
  auto r = engine_->UpdateDes("des1", keystore::KeyId{V("v2"), "k2", ""},
                              std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_HAS_SUBSTR(r.status().message(),
                    "cmkctl vault set-policy " + V("v2") + " --object-id " +
                        d.identity +
                        " --key-permissions get wrapKey unwrapKey");
  ASSERT_OK_AND_ASSIGN(auto same, engine_->GetDes("des1"));
  EXPECT_EQ(same.key_id, d.key_id);
  Grant("v2", d.identity);
  ASSERT_OK_AND_ASSIGN(
      auto moved,
      engine_->UpdateDes("des1", keystore::KeyId{V("v2"), "k2", ""}, false));
  EXPECT_EQ(moved.key_id.vault, V("v2"));
  ASSERT_OK_AND_ASSIGN(auto disk, engine_->Get(ResourceKind::kDisk, "d"));
  EXPECT_EQ(disk.key_id, moved.key_id);
}

TEST_F(EngineKeysTest, InterruptedRewrapResumesOnOpen) {
  auto v1 = MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("a", 1 << 20, "des1");
  MakeDisk("b", 1 << 20, "des1");
  {
    auto h = OpenDisk("a");
    WriteAll(*h, 0, Pattern(4096, 9));
  }
  auto v2 = NewVersion("v1", "k1", 2);
  CloseEngine();
  // The state UpdateDes leaves after writing its marker, before any
  // resource was re-wrapped (a crash right there).
  {
    lmdb::EnvOptions eo;
    ASSERT_OK_AND_ASSIGN(auto env, lmdb::Env::Open(options_.dir / "meta", eo));
    ASSERT_OK_AND_ASSIGN(auto db, env->OpenDb("des"));
    ASSERT_OK(env->Update([&](lmdb::Txn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto v, txn.Get(db, "des1"));
      CMKFS_ASSIGN_OR_RETURN(DesRecord d, DecodeDes(v));
      d.previous_key_id = d.key_id;
      d.key_id = v2.ToString();
      d.rotation_target = v2.ToString();
      return txn.Put(db, "des1", EncodeDes(d));
    }));
  }
  Reopen();
  ASSERT_OK_AND_ASSIGN(auto des, engine_->GetDes("des1"));
  EXPECT_EQ(des.key_id, v2);
  EXPECT_FALSE(des.previous_key_id.has_value());
  for (const char* n : {"a", "b"}) {
    ASSERT_OK_AND_ASSIGN(auto info, engine_->Get(ResourceKind::kDisk, n));
    EXPECT_EQ(info.key_id, v2) << n;
  }
  auto h = OpenDisk("a");
  EXPECT_EQ(ReadAll(*h, 0, 4096), Pattern(4096, 9));
  EXPECT_NE(v1, v2);
}

// The record of a resource as meta/ holds it; nullopt when there is none.
std::optional<std::string> RawRecord(const std::filesystem::path& dir,
                                     ResourceKind kind,
                                     const std::string& name) {
  std::optional<std::string> out;
  auto env = lmdb::Env::Open(dir / "meta", lmdb::EnvOptions{});
  EXPECT_TRUE(env.ok()) << env.status().ToString();
  if (!env.ok()) return out;
  auto db = (*env)->OpenDb("resources");
  EXPECT_TRUE(db.ok());
  Status s = (*env)->View([&](lmdb::Txn& txn) -> Status {
    auto v = txn.Get(*db, ResourceKey(kind, name));
    if (v.ok()) out = std::string(*v);
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Puts a record back, as an attacker who found its stale copy in a free page
// of meta/data.mdb would.
void RestoreRecord(const std::filesystem::path& dir, ResourceKind kind,
                   const std::string& name, const std::string& record) {
  auto env = lmdb::Env::Open(dir / "meta", lmdb::EnvOptions{});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  auto db = (*env)->OpenDb("resources");
  ASSERT_TRUE(db.ok());
  ASSERT_OK((*env)->Update([&](lmdb::Txn& txn) {
    return txn.Put(*db, ResourceKey(kind, name), record);
  }));
}

uint32_t EraseSlotOf(const std::string& record) {
  auto r = DecodeResource(record);
  EXPECT_TRUE(r.ok());
  if (!r.ok()) return UINT32_MAX;
  auto ref = SlotRef::Decode("CKD2", r->wrapped_dek);
  EXPECT_TRUE(ref.has_value());
  return ref ? ref->slot : UINT32_MAX;
}

bool SlotIsZero(const std::filesystem::path& dir, uint32_t slot) {
  std::ifstream f(dir / "meta" / "erase-slots", std::ios::binary);
  std::vector<char> bytes{std::istreambuf_iterator<char>(f), {}};
  const size_t at = size_t{slot} * EraseSlotFile::kSecretSize;
  if (bytes.size() < at + EraseSlotFile::kSecretSize) return true;
  return std::all_of(bytes.begin() + at,
                     bytes.begin() + at + EraseSlotFile::kSecretSize,
                     [](char c) { return c == 0; });
}

// What a copy of the state directory reveals about a deleted disk: its stale
// record, put back, no longer opens, although the key that wrapped its DEK
// still exists. Control: the same record in a copy taken before the delete
// opens and reads the data.
TEST_F(EngineKeysTest, ADeletedDisksStaleRecordNoLongerOpens) {
  MakeDisk("d", 1 << 20);
  {
    auto h = OpenDisk("d");
    WriteAll(*h, 8192, Pattern(5000, 9));
  }
  CloseEngine();
  const std::optional<std::string> stale =
      RawRecord(options_.dir, ResourceKind::kDisk, "d");
  ASSERT_TRUE(stale.has_value());
  const std::filesystem::path before = root_ / "before";
  std::filesystem::copy(options_.dir, before,
                        std::filesystem::copy_options::recursive);
  std::filesystem::remove(before / "LOCK");
  Reopen();
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "d"));
  CloseEngine();
  EXPECT_TRUE(SlotIsZero(options_.dir, EraseSlotOf(*stale)));
  {
    EngineOptions copy = options_;
    copy.dir = before;
    auto e = OpenEngine(copy, ks_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto h = (*e)->Open(ResourceKind::kDisk, "d", false);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_EQ(ReadAll(**h, 8192, 5000), Pattern(5000, 9));
  }
  RestoreRecord(options_.dir, ResourceKind::kDisk, "d", *stale);
  Reopen();
  auto h = engine_->Open(ResourceKind::kDisk, "d", false);
  ASSERT_FALSE(h.ok()) << "the deleted disk's key still opens";
  EXPECT_EQ(h.status().kind(), ErrorKind::kCorruption);
  EXPECT_HAS_SUBSTR(h.status().message(), "erased");
}

// Switching a platform-key disk to a customer key erases the copy of its DEK
// that the platform key wraps: the old record, put back, does not open.
TEST_F(EngineKeysTest, SwitchingToACustomerKeyErasesThePlatformWrappedCopy) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20);
  CloseEngine();
  const std::optional<std::string> platform =
      RawRecord(options_.dir, ResourceKind::kDisk, "d");
  ASSERT_TRUE(platform.has_value());
  Reopen();
  ASSERT_OK(engine_->SetDiskDes("d", "des1").status());
  CloseEngine();
  EXPECT_TRUE(SlotIsZero(options_.dir, EraseSlotOf(*platform)));
  RestoreRecord(options_.dir, ResourceKind::kDisk, "d", *platform);
  Reopen();
  auto h = engine_->Open(ResourceKind::kDisk, "d", false);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().kind(), ErrorKind::kCorruption);
}

// A slot no record names (a crash between a delete's commit and its erase,
// or a create that failed after wrapping) is erased at the next open; the
// slots records name are kept.
TEST_F(EngineKeysTest, OpenErasesSlotsNoRecordNames) {
  MakeDisk("d", 1 << 20);
  CloseEngine();
  const uint32_t named =
      EraseSlotOf(*RawRecord(options_.dir, ResourceKind::kDisk, "d"));
  uint32_t orphan = 0;
  {
    auto slots = EraseSlotFile::Open(options_.dir / "meta" / "erase-slots");
    ASSERT_TRUE(slots.ok());
    crypto::SecretBytes secret;
    ASSERT_OK_AND_ASSIGN(orphan, (*slots)->Allocate(&secret));
  }
  ASSERT_FALSE(SlotIsZero(options_.dir, orphan));
  Reopen();
  EXPECT_TRUE(SlotIsZero(options_.dir, orphan));
  EXPECT_FALSE(SlotIsZero(options_.dir, named));
  EXPECT_TRUE(OpenDisk("d", false) != nullptr);
}

// A record that does not decode may name a slot: the sweep then erases
// nothing, and the engine still opens and serves the other disks.
TEST_F(EngineKeysTest, AnUndecodableRecordStopsTheSweepNotTheEngine) {
  MakeDisk("d", 1 << 20);
  CloseEngine();
  RestoreRecord(options_.dir, ResourceKind::kDisk, "junk", "not a record");
  uint32_t orphan = 0;
  {
    auto slots = EraseSlotFile::Open(options_.dir / "meta" / "erase-slots");
    ASSERT_TRUE(slots.ok());
    crypto::SecretBytes secret;
    ASSERT_OK_AND_ASSIGN(orphan, (*slots)->Allocate(&secret));
  }
  Reopen();
  EXPECT_FALSE(SlotIsZero(options_.dir, orphan));
  EXPECT_TRUE(OpenDisk("d", false) != nullptr);
  ASSERT_OK_AND_ASSIGN(auto rep, engine_->Fsck());
  ASSERT_FALSE(rep.problems.empty());
  EXPECT_HAS_SUBSTR(rep.problems[0], "unreadable resource record");
}

// fsck names a disk whose wrapped key lost its erase slot (the slot file
// damaged or replaced), instead of letting the first open find out.
TEST_F(EngineKeysTest, FsckNamesADiskWhoseWrappedKeyIsErased) {
  MakeDisk("kept", 1 << 20);
  MakeDisk("lost", 1 << 20);
  ASSERT_OK_AND_ASSIGN(auto clean, engine_->Fsck());
  EXPECT_TRUE(clean.problems.empty());
  CloseEngine();
  const uint32_t slot =
      EraseSlotOf(*RawRecord(options_.dir, ResourceKind::kDisk, "lost"));
  {
    auto slots = EraseSlotFile::Open(options_.dir / "meta" / "erase-slots");
    ASSERT_TRUE(slots.ok());
    ASSERT_OK((*slots)->Erase(slot));
  }
  Reopen();
  ASSERT_OK_AND_ASSIGN(auto rep, engine_->Fsck());
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_HAS_SUBSTR(rep.problems[0],
                    "disks/lost: its wrapped disk key is erased");
  EXPECT_TRUE(OpenDisk("kept", false) != nullptr);
}

TEST_F(EngineKeysTest, SetDiskDesSwitchesPlatformDiskToCustomerKey) {
  MakeKey("v1", "k1");
  DesInfo d = MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20);
  {
    auto h = OpenDisk("d");
    WriteAll(*h, 4096, Pattern(10000, 4));
  }
  ASSERT_OK_AND_ASSIGN(auto info, engine_->SetDiskDes("d", "des1"));
  EXPECT_EQ(info.encryption, EncryptionType::kCustomer);
  EXPECT_EQ(info.des, "des1");
  EXPECT_EQ(info.key_id, d.key_id);
  Reopen();
  auto h = OpenDisk("d");
  EXPECT_EQ(ReadAll(*h, 4096, 10000), Pattern(10000, 4));
  ASSERT_OK_AND_ASSIGN(auto uses, engine_->KeyUses());
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0].identity, d.identity);
}

TEST_F(EngineKeysTest, OpenFailsWhileKeyVersionDisabled) {
  auto v1 = MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20, "des1");
  keystore::AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1, off).ok());
  auto h = engine_->Open(ResourceKind::kDisk, "d", true);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_HAS_SUBSTR(h.status().message(), "disk d");
}

TEST_F(EngineKeysTest, RotationRewrapsOpenDiskWhoseOldVersionIsDisabled) {
  auto v1 = MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("open", 1 << 20, "des1");
  MakeDisk("closed", 1 << 20, "des1");
  auto h = OpenDisk("open");
  WriteAll(*h, 0, Pattern(8192, 6));
  // Rotate, then disable the old version at once: the open disk's DEK is in
  // memory, so its re-wrap does not need the disabled version.
  auto v2 = NewVersion("v1", "k1", 1);
  keystore::AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1, off).ok());
  auto des = engine_->UpdateDes("des1", v2, std::nullopt);
  // The closed disk can only be unwrapped with the disabled version.
  ASSERT_FALSE(des.ok());
  ASSERT_OK_AND_ASSIGN(auto open_info,
                       engine_->Get(ResourceKind::kDisk, "open"));
  EXPECT_EQ(open_info.key_id, v2);
  ASSERT_OK_AND_ASSIGN(auto closed_info,
                       engine_->Get(ResourceKind::kDisk, "closed"));
  EXPECT_EQ(closed_info.key_id, v1);
  ASSERT_OK_AND_ASSIGN(auto pending, engine_->GetDes("des1"));
  EXPECT_HAS_SUBSTR(pending.rotation_error, "closed");
  // The re-wrapped disk opens with the new version alone.
  h.reset();
  Reopen();
  auto again = OpenDisk("open");
  EXPECT_EQ(ReadAll(*again, 0, 8192), Pattern(8192, 6));
  // Enabling v1 lets the rotation finish and clears the error.
  keystore::AttributeUpdate on;
  on.enabled = true;
  ASSERT_TRUE(ks_->UpdateKeyAttributes("", v1, on).ok());
  ASSERT_OK_AND_ASSIGN(auto done, engine_->UpdateDes("des1", v2, std::nullopt));
  EXPECT_EQ(done.key_id, v2);
  EXPECT_TRUE(done.rotation_error.empty());
}

TEST_F(EngineKeysTest, RotationErrorIsRecordedUntilTheNextRotation) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20, "des1");
  ASSERT_OK(engine_->SetDesRotationError("des1", "auto-rotation failed: x"));
  ASSERT_OK_AND_ASSIGN(auto des, engine_->GetDes("des1"));
  EXPECT_EQ(des.rotation_error, "auto-rotation failed: x");
  Reopen();  // persisted in the DES record
  ASSERT_OK_AND_ASSIGN(des, engine_->GetDes("des1"));
  EXPECT_EQ(des.rotation_error, "auto-rotation failed: x");
  EXPECT_EQ(engine_->SetDesRotationError("nope", "x").kind(),
            ErrorKind::kNotFound);
  auto v2 = NewVersion("v1", "k1", 1);
  ASSERT_OK_AND_ASSIGN(des, engine_->UpdateDes("des1", v2, std::nullopt));
  EXPECT_TRUE(des.rotation_error.empty());
  ASSERT_OK_AND_ASSIGN(des, engine_->GetDes("des1"));
  EXPECT_TRUE(des.rotation_error.empty());
}

}  // namespace
}  // namespace cmkfs::fs::testing
