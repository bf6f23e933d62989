// The disk commands, run through the real cmkctl binary.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>

#include "cli_support.h"

namespace cmkfs::cli::testing {
namespace {

class DiskCommandsTest : public CmkctlTest {
 protected:
  // A vault with purge protection, a key, and a DES on it; returns the DES
  // identity (not yet granted).
  std::string MakeDes() {
    CtlOk({"vault", "create", "vault1", "--purge-protection"});
    CtlOk({"key", "create", "vault1", "key1", "--size", "2048"});
    std::string identity =
        CtlOk({"des", "create", "des1", "--key-id", "cmk://vault1/keys/key1"});
    EXPECT_EQ(identity.find('\n'), identity.size() - 1) << identity;
    identity.pop_back();
    EXPECT_FALSE(identity.empty());
    return identity;
  }
  void Grant(const std::string& identity) {
    CtlOk({"vault", "set-policy", "vault1", "--object-id", identity,
           "--key-permissions", "get", "wrapKey", "unwrapKey"});
  }
  Json Show(const std::string& kind, const std::string& name) {
    return ParseJsonOrFail(Ctl({kind, "show", name, "-o", "json"}));
  }
};

// Issue 14 item 6: this size was accepted, then listed as -4096, and the
// disk file gave EIO. It is refused with the accepted range, and nothing is
// created.
TEST_F(DiskCommandsTest, HugeSizesAreRefusedWithTheAcceptedRange) {
  RunResult r = Ctl({"disk", "create", "d1", "--size", "18446744073709547520"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "cmkctl: disk size 18446744073709547520 is not accepted: use a "
            "multiple of 4096 bytes from 4096 (4 KiB) to 70368744177664 (64 "
            "TiB, [limits] max_disk_size)\n");
  RunResult units = Ctl({"disk", "create", "d1", "--size", "16777216T"});
  EXPECT_EQ(units.exit_code, 2);
  EXPECT_EQ(units.err,
            "cmkctl: --size: size '16777216T' is too large: sizes up to 16 "
            "EiB - 1 (18446744073709551615 bytes) are accepted\n");
  EXPECT_EQ(Ctl({"disk", "show", "d1"}).exit_code, 1);
  CtlOk({"disk", "create", "d1", "--size", "1M"});
  RunResult grow = Ctl({"disk", "resize", "d1", "--size", "65T"});
  EXPECT_EQ(grow.exit_code, 1);
  EXPECT_NE(grow.err.find("to 70368744177664 (64 TiB, [limits] "
                          "max_disk_size)"),
            std::string::npos)
      << grow.err;
  // The limit comes from the config.
  const auto config = tmp() / "cmkfs.toml";
  std::ofstream(config) << "[limits]\nmax_disk_size = \"1G\"\n";
  RunResult limited = Ctl(
      {"--config", config.string(), "disk", "create", "d2", "--size", "2G"});
  EXPECT_EQ(limited.exit_code, 1);
  EXPECT_NE(limited.err.find("to 1073741824 (1 GiB, [limits] max_disk_size)"),
            std::string::npos)
      << limited.err;
  Json d1 = Show("disk", "d1");
  EXPECT_EQ(d1["size"].get<int64_t>(), 1 << 20);
}

TEST_F(DiskCommandsTest, CustomerKeyDiskNeedsTheGrantNamedInTheError) {
  std::string identity = MakeDes();
  Json des = Show("des", "des1");
  for (const char* field :
       {"name", "key_id", "identity", "auto_rotate", "last_rotation",
        "rotation_error", "scope", "previous_key_id"}) {
    EXPECT_TRUE(des.contains(field)) << field << " in " << des.dump();
  }
  EXPECT_EQ(des["identity"].get<std::string>(), identity);
  EXPECT_TRUE(
      des["key_id"].get<std::string>().starts_with("cmk://vault1/keys/key1/"));
  EXPECT_FALSE(des["auto_rotate"].get<bool>());

  RunResult refused =
      Ctl({"disk", "create", "d1", "--size", "64M", "--des", "des1"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.out, "");
  std::string grant = "cmkctl vault set-policy vault1 --object-id " + identity +
                      " --key-permissions get wrapKey unwrapKey";
  EXPECT_NE(refused.err.find(grant), std::string::npos) << refused.err;
  EXPECT_TRUE(refused.err.starts_with("cmkctl: "));
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1);

  Grant(identity);
  CtlOk({"disk", "create", "d1", "--size", "64M", "--des", "des1", "--sku",
         "StandardSSD_LRS"});
  Json disk = Show("disk", "d1");
  for (const char* field :
       {"name", "size", "sku", "encryption", "des", "key_id", "state", "source",
        "seal_reason", "subscription", "resource_group", "region",
        "allocated_bytes", "guest_encrypted", "created"}) {
    EXPECT_TRUE(disk.contains(field)) << field << " in " << disk.dump();
  }
  EXPECT_EQ(disk["name"].get<std::string>(), "d1");
  EXPECT_EQ(disk["size"].get<int64_t>(), 64 << 20);
  EXPECT_EQ(disk["sku"].get<std::string>(), "StandardSSD_LRS");
  EXPECT_EQ(disk["encryption"].get<std::string>(), "customer");
  EXPECT_EQ(disk["des"].get<std::string>(), "des1");
  EXPECT_EQ(disk["key_id"].get<std::string>(),
            des["key_id"].get<std::string>());
  EXPECT_EQ(disk["state"].get<std::string>(), "active");
  EXPECT_TRUE(disk["source"].is_null());

  // Customer-key disks cannot move to another resource group.
  RunResult move = Ctl({"disk", "move", "d1", "--resource-group", "rg2"});
  EXPECT_EQ(move.exit_code, 1);
  EXPECT_EQ(move.out, "");
  EXPECT_EQ(move.err,
            "cmkctl: disk d1 uses a customer-managed key (disk encryption set "
            "des1); customer-key resources cannot move to another resource "
            "group or subscription\n");
  EXPECT_EQ(Show("disk", "d1")["resource_group"].get<std::string>(), "default");
  // Nor to another subscription in the same resource group.
  RunResult sub_move = Ctl({"disk", "move", "d1", "--resource-group", "default",
                            "--subscription", "sub2"});
  EXPECT_EQ(sub_move.exit_code, 1);
  EXPECT_EQ(sub_move.err, move.err);
  EXPECT_EQ(Show("disk", "d1")["subscription"].get<std::string>(), "default");

  // Rotation through the DES re-wraps the disk under the new version.
  std::string v2 = CtlOk({"key", "rotate", "vault1", "key1"});
  v2.pop_back();
  Json updated = ParseJsonOrFail(Ctl({"des", "update", "des1", "--key-id", v2,
                                      "--auto-rotate", "true", "-o", "json"}));
  EXPECT_EQ(updated["key_id"].get<std::string>(), v2);
  EXPECT_TRUE(updated["auto_rotate"].get<bool>());
  EXPECT_EQ(Show("disk", "d1")["key_id"].get<std::string>(), v2);

  RunResult in_use = Ctl({"des", "delete", "des1"});
  EXPECT_EQ(in_use.exit_code, 1);
}

TEST_F(DiskCommandsTest, PlatformDiskSnapshotImageAndClones) {
  std::string table = CtlOk({"disk", "create", "d1", "--size", "10G"});
  EXPECT_NE(table.find("encryption"), std::string::npos);
  Json disk = Show("disk", "d1");
  EXPECT_EQ(disk["encryption"].get<std::string>(), "platform");
  EXPECT_TRUE(disk["des"].is_null());
  EXPECT_EQ(disk["size"].get<int64_t>(), int64_t{10} << 30);
  EXPECT_EQ(disk["sku"].get<std::string>(), "Premium_LRS");

  CtlOk({"disk", "move", "d1", "--resource-group", "rg2", "--subscription",
         "sub2"});
  disk = Show("disk", "d1");
  EXPECT_EQ(disk["resource_group"].get<std::string>(), "rg2");
  EXPECT_EQ(disk["subscription"].get<std::string>(), "sub2");

  CtlOk({"disk", "resize", "d1", "--size", "11G"});
  EXPECT_EQ(Show("disk", "d1")["size"].get<int64_t>(), int64_t{11} << 30);
  RunResult shrink = Ctl({"disk", "resize", "d1", "--size", "1G"});
  EXPECT_EQ(shrink.exit_code, 1);

  CtlOk({"snapshot", "create", "s1", "--source", "d1"});
  Json snap = Show("snapshot", "s1");
  EXPECT_EQ(snap["source"].get<std::string>(), "disks/d1");
  CtlOk({"image", "create", "i1", "--source", "s1"});
  EXPECT_EQ(Show("image", "i1")["source"].get<std::string>(), "snapshots/s1");
  CtlOk({"disk", "create", "d2", "--source", "i1"});
  Json d2 = Show("disk", "d2");
  EXPECT_EQ(d2["source"].get<std::string>(), "images/i1");
  EXPECT_EQ(d2["size"].get<int64_t>(), int64_t{11} << 30);
  CtlOk({"disk", "create", "d3", "--source", "s1", "--size", "12G"});
  EXPECT_EQ(Show("disk", "d3")["size"].get<int64_t>(), int64_t{12} << 30);

  Json disks = ParseJsonOrFail(Ctl({"disk", "list", "-o", "json"}));
  ASSERT_EQ(disks.size(), 3u);
  std::string list = CtlOk({"snapshot", "list"});
  EXPECT_TRUE(list.starts_with("NAME ")) << list;
  EXPECT_NE(list.find("\ns1 "), std::string::npos) << list;
  EXPECT_EQ(ParseJsonOrFail(Ctl({"image", "list", "-o", "json"})).size(), 1u);

  CtlOk({"image", "delete", "i1"});
  CtlOk({"snapshot", "delete", "s1"});
  CtlOk({"disk", "delete", "d3"});
  EXPECT_EQ(ParseJsonOrFail(Ctl({"image", "list", "-o", "json"})).size(), 0u);
  EXPECT_EQ(ParseJsonOrFail(Ctl({"disk", "list", "-o", "json"})).size(), 2u);
  RunResult gone = Ctl({"disk", "show", "d3"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("d3"), std::string::npos);

  std::string fsck = CtlOk({"fsck"});
  EXPECT_NE(fsck.find("clean"), std::string::npos) << fsck;
  Json report = ParseJsonOrFail(Ctl({"fsck", "-o", "json"}));
  EXPECT_TRUE(report["clean"].get<bool>());
  EXPECT_EQ(report["problems"].size(), 0u);
}

TEST_F(DiskCommandsTest, ImportExportRoundTrip) {
  std::string in = (tmp() / "in.raw").string();
  {
    std::ofstream f(in, std::ios::binary);
    std::mt19937 rng(7);
    std::string block(64 << 10, '\0');
    for (auto& c : block) c = static_cast<char>(rng());
    f.write(block.data(), static_cast<std::streamsize>(block.size()));
    f.seekp(3 << 20);
    f.write(block.data(), 4096);
  }
  std::filesystem::resize_file(in, 4 << 20);
  RunResult imported = Ctl({"disk", "create", "imp", "--import", in});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  // Not a TTY: one final progress line.
  EXPECT_NE(imported.err.find("imported"), std::string::npos) << imported.err;
  EXPECT_EQ(std::count(imported.err.begin(), imported.err.end(), '\n'), 1);
  EXPECT_EQ(Show("disk", "imp")["size"].get<int64_t>(), 4 << 20);

  std::string out = (tmp() / "out.raw").string();
  RunResult exported = Ctl({"disk", "export", "imp", out});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  std::ifstream a(in, std::ios::binary), b(out, std::ios::binary);
  std::string da((std::istreambuf_iterator<char>(a)), {});
  std::string db((std::istreambuf_iterator<char>(b)), {});
  EXPECT_EQ(da.size(), db.size());
  EXPECT_TRUE(da == db) << "exported image differs from the imported file";

  RunResult again = Ctl({"disk", "export", "imp", out});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(again.err.starts_with("cmkctl: ")) << again.err;

  RunResult missing =
      Ctl({"disk", "create", "imp2", "--import", in + ".absent"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(Ctl({"disk", "show", "imp2"}).exit_code, 1)
      << "half-made disk left";
}

// A FIFO that never delivers used to block the import in open() (holding the
// daemon's command lock): it is refused at once, naming what is accepted.
TEST_F(DiskCommandsTest, ImportRefusesAFifoAtOnce) {
  std::string fifo = (tmp() / "never.fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto start = std::chrono::steady_clock::now();
  RunResult r = RunCmkctl(
      {"--state-dir", state_dir(), "disk", "create", "f", "--import", fifo}, {},
      [start] {
        return std::chrono::steady_clock::now() - start >
               std::chrono::seconds(20);
      });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("is a FIFO"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("regular file"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(Ctl({"disk", "show", "f"}).exit_code, 1) << "half-made disk left";
}

TEST_F(DiskCommandsTest, DiskRefusals) {
  RunResult sku = Ctl({"disk", "create", "d", "--size", "1G", "--sku", "Gold"});
  EXPECT_EQ(sku.exit_code, 2);
  EXPECT_NE(sku.err.find("Premium_LRS"), std::string::npos) << sku.err;
  RunResult size = Ctl({"disk", "create", "d", "--size", "lots"});
  EXPECT_EQ(size.exit_code, 2);
  EXPECT_TRUE(size.err.starts_with("cmkctl: --size: ")) << size.err;
  RunResult no_size = Ctl({"disk", "create", "d"});
  EXPECT_EQ(no_size.exit_code, 2);
  EXPECT_NE(no_size.err.find("--size"), std::string::npos);
  RunResult no_des =
      Ctl({"disk", "create", "d", "--size", "1G", "--des", "nope"});
  EXPECT_EQ(no_des.exit_code, 1);
  EXPECT_NE(no_des.err.find("nope"), std::string::npos);
  RunResult no_key = Ctl({"des", "create", "x"});
  EXPECT_EQ(no_key.exit_code, 2);
  RunResult bad_key = Ctl({"des", "create", "x", "--key-id", "http://nope"});
  EXPECT_EQ(bad_key.exit_code, 2);
  RunResult no_rg = Ctl({"disk", "move", "d"});
  EXPECT_EQ(no_rg.exit_code, 2);
  EXPECT_NE(no_rg.err.find("--resource-group"), std::string::npos);

  // A DES on a vault without purge protection is refused.
  CtlOk({"vault", "create", "soft"});
  CtlOk({"key", "create", "soft", "k", "--size", "2048"});
  RunResult soft = Ctl({"des", "create", "x", "--key-id", "cmk://soft/keys/k"});
  EXPECT_EQ(soft.exit_code, 1);
  EXPECT_NE(soft.err.find("purge protection"), std::string::npos) << soft.err;
}

// SIGINT during a local import cancels it cleanly: exit 130, one line
// naming the cancel, no half-imported disk. The signal goes once the import
// is copying (the extent pool has grown), not after a guessed delay.
TEST_F(DiskCommandsTest, SigintCancelsAnImportAndLeavesNoDisk) {
  CtlOk({"disk", "list"});  // state made: the platform key exists
  const std::filesystem::path pool =
      std::filesystem::path(state_dir()) / "extents" / "pool.0";
  auto pool_size = [&]() -> uintmax_t {
    std::error_code ec;
    uintmax_t n = std::filesystem::file_size(pool, ec);
    return ec ? 0 : n;
  };
  const uintmax_t pool_before = pool_size();
  // 16 GiB, one data block per MiB: 16384 extents to copy, far more than
  // are copied between the pool's first growth and the signal.
  const std::string in = (tmp() / "big.raw").string();
  {
    std::ofstream f(in, std::ios::binary);
    const std::string block(4096, 'x');
    for (uint64_t off = 0; off < (uint64_t{16} << 30); off += 1 << 20) {
      f.seekp(static_cast<std::streamoff>(off));
      f.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    ASSERT_TRUE(f.good());
  }
  RunResult r = RunCmkctl(
      {"--state-dir", state_dir(), "disk", "create", "big", "--import", in}, {},
      [&] { return pool_size() > pool_before; });
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(r.err.starts_with("cmkctl: ")) << r.err;
  EXPECT_NE(r.err.find("import of " + in + " cancelled"), std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(ParseJsonOrFail(Ctl({"disk", "list", "-o", "json"})).size(), 0u)
      << "half-imported disk left";
  std::string fsck = CtlOk({"fsck"});
  EXPECT_NE(fsck.find("clean"), std::string::npos) << fsck;
}

// The one line cmkctl prints for a refused command, checked whole.
void ExpectRefused(const RunResult& r, const std::string& reason) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "cmkctl: " + reason + "\n");
}

TEST_F(DiskCommandsTest, GuestEncryptedDisksNeverUseCustomerKeys) {
  Grant(MakeDes());
  CtlOk({"disk", "create", "g1", "--size", "64M", "--guest-encrypted"});
  EXPECT_TRUE(Show("disk", "g1")["guest_encrypted"].get<bool>());
  ExpectRefused(Ctl({"disk", "update", "g1", "--des", "des1"}),
                "disk g1 was guest-encrypted and cannot switch to "
                "customer-managed keys");
  EXPECT_EQ(Show("disk", "g1")["encryption"].get<std::string>(), "platform");
  ExpectRefused(Ctl({"disk", "create", "g2", "--size", "64M",
                     "--guest-encrypted", "--des", "des1"}),
                "disk g2 is guest-encrypted and cannot use customer-managed "
                "keys");
  EXPECT_EQ(Ctl({"disk", "show", "g2"}).exit_code, 1) << "refused disk made";

  // Through a clone: the flag travels with the data.
  CtlOk({"snapshot", "create", "gs", "--source", "g1"});
  EXPECT_TRUE(Show("snapshot", "gs")["guest_encrypted"].get<bool>());
  ExpectRefused(
      Ctl({"disk", "create", "c1", "--source", "gs", "--des", "des1"}),
      "disk c1 is made from guest-encrypted snapshots/gs and "
      "cannot use customer-managed keys");
  EXPECT_EQ(Ctl({"disk", "show", "c1"}).exit_code, 1) << "refused disk made";
  CtlOk({"disk", "create", "c2", "--source", "gs"});
  EXPECT_TRUE(Show("disk", "c2")["guest_encrypted"].get<bool>());
  ExpectRefused(Ctl({"disk", "update", "c2", "--des", "des1"}),
                "disk c2 was guest-encrypted and cannot switch to "
                "customer-managed keys");

  // A guest-encrypted clone of a customer-key disk is refused as well.
  CtlOk({"disk", "create", "cmk", "--size", "64M", "--des", "des1"});
  CtlOk({"snapshot", "create", "cs", "--source", "cmk"});
  ExpectRefused(
      Ctl({"disk", "create", "c3", "--source", "cs", "--guest-encrypted"}),
      "disk c3 is guest-encrypted and cannot use customer-managed "
      "keys");
  EXPECT_EQ(Ctl({"disk", "show", "c3"}).exit_code, 1) << "refused disk made";
}

TEST_F(DiskCommandsTest, DiskFromACustomerKeyImageStaysInItsRegion) {
  Grant(MakeDes());
  CtlOk({"disk", "create", "d1", "--size", "64M", "--des", "des1"});
  CtlOk({"image", "create", "i1", "--source", "d1"});
  ExpectRefused(
      Ctl({"disk", "create", "far", "--source", "i1", "--region", "west"}),
      "disk far must be in the subscription and region of its customer-key "
      "source images/i1 (default, local)");
  EXPECT_EQ(Ctl({"disk", "show", "far"}).exit_code, 1) << "refused disk made";
  ExpectRefused(Ctl({"disk", "create", "far", "--source", "i1",
                     "--subscription", "sub2"}),
                "disk far must be in the subscription and region of its "
                "customer-key source images/i1 (default, local)");
  // In its own region it is made, on the image's key.
  CtlOk({"disk", "create", "near", "--source", "i1"});
  Json near = Show("disk", "near");
  EXPECT_EQ(near["region"].get<std::string>(), "local");
  EXPECT_EQ(near["key_id"].get<std::string>(),
            Show("disk", "d1")["key_id"].get<std::string>());
}

TEST_F(DiskCommandsTest, SubscriptionOnlyMove) {
  CtlOk({"disk", "create", "d1", "--size", "64M"});
  // The target resource group is always named: without it nothing moves.
  RunResult bare = Ctl({"disk", "move", "d1", "--subscription", "sub2"});
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_NE(bare.err.find("--resource-group"), std::string::npos) << bare.err;
  EXPECT_EQ(Show("disk", "d1")["subscription"].get<std::string>(), "default");
  // Same resource group, another subscription: a platform-key disk moves.
  CtlOk({"disk", "move", "d1", "--resource-group", "default", "--subscription",
         "sub2"});
  Json d1 = Show("disk", "d1");
  EXPECT_EQ(d1["subscription"].get<std::string>(), "sub2");
  EXPECT_EQ(d1["resource_group"].get<std::string>(), "default");
}

TEST_F(DiskCommandsTest, DesQuotaFromTheConfigFileIsPerSubscriptionAndRegion) {
  const std::string config = (tmp() / "cmkfs.toml").string();
  std::ofstream(config) << "[limits]\ndisk_encryption_sets_per_region = 2\n";
  auto with_config = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config});
    return args;
  };
  CtlOk(with_config({"vault", "create", "vault1", "--purge-protection"}));
  CtlOk(with_config({"key", "create", "vault1", "k", "--size", "2048"}));
  for (const char* name : {"a", "b"}) {
    CtlOk(with_config(
        {"des", "create", name, "--key-id", "cmk://vault1/keys/k"}));
  }
  ExpectRefused(
      Ctl(with_config(
          {"des", "create", "c", "--key-id", "cmk://vault1/keys/k"})),
      "quota reached: subscription default already has 2 disk encryption "
      "sets in region local (limit 2, [limits] "
      "disk_encryption_sets_per_region)");
  // Another region has a quota of its own.
  CtlOk(with_config(
      {"vault", "create", "vault2", "--purge-protection", "--region", "west"}));
  CtlOk(with_config({"key", "create", "vault2", "k", "--size", "2048"}));
  CtlOk(with_config({"des", "create", "c", "--key-id", "cmk://vault2/keys/k",
                     "--region", "west"}));
  // Without the config file the default (1000) applies.
  CtlOk({"des", "create", "d", "--key-id", "cmk://vault1/keys/k"});
  EXPECT_EQ(ParseJsonOrFail(Ctl({"des", "list", "-o", "json"})).size(), 4u);
}

TEST_F(DiskCommandsTest, StateDirectoryIsCreatedPrivate) {
  CtlOk({"disk", "list"});
  struct stat st;
  ASSERT_EQ(::stat(state_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t tab = line.find('\t', pos);
    out.push_back(line.substr(pos, tab - pos));
    if (tab == std::string::npos) return out;
    pos = tab + 1;
  }
}

// -o tsv, as a shell script reads it: one line per resource, no header, the
// JSON fields' values in their order (az -o tsv).
TEST_F(DiskCommandsTest, TsvPrintsOneLinePerResourceInJsonFieldOrder) {
  EXPECT_EQ(CtlOk({"disk", "list", "-o", "tsv"}), "");  // no header
  const std::string identity = MakeDes();
  Grant(identity);
  CtlOk({"disk", "create", "d1", "--size", "1M", "--des", "des1"});
  CtlOk({"disk", "create", "d2", "--size", "2M", "--sku", "Standard_LRS"});
  const std::string listed = CtlOk({"disk", "list", "-o", "tsv"});
  ASSERT_EQ(std::count(listed.begin(), listed.end(), '\n'), 2) << listed;
  const std::string line1 = listed.substr(0, listed.find('\n'));
  const std::string line2 =
      listed.substr(line1.size() + 1, listed.size() - line1.size() - 2);
  Json d1 = Show("disk", "d1");
  const std::vector<std::string> f1 = SplitTabs(line1);
  ASSERT_EQ(f1.size(), d1.size()) << line1;
  EXPECT_EQ(f1[0], "d1");
  EXPECT_EQ(f1[1], "disk");
  EXPECT_EQ(f1[2], "1048576");
  EXPECT_EQ(f1[4], "customer");
  EXPECT_EQ(f1[5], "des1");
  EXPECT_EQ(f1[6], d1["key_id"].get<std::string>());
  EXPECT_EQ(f1[8], "");        // seal_reason: null
  EXPECT_EQ(f1[15], "0");      // open_handles
  EXPECT_EQ(f1[14], "false");  // guest_encrypted
  const std::vector<std::string> f2 = SplitTabs(line2);
  EXPECT_EQ(f2[0], "d2");
  EXPECT_EQ(f2[3], "Standard_LRS");
  EXPECT_EQ(f2[5], "");  // des: null
  // A show is one line; the DES identity is its third field, as documented.
  const std::string des = CtlOk({"des", "show", "des1", "-o", "tsv"});
  EXPECT_EQ(std::count(des.begin(), des.end(), '\n'), 1);
  EXPECT_EQ(SplitTabs(des)[2], identity);
  // Nested values are compact JSON on the same line.
  EXPECT_NE(des.find("\t{\"subscription\":\"default\",\"resource_group\":"
                     "\"default\",\"region\":\"local\"}\t"),
            std::string::npos)
      << des;
  // Commands that print an id alone in table mode print their record.
  const std::string snap =
      CtlOk({"snapshot", "create", "s1", "--source", "d2", "-o", "tsv"});
  EXPECT_EQ(snap.substr(0, 12), "s1\tsnapshot\t");
  EXPECT_EQ(CtlOk({"version", "-o", "tsv"}).back(), '\n');
  EXPECT_EQ(CtlOk({"fsck", "-o", "tsv"}), "true\t3\t0\t[]\n");
}

}  // namespace
}  // namespace cmkfs::cli::testing
