// The vault service's tamper-evident audit (docs/vault-api.md, "Audit"): each
// entry names the authenticated caller (object id and certificate
// fingerprint) and is a link of the vault's hash chain; `cmkctl vault audit
// --verify` names the first entry edited in the service's own files, and
// `--follow` streams entries made after it started. A real cmkvault process
// over its unix socket.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include "cmkfs/cli.h"
#include "cmkfs/file_trust.h"
#include "cmkfs/lmdb.h"
#include "cmkfs/x509.h"
#include "records.h"
#include "service_host.h"
#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

using std::chrono::milliseconds;

class AuditChainServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = tmp_.path() / "cmkvault";
    admin_ = tmp_.path() / "admin.pem";
    sock_ = tmp_.path() / "cmkvault.sock";
    Process init(CMKVAULT_PATH, {"--state-dir", state_.string(), "init",
                                 "--admin-out", admin_.string()});
    Ran r = init.Finish(std::chrono::seconds(30));
    ASSERT_EQ(r.rc, 0) << r.err;
    ASSERT_NO_FATAL_FAILURE(Serve());
    keystore::testing::MakeVault(*owner_, "customer");
    key_ = keystore::testing::ImportFixtureKey(*owner_, "customer", "k").id;
    std::vector<uint8_t> dek(32, 1);
    ASSERT_TRUE(owner_->WrapKey("", key_, dek, {}).ok());
    ASSERT_NO_FATAL_FAILURE(OpenOwnerServices());
  }
  void TearDown() override {
    services_.engine.reset();
    services_.keystore.reset();
    owner_.reset();
    serve_.reset();
  }

  void Serve() {
    serve_ =
        StartCmkvaultServe(CMKVAULT_PATH, state_, "unix:" + sock_.string());
    ASSERT_NE(serve_, nullptr);
    ClientOptions o;
    o.endpoint = "unix:" + sock_.string();
    o.credential = admin_;
    auto owner = ConnectKeyStore(o);
    ASSERT_TRUE(owner.ok()) << owner.status().ToString();
    owner_ = std::move(*owner);
  }
  void Stop() {
    services_.engine.reset();
    services_.keystore.reset();
    owner_.reset();
    serve_->Signal(SIGTERM);
    ASSERT_EQ(serve_->Wait(std::chrono::seconds(10)), 0);
    serve_.reset();
  }

  // cmkctl as the vault owner: service mode with the admin credential.
  void OpenOwnerServices() {
    const auto owner_dir = tmp_.path() / "owner";
    std::filesystem::create_directories(owner_dir);
    auto services =
        OpenServiceModeServices(owner_dir, "unix:" + sock_.string(), admin_);
    ASSERT_TRUE(services.ok()) << services.status().ToString();
    services_ = std::move(*services);
  }
  cli::CommandContext OwnerContext() {
    cli::CommandContext ctx;
    ctx.keystore = services_.keystore.get();
    ctx.engine = services_.engine.get();
    return ctx;
  }
  cli::CommandOutput Cmkctl(std::vector<std::string> args) {
    cli::CommandContext ctx = OwnerContext();
    return cli::RunCommand(args, ctx);
  }

  TempDir tmp_;
  std::filesystem::path state_, admin_, sock_;
  std::unique_ptr<Process> serve_;
  std::unique_ptr<keystore::KeyStore> owner_;
  keystore::KeyId key_;
  cli::Services services_;
};

TEST_F(AuditChainServiceTest, EntriesNameTheCertificateAndTheChainVerifies) {
  auto audit = owner_->ReadAudit("customer", {});
  ASSERT_TRUE(audit.ok()) << audit.status().ToString();
  ASSERT_GE(audit->size(), 3u);
  auto bundle = ReadFileToSecret(admin_, "bundle", 64 * 1024);
  ASSERT_TRUE(bundle.ok());
  const std::string text(reinterpret_cast<const char*>(bundle->data()),
                         bundle->size());
  auto info =
      crypto::x509::Inspect(crypto::x509::CertificateBlocks(text).front());
  ASSERT_TRUE(info.ok());
  auto admin_id = CredentialIdentity(admin_);
  ASSERT_TRUE(admin_id.ok());
  for (const auto& e : *audit) {
    EXPECT_EQ(e.caller_object_id, *admin_id) << e.operation;
    EXPECT_EQ(e.caller_fingerprint, info->fingerprint) << e.operation;
    EXPECT_GE(e.seq, 1u);
  }
  cli::CommandOutput out = Cmkctl({"vault", "audit", "customer", "--verify"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_NE(out.out.find("vault customer: audit chain verified, " +
                         std::to_string(audit->size()) + " entries"),
            std::string::npos)
      << out.out;
}

// The attack: root on the vault host edits one stored entry (here: the
// wrapKey entry's result) with the service stopped; --verify names it.
TEST_F(AuditChainServiceTest, EditingOneEntryInTheServiceFilesIsNamed) {
  auto before = owner_->ReadAudit("customer", {});
  ASSERT_TRUE(before.ok());
  uint64_t target = 0;
  for (const auto& e : *before) {
    if (e.operation == "wrapKey") target = e.seq;
  }
  ASSERT_NE(target, 0u);
  ASSERT_NO_FATAL_FAILURE(Stop());
  {
    lmdb::EnvOptions eo;
    auto env = lmdb::Env::Open(state_ / "vault", eo);
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    auto dbi = (*env)->OpenDb("audit");
    ASSERT_TRUE(dbi.ok());
    bool edited = false;
    Status s = (*env)->Update([&](lmdb::Txn& txn) -> Status {
      CMKFS_ASSIGN_OR_RETURN(lmdb::Cursor c, txn.OpenCursor(*dbi));
      CMKFS_ASSIGN_OR_RETURN(bool more, c.First());
      while (more) {
        CMKFS_ASSIGN_OR_RETURN(keystore::AuditRecord rec,
                               keystore::DecodeAudit(c.value()));
        if (rec.entry.seq == target) {
          rec.entry.result = "denied: nothing happened here";
          const std::string key(c.key());
          edited = true;
          return txn.Put(*dbi, key, keystore::EncodeAudit(rec));
        }
        CMKFS_ASSIGN_OR_RETURN(more, c.Next());
      }
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(edited);
  }
  ASSERT_NO_FATAL_FAILURE(Serve());
  ASSERT_NO_FATAL_FAILURE(OpenOwnerServices());
  cli::CommandOutput out = Cmkctl({"vault", "audit", "customer", "--verify"});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.err.find("audit entry " + std::to_string(target) + " ("),
            std::string::npos)
      << out.err;
  EXPECT_NE(out.err.find("wrapKey by "), std::string::npos) << out.err;
  EXPECT_NE(out.err.find("its hash does not match its contents"),
            std::string::npos)
      << out.err;
  EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
}

TEST_F(AuditChainServiceTest, FollowShowsAnEntryMadeAfterItStarted) {
  std::mutex mu;
  std::string streamed;
  std::atomic<bool> cancel{false};
  cli::CommandContext ctx = OwnerContext();
  ctx.cancel = &cancel;
  ctx.stream_out = [&](std::string_view text) {
    std::lock_guard<std::mutex> lock(mu);
    streamed += text;
  };
  cli::CommandOutput out;
  std::thread follower([&] {
    out = cli::RunCommand(
        {"vault", "audit", "customer", "--follow", "-o", "json"}, ctx);
  });
  auto wait_for = [&](std::string_view needle) {
    const auto end =
        std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < end) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (streamed.find(needle) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  };
  EXPECT_TRUE(wait_for("\"operation\":\"wrapKey\""));
  // Made after --follow printed what was there.
  ASSERT_TRUE(owner_
                  ->SetAccessPolicy(
                      "", "customer", "0f8fad5b-d9cb-469f-a165-70867728950e",
                      static_cast<uint32_t>(keystore::Permission::kGet))
                  .ok());
  EXPECT_TRUE(wait_for("\"operation\":\"vault.set-policy\""));
  cancel = true;
  follower.join();
  EXPECT_EQ(out.exit_code, 0) << out.err;
  std::lock_guard<std::mutex> lock(mu);
  // JSON lines: one object per line, each with the chain and the caller.
  size_t lines = 0;
  for (size_t at = 0; (at = streamed.find('\n', at)) != std::string::npos;
       ++at) {
    ++lines;
  }
  EXPECT_GE(lines, 4u) << streamed;
  EXPECT_EQ(streamed.find("vault.set-policy"),
            streamed.rfind("vault.set-policy"))
      << "an entry printed twice:\n"
      << streamed;
  EXPECT_NE(streamed.find("\"caller_fingerprint\":\""), std::string::npos);
  EXPECT_NE(streamed.find("\"hash\":\""), std::string::npos);
}

TEST_F(AuditChainServiceTest, FollowWithoutAStreamIsRefused) {
  cli::CommandOutput out = Cmkctl({"vault", "audit", "customer", "--follow"});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.err.find("--follow streams from cmkctl itself"),
            std::string::npos)
      << out.err;
}

}  // namespace
}  // namespace cmkfs::vault::testing
