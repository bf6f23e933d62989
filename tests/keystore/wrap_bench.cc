// wrap+unwrap throughput of the keystore per RSA key size (RSA-OAEP-256,
// 64-byte DEK, audit on). Not a test: run it by hand.
//   keystore_wrap_bench [seconds-per-size]
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cmkfs/keystore.h"

int main(int argc, char** argv) {
  using namespace cmkfs::keystore;
  using Steady = std::chrono::steady_clock;
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  std::string templ =
      (std::filesystem::temp_directory_path() / "cmkfs-wrap-bench-XXXXXX")
          .string();
  if (::mkdtemp(templ.data()) == nullptr) return 1;
  const std::filesystem::path tmp = templ;
  int rc = 0;
  {
    KeyStoreOptions o;
    o.dir = tmp / "vault";
    o.master_key_file = tmp / "vault.key";
    auto ks = OpenKeyStore(o);
    if (!ks.ok()) {
      std::fprintf(stderr, "%s\n", ks.status().ToString().c_str());
      return 1;
    }
    VaultSpec spec;
    spec.name = "bench";
    if (!(*ks)->CreateVault(spec).ok()) return 1;
    std::printf("%-6s %12s %12s %12s\n", "bits", "wrap/s", "unwrap/s",
                "wrap+unwrap/s");
    for (int bits : {2048, 3072, 4096}) {
      auto key = (*ks)->CreateKey("", "bench", "k" + std::to_string(bits),
                                  KeyType::kRsa, bits);
      if (!key.ok()) {
        std::fprintf(stderr, "%s\n", key.status().ToString().c_str());
        rc = 1;
        break;
      }
      std::vector<uint8_t> dek(64, 0x33);
      double wrap_s = 0, unwrap_s = 0;
      long n = 0;
      const auto deadline =
          Steady::now() + std::chrono::duration<double>(seconds);
      while (Steady::now() < deadline) {
        auto t0 = Steady::now();
        auto blob = (*ks)->WrapKey("", key->id, dek, {});
        auto t1 = Steady::now();
        auto out = (*ks)->UnwrapKey("", key->id, *blob, {});
        auto t2 = Steady::now();
        if (!blob.ok() || !out.ok()) {
          rc = 1;
          break;
        }
        wrap_s += std::chrono::duration<double>(t1 - t0).count();
        unwrap_s += std::chrono::duration<double>(t2 - t1).count();
        ++n;
      }
      std::printf("%-6d %12.0f %12.0f %12.0f\n", bits, n / wrap_s, n / unwrap_s,
                  n / (wrap_s + unwrap_s));
    }
  }
  std::filesystem::remove_all(tmp);
  return rc;
}
