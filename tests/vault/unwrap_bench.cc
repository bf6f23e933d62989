// unwrapKey through the vault service against the embedded store, measured
// in the same run (docs/BENCHMARKS.md, "Unwrap through the vault service"):
// a cmkvault server in this process (real gRPC, mutual TLS 1.3, loopback TCP
// and a unix socket), a DES-like client identity granted get/wrapKey/
// unwrapKey on an RSA-2048 key, and the same unwraps on the service's own
// KeyStore in-process. Prints ops/s and latency percentiles per path and
// the ratio to embedded; exits 1 if any unwrap fails or returns other bytes.
//   vault_unwrap_bench [--seconds S] [--threads N] [--record FILE]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

using Steady = std::chrono::steady_clock;

struct Figures {
  double ops_per_s = 0;  // one caller
  double p50_us = 0;
  double p99_us = 0;
  double parallel_ops_per_s = 0;  // `threads` callers at once
  bool ok = true;
};

Figures Measure(keystore::KeyStore& ks, const std::string& caller,
                const keystore::KeyId& key, const std::vector<uint8_t>& blob,
                const std::vector<uint8_t>& dek, double seconds, int threads) {
  Figures f;
  std::vector<double> lat;
  const auto end = Steady::now() + std::chrono::duration<double>(seconds);
  const auto t0 = Steady::now();
  while (Steady::now() < end) {
    const auto a = Steady::now();
    auto out = ks.UnwrapKey(caller, key, blob, {});
    lat.push_back(
        std::chrono::duration<double, std::micro>(Steady::now() - a).count());
    if (!out.ok() || out->size() != dek.size() ||
        std::memcmp(out->data(), dek.data(), dek.size()) != 0) {
      std::fprintf(stderr, "unwrap failed: %s\n",
                   out.ok() ? "other bytes" : out.status().ToString().c_str());
      f.ok = false;
      return f;
    }
  }
  const double took = std::chrono::duration<double>(Steady::now() - t0).count();
  f.ops_per_s = static_cast<double>(lat.size()) / took;
  std::sort(lat.begin(), lat.end());
  f.p50_us = lat[lat.size() / 2];
  f.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];

  std::atomic<long> done{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> pool;
  const auto pend = Steady::now() + std::chrono::duration<double>(seconds);
  const auto p0 = Steady::now();
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      while (Steady::now() < pend) {
        if (!ks.UnwrapKey(caller, key, blob, {}).ok()) failed = true;
        ++done;
      }
    });
  }
  for (auto& t : pool) t.join();
  f.parallel_ops_per_s =
      static_cast<double>(done) /
      std::chrono::duration<double>(Steady::now() - p0).count();
  f.ok = !failed;
  return f;
}

int Main(int argc, char** argv) {
  double seconds = 2;
  int threads = 4;
  std::string record;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--record" && i + 1 < argc) {
      record = argv[++i];
    } else {
      std::fprintf(stderr,
                   "vault_unwrap_bench: unknown argument '%s'; accepted: "
                   "--seconds S, --threads N, --record FILE\n",
                   a.c_str());
      return 2;
    }
  }
  if (seconds <= 0 || threads < 1) {
    std::fprintf(stderr,
                 "vault_unwrap_bench: --seconds must be > 0 and --threads "
                 ">= 1\n");
    return 2;
  }
  TestVaultService service;
  auto owner = service.Connect();
  if (owner == nullptr) return 1;
  keystore::testing::MakeVault(*owner, "customer");
  const keystore::KeyVersionInfo key =
      keystore::testing::ImportFixtureKey(*owner, "customer", "disk-key");
  Identity des = service.Issue("des bench");
  if (!owner
           ->SetAccessPolicy(
               "", "customer", des.object_id,
               keystore::Permission::kGet | keystore::Permission::kWrapKey |
                   static_cast<uint32_t>(keystore::Permission::kUnwrapKey))
           .ok()) {
    return 1;
  }
  const std::vector<uint8_t> dek(64, 0x5a);
  auto blob = owner->WrapKey("", key.id, dek, {});
  if (!blob.ok()) return 1;
  auto tcp = service.Connect(service.BundleOf(des.object_id));
  auto unix_socket =
      service.Connect(service.BundleOf(des.object_id), /*unix_socket=*/true);
  if (tcp == nullptr || unix_socket == nullptr) return 1;
  // Embedded: the very store the service serves, called in-process.
  keystore::KeyStore* embedded = &service.store();
  struct Row {
    const char* name;
    Figures f;
  };
  std::vector<Row> rows = {
      {"embedded (in-process)",
       Measure(*embedded, des.object_id, key.id, *blob, dek, seconds, threads)},
      {"service, TCP loopback",
       Measure(*tcp, "", key.id, *blob, dek, seconds, threads)},
      {"service, unix socket",
       Measure(*unix_socket, "", key.id, *blob, dek, seconds, threads)},
  };
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  double load = 0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line),
                "unwrapKey, RSA-2048 OAEP-256, 64-byte DEK, %.1f s per "
                "figure, %d threads for the parallel one; %u cores, load "
                "%.1f\n\n",
                seconds, threads, std::thread::hardware_concurrency(), load);
  out += line;
  out +=
      "| path | unwrap/s (1 caller) | p50 µs | p99 µs | unwrap/s "
      "(parallel) | 1-caller ratio to embedded |\n"
      "| --- | ---: | ---: | ---: | ---: | ---: |\n";
  bool ok = true;
  for (const Row& r : rows) {
    ok = ok && r.f.ok;
    std::snprintf(
        line, sizeof(line), "| %s | %.0f | %.0f | %.0f | %.0f | %.2fx |\n",
        r.name, r.f.ops_per_s, r.f.p50_us, r.f.p99_us, r.f.parallel_ops_per_s,
        rows[0].f.ops_per_s > 0 ? r.f.ops_per_s / rows[0].f.ops_per_s : 0.0);
    out += line;
  }
  std::fputs(out.c_str(), stdout);
  if (!record.empty()) {
    // Inserted before the end marker of the bench's own section, so that
    // the file's results log (tests/bench/report.py's) stays its own.
    const std::string end_marker = "<!-- end vault_unwrap_bench runs -->";
    std::ifstream in(record);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    const size_t at = text.find(end_marker);
    if (at == std::string::npos) {
      std::fprintf(stderr,
                   "vault_unwrap_bench: %s has no line '%s' to record "
                   "before\n",
                   record.c_str(), end_marker.c_str());
      return 1;
    }
    const auto now =
        std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char when[64];
    std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    text.insert(at, "Run " + std::string(when) + " (vault_unwrap_bench " +
                        "--record): " + out + "\n");
    std::ofstream(record, std::ios::trunc) << text;
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace cmkfs::vault::testing

int main(int argc, char** argv) {
  return cmkfs::vault::testing::Main(argc, argv);
}
