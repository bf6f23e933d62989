// cmkctl forwards to a daemon listening on <state_dir>/control.sock: here the
// "daemon" is this test process serving RunCommand on its own services, as
// the cmkfs daemon does.
#include <gtest/gtest.h>

#include "cli_support.h"
#include "cmkfs/cli.h"

namespace cmkfs::cli::testing {
namespace {

class DaemonForwardingTest : public CmkctlTest {
 protected:
  void SetUp() override {
    GlobalFlags flags;
    flags.state_dir = state_dir();
    auto config = LoadEffectiveConfig(flags);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto services = OpenServices(*config);
    ASSERT_TRUE(services.ok()) << services.status().message();
    services_ = std::move(*services);
    config_ = *config;
    auto server = ControlServer::StartCancellable(
        ControlSocketPath(config_), [this](const std::vector<std::string>& args,
                                           const std::atomic<bool>& cancel) {
          CommandContext ctx;
          ctx.config = config_;
          ctx.keystore = services_.keystore.get();
          ctx.engine = services_.engine.get();
          ctx.cancel = &cancel;
          ++served_;
          return RunCommand(args, ctx);
        });
    ASSERT_TRUE(server.ok()) << server.status().message();
    server_ = std::move(*server);
  }
  void TearDown() override { server_.reset(); }

  Config config_;
  Services services_;
  std::unique_ptr<ControlServer> server_;
  std::atomic<int> served_{0};
};

TEST_F(DaemonForwardingTest, CommandsRunInTheDaemonWithTheirGlobalFlags) {
  // The engine's state directory is locked by the "daemon": only forwarding
  // can work.
  std::string out = CtlOk({"vault", "create", "vault1", "--purge-protection"});
  EXPECT_NE(out.find("vault1"), std::string::npos);
  EXPECT_EQ(served_.load(), 1);
  auto vault = services_.keystore->GetVault("vault1");
  ASSERT_TRUE(vault.ok()) << "command did not run in the daemon";

  std::string id = CtlOk({"key", "create", "vault1", "key1", "--size", "2048"});
  EXPECT_TRUE(id.starts_with("cmk://vault1/keys/key1/")) << id;
  Json key =
      ParseJsonOrFail(Ctl({"-o", "json", "key", "show", "vault1", "key1"}));
  EXPECT_EQ(key["name"].get<std::string>(), "key1");
  RunResult denied = Ctl({"key", "show", "vault1", "key1", "--as",
                          "0f8fad5b-d9cb-469f-a165-70867728950e"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_TRUE(denied.err.starts_with("cmkctl: ")) << denied.err;

  CtlOk({"disk", "create", "d1", "--size", "1G"});
  auto disk = services_.engine->Get(fs::ResourceKind::kDisk, "d1");
  ASSERT_TRUE(disk.ok());
  EXPECT_EQ(disk->size, 1ull << 30);
  RunResult usage = Ctl({"disk", "frob"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_EQ(usage.err,
            "cmkctl: unknown command 'disk frob'; run 'cmkctl help'\n");
}

TEST_F(DaemonForwardingTest, WithoutTheDaemonTheLockIsReportedAsBusy) {
  server_.reset();  // the socket is gone, the engine still holds the lock
  RunResult r = Ctl({"disk", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("cmkctl: ")) << r.err;
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cmkfs::cli::testing
