// Benchmark: re-wrap of N disks (default 1000) on one DES after a key
// rotation, engine-level, 2048-bit keys; and the cost of one watcher poll
// over that many key uses.
//
//   watcher_rewrap_bench [--disks N] [--dir DIR]
//
// Prints one line per figure; exit status 1 on any error.
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/watcher.h"

namespace {

using cmkfs::Result;
using cmkfs::Status;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int Fail(const char* what, const Status& s) {
  std::fprintf(stderr, "rewrap_bench: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

int Run(int disks, const std::filesystem::path& dir) {
  namespace ks = cmkfs::keystore;
  namespace fs = cmkfs::fs;
  ks::KeyStoreOptions ko;
  ko.dir = dir / "vault";
  ko.master_key_file = dir / "vault.key";
  Result<std::unique_ptr<ks::KeyStore>> store = ks::OpenKeyStore(ko);
  if (!store.ok()) return Fail("open keystore", store.status());
  fs::EngineOptions eo;
  eo.dir = dir / "engine";
  Result<std::unique_ptr<fs::Engine>> engine = fs::OpenEngine(eo, store->get());
  if (!engine.ok()) return Fail("open engine", engine.status());

  ks::VaultSpec vault;
  vault.name = "bench";
  vault.purge_protection = true;
  if (auto r = (*store)->CreateVault(vault); !r.ok()) {
    return Fail("create vault", r.status());
  }
  if (auto r = (*store)->CreateKey("", "bench", "k", ks::KeyType::kRsa, 2048);
      !r.ok()) {
    return Fail("create key", r.status());
  }
  fs::DesSpec des_spec;
  des_spec.name = "des";
  des_spec.key_id = *ks::KeyId::Parse("cmk://bench/keys/k");
  Result<fs::DesInfo> des = (*engine)->CreateDes(des_spec);
  if (!des.ok()) return Fail("create des", des.status());
  Status granted = (*store)->SetAccessPolicy(
      "", "bench", des->identity,
      ks::Permission::kGet | ks::Permission::kWrapKey |
          static_cast<uint32_t>(ks::Permission::kUnwrapKey));
  if (!granted.ok()) return Fail("grant", granted);

  auto start = Clock::now();
  for (int i = 0; i < disks; ++i) {
    fs::DiskSpec d;
    d.name = "disk" + std::to_string(i);
    d.size = 1 << 20;
    d.des = "des";
    if (auto r = (*engine)->CreateDisk(d); !r.ok()) {
      return Fail("create disk", r.status());
    }
  }
  std::printf("created %d customer-key disks in %.2f s\n", disks,
              SecondsSince(start));

  fs::KeyWatcher watcher(engine->get(), store->get(), {});
  start = Clock::now();
  Result<fs::PollReport> poll = watcher.PollOnce();
  if (!poll.ok()) return Fail("poll", poll.status());
  std::printf("one watcher poll over %d key uses: %.1f ms\n", disks,
              SecondsSince(start) * 1000);

  Result<ks::KeyVersionInfo> v2 = (*store)->RotateKey("", "bench", "k");
  if (!v2.ok()) return Fail("rotate key", v2.status());
  start = Clock::now();
  Result<fs::DesInfo> updated =
      (*engine)->UpdateDes("des", v2->id, std::nullopt);
  if (!updated.ok()) return Fail("update des", updated.status());
  const double rewrap = SecondsSince(start);
  std::printf(
      "re-wrapped %d disks (RSA-2048, des update --key-id) in %.2f s "
      "(%.2f ms per disk)\n",
      disks, rewrap, rewrap * 1000 / disks);

  Result<fs::ResourceInfo> last = (*engine)->Get(
      fs::ResourceKind::kDisk, "disk" + std::to_string(disks - 1));
  if (!last.ok()) return Fail("get disk", last.status());
  if (!(last->key_id == v2->id)) {
    std::fprintf(stderr, "rewrap_bench: disk%d still on %s\n", disks - 1,
                 last->key_id.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int disks = 1000;
  std::filesystem::path dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--disks") == 0 && i + 1 < argc) {
      disks = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--disks N] [--dir DIR]\n", argv[0]);
      return 2;
    }
  }
  if (disks < 1) {
    std::fprintf(stderr, "rewrap_bench: --disks must be at least 1\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);  // not one line per disk
  bool own_dir = dir.empty();
  if (own_dir) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "cmkfs-rewrap-XXXXXX")
            .string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("rewrap_bench: mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  int rc = Run(disks, dir);
  if (own_dir) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}
