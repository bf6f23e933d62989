// Rules of disk encryption sets and resources, one test per rule.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine_test_support.h"

namespace cmkfs::fs::testing {
namespace {

class EngineRulesTest : public EngineTest {};

TEST_F(EngineRulesTest, SecondOpenOfStateDirectoryIsBusyAndNamesPid) {
  auto second = OpenWith(nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().kind(), ErrorKind::kBusy);
  EXPECT_HAS_SUBSTR(second.status().message(),
                    ("pid " + std::to_string(::getpid())));
}

TEST_F(EngineRulesTest, SystemVaultWithPurgeProtectionAndPlatformKeyCreated) {
  CloseEngine();
  options_.system_vault = V("sysvault");
  ASSERT_FALSE(ks_->GetVault(options_.system_vault).ok());
  Reopen();
  auto v = ks_->GetVault(options_.system_vault);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->spec.purge_protection);
  ASSERT_OK_AND_ASSIGN(auto key, ks_->GetKeyVersion("", {options_.system_vault,
                                                         "platform", ""}));
  ResourceInfo d = MakeDisk("d", 1 << 20);
  EXPECT_EQ(d.key_id, key.id);
}

TEST_F(EngineRulesTest, DesRefusedWithoutPurgeProtection) {
  MakeKey("nopurge", "k1", /*purge_protection=*/false);
  DesSpec spec;
  spec.name = "des1";
  spec.key_id = {V("nopurge"), "k1", ""};
  auto d = engine_->CreateDes(spec);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(d.status().message(),
            "vault " + V("nopurge") +
                " has no purge protection; create it with --purge-protection");
}

TEST_F(EngineRulesTest, DesCreateRecordsVersionedKeyAndIdentity) {
  auto key = MakeKey("v1", "k1");
  DesSpec spec;
  spec.name = "des1";
  spec.key_id = {V("v1"), "k1", ""};
  spec.auto_rotate = true;
  ASSERT_OK_AND_ASSIGN(DesInfo d, engine_->CreateDes(spec));
  EXPECT_EQ(d.key_id, key);
  EXPECT_FALSE(d.key_id.versionless());
  EXPECT_EQ(d.identity.size(), 36u);
  EXPECT_TRUE(d.auto_rotate);
  EXPECT_EQ(d.encryption_type, "EncryptionAtRestWithCustomerKey");
  ASSERT_OK_AND_ASSIGN(DesInfo again, engine_->GetDes("des1"));
  EXPECT_EQ(again.identity, d.identity);
  ASSERT_OK_AND_ASSIGN(auto all, engine_->ListDes());
  EXPECT_EQ(all.size(), 1u);
}

TEST_F(EngineRulesTest, DesQuotaPerSubscriptionAndRegion) {
  options_.des_quota_per_region = 2;
  Reopen();
  MakeKey("v1", "k1");
  MakeKey("v2", "k2", true, "other-sub");
  for (const char* n : {"a", "b"}) {
    DesSpec s;
    s.name = n;
    s.key_id = {V("v1"), "k1", ""};
    ASSERT_TRUE(engine_->CreateDes(s).ok());
  }
  DesSpec s;
  s.name = "c";
  s.key_id = {V("v1"), "k1", ""};
  auto third = engine_->CreateDes(s);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_HAS_SUBSTR(third.status().message(), ("limit 2"));
  // Another subscription has its own quota.
  s.key_id = {V("v2"), "k2", ""};
  s.scope.subscription = "other-sub";
  EXPECT_TRUE(engine_->CreateDes(s).ok());
}

TEST_F(EngineRulesTest, DesMustShareSubscriptionAndRegionWithVault) {
  MakeKey("v1", "k1", true, "default", "westeurope");
  DesSpec s;
  s.name = "d";
  s.key_id = {V("v1"), "k1", ""};
  s.scope.region = "local";
  auto d = engine_->CreateDes(s);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().kind(), ErrorKind::kInvalidArgument);
  s.scope.region = "westeurope";
  EXPECT_TRUE(engine_->CreateDes(s).ok());
}

TEST_F(EngineRulesTest, DesUnusableUntilIdentityGrantedAndErrorPrintsCommand) {
  MakeKey("v1", "k1");
  DesInfo d = MakeDes("des1", "v1", "k1", /*grant=*/false);
  DiskSpec spec;
  spec.name = "disk1";
  spec.size = 1 << 20;
  spec.des = "des1";
  auto r = engine_->CreateDisk(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_HAS_SUBSTR(r.status().message(),
                    ("cmkctl vault set-policy " + V("v1") + " --object-id " +
                     d.identity + " --key-permissions get wrapKey unwrapKey"));
  Grant("v1", d.identity);
  EXPECT_TRUE(engine_->CreateDisk(spec).ok());
}

TEST_F(EngineRulesTest, DiskMustShareSubscriptionAndRegionWithDes) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  DiskSpec spec;
  spec.name = "disk1";
  spec.size = 1 << 20;
  spec.des = "des1";
  spec.scope.subscription = "elsewhere";
  auto r = engine_->CreateDisk(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_HAS_SUBSTR(r.status().message(), ("subscription"));
}

TEST_F(EngineRulesTest, DiskSizeMustBePositiveMultipleOf4096) {
  DiskSpec spec;
  spec.name = "d";
  for (uint64_t bad : {uint64_t{0}, uint64_t{4095}, uint64_t{4097}}) {
    spec.size = bad;
    auto r = engine_->CreateDisk(spec);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
  }
  spec.size = 8192;
  EXPECT_TRUE(engine_->CreateDisk(spec).ok());
}

TEST_F(EngineRulesTest, ResizeGrowsOnly) {
  MakeDisk("d", 1 << 20);
  EXPECT_EQ(engine_->Resize("d", 1 << 19).status().kind(),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(engine_->Resize("d", (1 << 20) + 1).status().kind(),
            ErrorKind::kInvalidArgument);
  auto h = OpenDisk("d");
  ASSERT_OK_AND_ASSIGN(auto info, engine_->Resize("d", 2 << 20));
  EXPECT_EQ(info.size, 2u << 20);
  EXPECT_EQ(h->size(), 2u << 20);
  WriteAll(*h, (2 << 20) - 4096, Pattern(4096, 1));
}

// Issue 14 item 6: a size near 2^64 was accepted and overflowed the extent
// arithmetic. Every size a disk gets is bounded by max_disk_size (64 TiB
// unless configured) and refused with the accepted range.
TEST_F(EngineRulesTest, EverySizeIsBoundedByTheLargestDisk) {
  const std::string range =
      " is not accepted: use a multiple of 4096 bytes from ";
  DiskSpec spec;
  spec.name = "huge";
  spec.size = 18446744073709547520ull;
  auto huge = engine_->CreateDisk(spec);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(huge.status().message(),
            "disk size 18446744073709547520" + range +
                "4096 (4 KiB) to 70368744177664 (64 TiB, [limits] "
                "max_disk_size)");
  spec.size = (64ull << 40) + 4096;
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(),
            ErrorKind::kInvalidArgument);
  spec.size = 64ull << 40;  // the largest disk itself is fine (thin)
  ASSERT_OK_AND_ASSIGN(auto largest, engine_->CreateDisk(spec));
  EXPECT_EQ(largest.size, 64ull << 40);
  auto h = OpenDisk("huge");
  EXPECT_EQ(h->size(), 64ull << 40);
  WriteAll(*h, (64ull << 40) - 4096, Pattern(4096, 7));
  h.reset();

  MakeDisk("d", 1 << 20);
  auto grown = engine_->Resize("d", 18446744073709547520ull);
  EXPECT_EQ(grown.status().message(),
            "new size of disk d 18446744073709547520" + range +
                "1052672 (1 MiB) to 70368744177664 (64 TiB, [limits] "
                "max_disk_size)");
  ASSERT_OK_AND_ASSIGN(auto snap, engine_->CreateSnapshot("s", "d"));
  (void)snap;
  DiskSpec clone;
  clone.name = "c";
  clone.source = "snapshots/s";
  clone.size = UINT64_MAX - 4095;
  EXPECT_EQ(engine_->CreateDisk(clone).status().message(),
            "disk size 18446744073709547520" + range +
                "1048576 (1 MiB) to 70368744177664 (64 TiB, [limits] "
                "max_disk_size)");
  EXPECT_EQ(engine_->Resize("huge", 65ull << 40).status().message(),
            "new size of disk huge 71468255805440 is not accepted: the "
            "largest disk is 70368744177664 bytes (64 TiB, [limits] "
            "max_disk_size)");
  ASSERT_OK_AND_ASSIGN(auto listed, engine_->Get(ResourceKind::kDisk, "d"));
  EXPECT_EQ(listed.size, 1u << 20);
}

TEST_F(EngineRulesTest, LargestDiskIsConfigurableAndBoundsImports) {
  options_.max_disk_size = 1ull << 30;
  Reopen();
  DiskSpec spec;
  spec.name = "big";
  spec.size = 2ull << 30;
  EXPECT_EQ(engine_->CreateDisk(spec).status().message(),
            "disk size 2147483648 is not accepted: use a multiple of 4096 "
            "bytes from 4096 (4 KiB) to 1073741824 (1 GiB, [limits] "
            "max_disk_size)");
  MakeDisk("d", 1 << 30);
  EXPECT_EQ(engine_->Resize("d", (1ull << 30) + 4096).status().kind(),
            ErrorKind::kInvalidArgument);
  // A sparse file larger than the largest disk is refused before any copy.
  const auto file = root_ / "big.raw";
  { std::ofstream(file) << "x"; }
  std::filesystem::resize_file(file, (1ull << 30) + 1);
  spec.size = 0;
  auto imported = engine_->ImportDisk(spec, file, Progress{});
  EXPECT_EQ(imported.status().message(),
            "file " + file.string() +
                " (1073741825 bytes) is larger than the largest disk, "
                "1073741824 bytes (1 GiB, [limits] max_disk_size)");
  EXPECT_EQ(engine_->Get(ResourceKind::kDisk, "big").status().kind(),
            ErrorKind::kNotFound);
}

TEST_F(EngineRulesTest, NamesAreValidated) {
  for (std::string bad :
       std::vector<std::string>{"", ".", "..", "a/b", "-x", ".hidden",
                                std::string(81, 'a'), "sp ace"}) {
    DiskSpec spec;
    spec.name = bad;
    spec.size = 4096;
    auto r = engine_->CreateDisk(spec);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument) << bad;
  }
  DiskSpec ok;
  ok.name = std::string(80, 'a');
  ok.size = 4096;
  EXPECT_TRUE(engine_->CreateDisk(ok).ok());
  ok.name = "Disk_1.v-2";
  EXPECT_TRUE(engine_->CreateDisk(ok).ok());
  EXPECT_EQ(engine_->CreateDisk(ok).status().kind(), ErrorKind::kAlreadyExists);
}

TEST_F(EngineRulesTest, PlatformDiskUsesSystemVaultKey) {
  ResourceInfo d = MakeDisk("d", 1 << 20);
  EXPECT_EQ(d.encryption, EncryptionType::kPlatform);
  EXPECT_EQ(d.key_id.vault, options_.system_vault);
  EXPECT_EQ(d.key_id.name, "platform");
  EXPECT_FALSE(d.key_id.versionless());
  EXPECT_EQ(d.sku, DiskSku::kPremiumLrs);
}

TEST_F(EngineRulesTest, SkuNamesRoundTripAndUnknownIsRefused) {
  for (DiskSku s : {DiskSku::kPremiumLrs, DiskSku::kStandardSsdLrs,
                    DiskSku::kStandardLrs, DiskSku::kUltraSsdLrs}) {
    auto p = ParseDiskSku(DiskSkuName(s));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, s);
  }
  auto bad = ParseDiskSku("Premium");
  ASSERT_FALSE(bad.ok());
  EXPECT_HAS_SUBSTR(bad.status().message(), ("UltraSSD_LRS"));
}

TEST_F(EngineRulesTest, MoveOfCustomerKeyDiskRefusedPlatformAllowed) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("cust", 1 << 20, "des1");
  MakeDisk("plat", 1 << 20);
  auto m = engine_->Move("cust", "rg2", std::nullopt);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().kind(), ErrorKind::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto moved, engine_->Move("plat", "rg2", "sub2"));
  EXPECT_EQ(moved.scope.resource_group, "rg2");
  EXPECT_EQ(moved.scope.subscription, "sub2");
  // Subscription only (the resource group stays): the same rules.
  auto sub_only = engine_->Move("cust", "default", "sub2");
  ASSERT_FALSE(sub_only.ok());
  EXPECT_EQ(sub_only.status().kind(), ErrorKind::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto cust, engine_->Get(ResourceKind::kDisk, "cust"));
  EXPECT_EQ(cust.scope.subscription, "default");
  ASSERT_OK_AND_ASSIGN(auto plat, engine_->Move("plat", "rg2", "sub3"));
  EXPECT_EQ(plat.scope.resource_group, "rg2");
  EXPECT_EQ(plat.scope.subscription, "sub3");
}

TEST_F(EngineRulesTest, GuestEncryptedDiskAndItsClonesCannotUseCustomerKeys) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  DiskSpec spec;
  spec.name = "g";
  spec.size = 1 << 20;
  spec.guest_encrypted = true;
  ASSERT_TRUE(engine_->CreateDisk(spec).ok());
  auto sw = engine_->SetDiskDes("g", "des1");
  ASSERT_FALSE(sw.ok());
  EXPECT_EQ(sw.status().kind(), ErrorKind::kFailedPrecondition);
  spec.name = "g2";
  spec.des = "des1";
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(),
            ErrorKind::kFailedPrecondition);

  // The flag travels with the data: a clone of a guest-encrypted source, or
  // a clone declared guest-encrypted, never gets a customer key.
  ASSERT_TRUE(engine_->CreateSnapshot("gs", "g").ok());
  DiskSpec c;
  c.name = "c1";
  c.source = "gs";
  c.des = "des1";
  auto refused = engine_->CreateDisk(c);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            "disk c1 is made from guest-encrypted snapshots/gs and cannot use "
            "customer-managed keys");
  EXPECT_FALSE(engine_->Get(ResourceKind::kDisk, "c1").ok());
  c.des.clear();
  ASSERT_OK_AND_ASSIGN(auto plain, engine_->CreateDisk(c));
  EXPECT_TRUE(plain.guest_encrypted);
  EXPECT_EQ(engine_->SetDiskDes("c1", "des1").status().kind(),
            ErrorKind::kFailedPrecondition);

  MakeDisk("cmk", 1 << 20, "des1");
  ASSERT_TRUE(engine_->CreateSnapshot("cs", "cmk").ok());
  DiskSpec c3;
  c3.name = "c3";
  c3.source = "cs";
  c3.guest_encrypted = true;
  auto declared = engine_->CreateDisk(c3);
  ASSERT_FALSE(declared.ok()) << "a guest-encrypted disk on a customer key";
  EXPECT_EQ(declared.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_FALSE(engine_->Get(ResourceKind::kDisk, "c3").ok());
}

TEST_F(EngineRulesTest, SnapshotKeepsSourceKeyAndIsReadOnly) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  ResourceInfo d = MakeDisk("d", 1 << 20, "des1");
  ASSERT_OK_AND_ASSIGN(auto s, engine_->CreateSnapshot("s1", "d"));
  EXPECT_EQ(s.kind, ResourceKind::kSnapshot);
  EXPECT_EQ(s.des, "des1");
  EXPECT_EQ(s.key_id, d.key_id);
  EXPECT_EQ(s.encryption, EncryptionType::kCustomer);
  EXPECT_EQ(s.source, "disks/d");
  auto w = engine_->Open(ResourceKind::kSnapshot, "s1", true);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().kind(), ErrorKind::kReadOnly);
  ASSERT_OK_AND_ASSIGN(auto r,
                       engine_->Open(ResourceKind::kSnapshot, "s1", false));
  EXPECT_FALSE(r->writable());
  std::vector<uint8_t> b(4096);
  EXPECT_EQ(r->Write(0, b).status().kind(), ErrorKind::kReadOnly);
}

TEST_F(EngineRulesTest, DiskFromCustomerImageMustUseSameKey) {
  MakeKey("v1", "k1");
  MakeKey("v1", "k2");
  MakeDes("des1", "v1", "k1");
  MakeDes("des1b", "v1", "k1");
  MakeDes("des2", "v1", "k2");
  MakeDisk("d", 1 << 20, "des1");
  ASSERT_TRUE(engine_->CreateImage("img", "disks/d").ok());
  DiskSpec spec;
  spec.name = "fromimg";
  spec.source = "images/img";
  spec.des = "des2";
  auto bad = engine_->CreateDisk(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().kind(), ErrorKind::kFailedPrecondition);
  EXPECT_HAS_SUBSTR(bad.status().message(), ("same key"));
  spec.des = "des1b";  // another DES on the same key: accepted
  ASSERT_OK_AND_ASSIGN(auto ok, engine_->CreateDisk(spec));
  EXPECT_EQ(ok.des, "des1b");
  spec.name = "inherit";
  spec.des = "";
  ASSERT_OK_AND_ASSIGN(auto inherited, engine_->CreateDisk(spec));
  EXPECT_EQ(inherited.des, "des1");
  spec.name = "othersub";
  spec.scope.subscription = "other";
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(),
            ErrorKind::kInvalidArgument);
}

TEST_F(EngineRulesTest, PlatformSourceMakesPlatformClone) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20);
  ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  DiskSpec spec;
  spec.name = "c";
  spec.source = "s";
  ASSERT_OK_AND_ASSIGN(auto c, engine_->CreateDisk(spec));
  EXPECT_EQ(c.encryption, EncryptionType::kPlatform);
  spec.name = "c2";
  spec.des = "des1";
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(),
            ErrorKind::kInvalidArgument);
}

TEST_F(EngineRulesTest, SourceResolution) {
  MakeDisk("d", 1 << 20);
  ASSERT_TRUE(engine_->CreateSnapshot("same", "d").ok());
  ASSERT_TRUE(engine_->CreateImage("same", "disks/d").ok());
  DiskSpec spec;
  spec.name = "x";
  spec.source = "same";
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(),
            ErrorKind::kInvalidArgument);  // ambiguous
  spec.source = "snapshots/same";
  EXPECT_TRUE(engine_->CreateDisk(spec).ok());
  spec.name = "y";
  spec.source = "disks/d";  // disks are not a disk source
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(),
            ErrorKind::kInvalidArgument);
  spec.source = "nothing";
  EXPECT_EQ(engine_->CreateDisk(spec).status().kind(), ErrorKind::kNotFound);
  EXPECT_TRUE(engine_->CreateImage("fromsnap", "snapshots/same").ok());
}

TEST_F(EngineRulesTest, DeleteOfOpenResourceIsBusy) {
  MakeDisk("d", 1 << 20);
  auto h = OpenDisk("d");
  auto st = engine_->Delete(ResourceKind::kDisk, "d");
  EXPECT_EQ(st.kind(), ErrorKind::kBusy);
  h.reset();
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "d"));
  EXPECT_EQ(engine_->Get(ResourceKind::kDisk, "d").status().kind(),
            ErrorKind::kNotFound);
}

TEST_F(EngineRulesTest, DesDeleteRefusedWhileUsed) {
  MakeKey("v1", "k1");
  MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20, "des1");
  auto st = engine_->DeleteDes("des1");
  EXPECT_EQ(st.kind(), ErrorKind::kFailedPrecondition);
  EXPECT_HAS_SUBSTR(st.message(), ("disks/d"));
  ASSERT_OK(engine_->Delete(ResourceKind::kDisk, "d"));
  ASSERT_OK(engine_->DeleteDes("des1"));
  EXPECT_EQ(engine_->GetDes("des1").status().kind(), ErrorKind::kNotFound);
}

TEST_F(EngineRulesTest, WrappedDekIsBoundToResourceAndUsesOaep256) {
  MakeKey("v1", "k1");
  DesInfo d = MakeDes("des1", "v1", "k1");
  MakeDisk("d", 1 << 20, "des1");
  auto h = OpenDisk("d");
  ASSERT_TRUE(h);
  // The audit of the customer vault shows the DES identity wrapping and
  // unwrapping with the versioned key.
  ASSERT_OK_AND_ASSIGN(auto audit, ks_->ReadAudit(V("v1"), {}));
  bool wrapped = false, unwrapped = false;
  for (const auto& e : audit) {
    if (e.identity == d.identity && e.operation == "wrapKey" &&
        e.result == "ok")
      wrapped = true;
    if (e.identity == d.identity && e.operation == "unwrapKey" &&
        e.result == "ok")
      unwrapped = true;
  }
  EXPECT_TRUE(wrapped);
  EXPECT_TRUE(unwrapped);
}

TEST_F(EngineRulesTest, SealWipesKeyFailsIoAndUnsealRestores) {
  MakeDisk("d", 1 << 20);
  auto h = OpenDisk("d");
  WriteAll(*h, 0, Pattern(8192, 3));
  ASSERT_OK(engine_->Seal(ResourceKind::kDisk, "d", "key version disabled"));
  std::vector<uint8_t> buf(4096);
  auto r = h->Read(0, buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), ErrorKind::kKeyUnavailable);
  EXPECT_HAS_SUBSTR(r.status().message(), ("key version disabled"));
  auto o = engine_->Open(ResourceKind::kDisk, "d", true);
  EXPECT_EQ(o.status().kind(), ErrorKind::kKeyUnavailable);
  ASSERT_OK_AND_ASSIGN(auto info, engine_->Get(ResourceKind::kDisk, "d"));
  EXPECT_EQ(info.state, ResourceState::kSealed);
  EXPECT_EQ(info.seal_reason, "key version disabled");
  ASSERT_OK(engine_->Unseal(ResourceKind::kDisk, "d"));
  EXPECT_EQ(ReadAll(*h, 0, 8192), Pattern(8192, 3));
  // Sealed state survives a restart.
  ASSERT_OK(engine_->Seal(ResourceKind::kDisk, "d", "gone"));
  h.reset();
  Reopen();
  EXPECT_EQ(engine_->Open(ResourceKind::kDisk, "d", false).status().kind(),
            ErrorKind::kKeyUnavailable);
}

TEST_F(EngineRulesTest, UltraDiskKeepsWorkingWhileOpenThenUnopenable) {
  DiskSpec spec;
  spec.name = "u";
  spec.size = 1 << 20;
  spec.sku = DiskSku::kUltraSsdLrs;
  ASSERT_TRUE(engine_->CreateDisk(spec).ok());
  auto h = OpenDisk("u");
  ASSERT_OK(engine_->Seal(ResourceKind::kDisk, "u", "key deleted"));
  WriteAll(*h, 0, Pattern(4096, 1));
  EXPECT_EQ(ReadAll(*h, 0, 4096), Pattern(4096, 1));
  h.reset();
  EXPECT_EQ(engine_->Open(ResourceKind::kDisk, "u", false).status().kind(),
            ErrorKind::kKeyUnavailable);
}

TEST_F(EngineRulesTest, KeyUsesListsEveryResource) {
  MakeKey("v1", "k1");
  DesInfo d = MakeDes("des1", "v1", "k1");
  MakeDisk("c", 1 << 20, "des1");
  MakeDisk("p", 1 << 20);
  ASSERT_TRUE(engine_->CreateSnapshot("s", "c").ok());
  ASSERT_OK_AND_ASSIGN(auto uses, engine_->KeyUses());
  ASSERT_EQ(uses.size(), 3u);
  int customer = 0;
  for (const auto& u : uses) {
    if (u.des == "des1") {
      ++customer;
      EXPECT_EQ(u.identity, d.identity);
      EXPECT_EQ(u.key_id, d.key_id);
    }
  }
  EXPECT_EQ(customer, 2);
}

TEST_F(EngineRulesTest, ChangeListenerCalledOnCreateAndDelete) {
  std::vector<std::string> seen;
  engine_->SetChangeListener([&](ResourceKind k, std::string_view n) {
    seen.push_back(std::string(ResourceKindName(k)) + "/" + std::string(n));
  });
  MakeDisk("d", 4096);
  ASSERT_TRUE(engine_->CreateSnapshot("s", "d").ok());
  ASSERT_OK(engine_->Delete(ResourceKind::kSnapshot, "s"));
  EXPECT_EQ(seen,
            (std::vector<std::string>{"disk/d", "snapshot/s", "snapshot/s"}));
}

}  // namespace
}  // namespace cmkfs::fs::testing
