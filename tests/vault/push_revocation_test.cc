// Push revocation (docs/watcher.md, "Push and the unreachable grace"): a
// storage host in service mode, opened by the composition root cmkctl and
// cmkfs use, whose key watcher subscribes to a real cmkvault process (gRPC,
// mutual TLS, unix socket). The owner's client disables the key; the next
// read on an open handle fails.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <thread>

#include "cmkfs/cli.h"
#include "cmkfs/engine.h"
#include "cmkfs/watcher.h"
#include "service_host.h"
#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kDiskSize = 1ull << 20;

milliseconds Since(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t);
}

class PushRevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = tmp_.path() / "cmkvault";
    admin_ = tmp_.path() / "admin.pem";
    sock_ = tmp_.path() / "cmkvault.sock";
    creds_ = tmp_.path() / "host-creds";
    const auto host = tmp_.path() / "host.pem";
    ASSERT_EQ(Cmkvault({"init", "--admin-out", admin_.string()}).rc, 0);
    Ran issued = Cmkvault({"identity", "issue", "storage-host", "--host",
                           "--out", host.string()});
    ASSERT_EQ(issued.rc, 0) << issued.err;
    ASSERT_NO_FATAL_FAILURE(StartService());

    ClientOptions o;
    o.endpoint = endpoint();
    o.credential = admin_;
    auto owner = ConnectKeyStore(o);
    ASSERT_TRUE(owner.ok()) << owner.status().ToString();
    owner_ = std::move(*owner);
    keystore::testing::MakeVault(*owner_, "customer",
                                 /*purge_protection=*/true);
    key_ =
        keystore::testing::ImportFixtureKey(*owner_, "customer", "disk-key").id;
    std::filesystem::create_directories(creds_);
    std::filesystem::permissions(creds_, std::filesystem::perms::owner_all);
    const auto host_dir = tmp_.path() / "host";
    std::filesystem::create_directories(host_dir);
    auto services = OpenServiceModeServices(host_dir, endpoint(), host, creds_);
    ASSERT_TRUE(services.ok()) << services.status().ToString();
    services_ = std::move(*services);

    fs::DesSpec des;
    des.name = "des1";
    des.key_id = *keystore::KeyId::Parse("cmk://customer/keys/disk-key");
    auto made = services_.engine->CreateDes(des);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    // The service minted the DES identity through the host identity; the
    // host keeps its credential. The owner grants it.
    const std::string des_id = made->identity;
    ASSERT_TRUE(std::filesystem::exists(creds_ / (des_id + ".pem")));
    ASSERT_TRUE(
        owner_
            ->SetAccessPolicy(
                "", "customer", des_id,
                keystore::Permission::kGet | keystore::Permission::kWrapKey |
                    static_cast<uint32_t>(keystore::Permission::kUnwrapKey))
            .ok());
    for (const char* name : {"disk1", "disk2"}) {
      fs::DiskSpec spec;
      spec.name = name;
      spec.size = kDiskSize;
      spec.des = "des1";
      auto disk = services_.engine->CreateDisk(spec);
      ASSERT_TRUE(disk.ok()) << disk.status().ToString();
    }
    auto h = services_.engine->Open(fs::ResourceKind::kDisk, "disk1", true);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    handle_ = *h;
    std::vector<uint8_t> data(4096, 0x5a);
    ASSERT_TRUE(handle_->Write(0, data).ok());
  }

  void TearDown() override {
    watcher_.reset();
    handle_.reset();
    services_.engine.reset();
    services_.keystore.reset();
    owner_.reset();
    serve_.reset();
  }

  std::string endpoint() const { return "unix:" + sock_.string(); }

  Ran Cmkvault(std::vector<std::string> args) {
    args.insert(args.begin(), {"--state-dir", state_.string()});
    Process p(CMKVAULT_PATH, std::move(args));
    return p.Finish(std::chrono::seconds(30));
  }

  void StartService() {
    serve_ = StartCmkvaultServe(CMKVAULT_PATH, state_, endpoint());
    ASSERT_NE(serve_, nullptr);
  }

  void StartWatcher(fs::WatcherOptions options) {
    watcher_ = std::make_unique<fs::KeyWatcher>(
        services_.engine.get(), services_.keystore.get(), std::move(options));
    ASSERT_TRUE(watcher_->Start().ok());
  }

  Status Read() {
    std::vector<uint8_t> buf(4096);
    return handle_->Read(0, buf).status();
  }
  // How long until Read() gives `ok` (nullopt after `timeout`).
  std::optional<milliseconds> WaitForRead(bool ok, milliseconds timeout) {
    const auto start = Clock::now();
    while (Since(start) < timeout) {
      if (Read().ok() == ok) return Since(start);
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    return std::nullopt;
  }
  Status SetEnabled(bool enabled) {
    keystore::AttributeUpdate u;
    u.enabled = enabled;
    return owner_->UpdateKeyAttributes("", key_, u).status();
  }
  bool PushConnected() { return watcher_ && watcher_->stats().push_connected; }

  TempDir tmp_;
  std::filesystem::path state_, admin_, sock_, creds_;
  std::unique_ptr<Process> serve_;
  std::unique_ptr<keystore::KeyStore> owner_;
  keystore::KeyId key_;
  cli::Services services_;
  std::shared_ptr<fs::DiskHandle> handle_;
  std::unique_ptr<fs::KeyWatcher> watcher_;
};

// The bounds of issue 17 item 5: median < 100 ms, max < 250 ms over 20
// trials. Polling is set to 60 s, so only the pushed event can meet them.
TEST_F(PushRevocationTest, DisableSealsAnOpenHandleWithinTheBound) {
  fs::WatcherOptions options;
  options.poll_interval = std::chrono::seconds(60);
  StartWatcher(options);
  const auto up = Clock::now();
  while (!PushConnected() && Since(up) < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(PushConnected()) << "no WatchKeys stream within 10 s";
  ASSERT_TRUE(Read().ok());

  std::vector<milliseconds> latencies;
  for (int trial = 0; trial < 20; ++trial) {
    const auto start = Clock::now();
    ASSERT_TRUE(SetEnabled(false).ok());
    std::optional<milliseconds> failed =
        WaitForRead(false, std::chrono::seconds(5));
    ASSERT_TRUE(failed.has_value()) << "trial " << trial << ": still readable";
    latencies.push_back(Since(start));
    ASSERT_TRUE(SetEnabled(true).ok());
    ASSERT_TRUE(WaitForRead(true, std::chrono::seconds(5)).has_value())
        << "trial " << trial << ": not unsealed after the key was enabled";
  }
  std::sort(latencies.begin(), latencies.end());
  const milliseconds median = (latencies[9] + latencies[10]) / 2;
  const milliseconds max = latencies.back();
  std::printf(
      "push revocation, 20 trials (disable call to failed read): median %lld "
      "ms, max %lld ms, min %lld ms\n",
      static_cast<long long>(median.count()),
      static_cast<long long>(max.count()),
      static_cast<long long>(latencies.front().count()));
  EXPECT_LT(median, milliseconds(100));
  EXPECT_LT(max, milliseconds(250));
  EXPECT_GE(watcher_->stats().push_events, 40u);
}

// Service killed: open disks keep working for the grace period, new opens
// fail naming the endpoint, the disks seal after it and unseal (no remount,
// the same handle) when the service is back.
TEST_F(PushRevocationTest, UnreachableServiceGraceThenSealThenUnseal) {
  constexpr milliseconds kGrace{2000};
  fs::WatcherOptions options;
  options.poll_interval = milliseconds(200);
  options.unreachable_grace = kGrace;
  // Not due during the test: each poll then reads the change counter first.
  options.rotation_policy_interval = std::chrono::hours(1);
  StartWatcher(options);
  ASSERT_TRUE(Read().ok());

  const auto killed = Clock::now();
  serve_->Signal(SIGKILL);
  ASSERT_NE(serve_->Wait(std::chrono::seconds(5)), -1);

  auto opened = services_.engine->Open(fs::ResourceKind::kDisk, "disk2", false);
  ASSERT_FALSE(opened.ok());
  const std::string msg = opened.status().message();
  EXPECT_NE(msg.find("vault service " + endpoint() + " unreachable"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "[" << msg << "]";

  // Working within the grace: the seal can come no earlier than kGrace
  // after the kill (the watcher's clock starts at its first failed poll).
  std::optional<milliseconds> failed =
      WaitForRead(false, kGrace + std::chrono::seconds(15));
  ASSERT_TRUE(failed.has_value()) << "not sealed after the grace period";
  const milliseconds sealed_after = Since(killed);
  // The engine cuts the handles first, then records the state.
  const auto cut = Clock::now();
  while (services_.engine->Get(fs::ResourceKind::kDisk, "disk1")->state !=
             fs::ResourceState::kSealed &&
         Since(cut) < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::printf("service killed: open disk sealed after %lld ms (grace %lld)\n",
              static_cast<long long>(sealed_after.count()),
              static_cast<long long>(kGrace.count()));
  EXPECT_GE(sealed_after, kGrace);
  auto info = services_.engine->Get(fs::ResourceKind::kDisk, "disk1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, fs::ResourceState::kSealed);
  EXPECT_NE(info->seal_reason.find("unreachable for longer than the grace"),
            std::string::npos)
      << info->seal_reason;

  ASSERT_NO_FATAL_FAILURE(StartService());
  const auto back = Clock::now();
  ASSERT_TRUE(WaitForRead(true, std::chrono::seconds(15)).has_value())
      << "the open handle did not come back with the service";
  std::printf("service back: unsealed after %lld ms\n",
              static_cast<long long>(Since(back).count()));
  // disk2 (sealed too, no handle open) unseals in the same poll.
  const auto both = Clock::now();
  while (services_.engine->Get(fs::ResourceKind::kDisk, "disk2")->state !=
             fs::ResourceState::kActive &&
         Since(both) < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto reopened =
      services_.engine->Open(fs::ResourceKind::kDisk, "disk2", false);
  EXPECT_TRUE(reopened.ok()) << reopened.status().ToString();
}

}  // namespace
}  // namespace cmkfs::vault::testing
