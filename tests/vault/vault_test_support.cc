#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "cmkfs/x509.h"
#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

std::string ReadAll(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Process::Process(const std::string& binary, std::vector<std::string> args) {
  int out[2], err[2];
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> argv;
    std::string bin = binary;
    argv.push_back(bin.data());
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  out_ = out[0];
  err_ = err[0];
}

Process::~Process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(5));
  }
  ::close(out_);
  ::close(err_);
}

std::string Process::ReadUntil(std::string_view want,
                               std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (stdout_.find(want) == std::string::npos &&
         std::chrono::steady_clock::now() < end) {
    stdout_ += ReadAll(out_, std::chrono::milliseconds(100));
  }
  return stdout_;
}

int Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return rc_;  // reaped already
  const auto end = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      rc_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return rc_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

Ran Process::Finish(std::chrono::milliseconds timeout) {
  Ran r;
  r.out = stdout_ + ReadAll(out_, timeout);
  r.err = ReadAll(err_, std::chrono::milliseconds(500));
  r.rc = Wait(timeout);
  return r;
}

void Process::Signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::unique_ptr<Process> StartCmkvaultServe(
    const std::string& binary, const std::filesystem::path& state_dir,
    const std::string& endpoint) {
  auto p = std::make_unique<Process>(
      binary, std::vector<std::string>{"--state-dir", state_dir.string(),
                                       "serve", "--listen", endpoint});
  const std::string want = "listening on " + endpoint;
  std::string out = p->ReadUntil(want, std::chrono::seconds(30));
  if (out.find(want) == std::string::npos) {
    ADD_FAILURE() << "cmkvault serve did not listen on " << endpoint << ": "
                  << out;
    return nullptr;
  }
  return p;
}

TestVaultService::TestVaultService(std::vector<uid_t> unix_peers)
    : dir_(tmp_.path() / "cmkvault"), admin_bundle_(tmp_.path() / "admin.pem") {
  std::filesystem::create_directories(credentials_dir());
  std::filesystem::permissions(credentials_dir(),
                               std::filesystem::perms::owner_all);
  IssueRequest admin;
  admin.name = "vault owner";
  admin.role = Role::kAdmin;
  admin.out = admin_bundle_;
  auto id = ServiceState::Init(dir_, {}, admin);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  auto state = ServiceState::Open(dir_);
  EXPECT_TRUE(state.ok()) << state.status().ToString();
  if (!state.ok()) return;
  state_ = std::move(*state);
  auto store = keystore::OpenKeyStore(state_->KeystoreOptions());
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return;
  store_ = std::move(*store);
  ServerOptions so;
  so.listen = {"127.0.0.1:0", "unix:" + (tmp_.path() / "sock").string()};
  so.ca_cert_pem = state_->ca_cert_pem();
  so.server_cert_pem = state_->server_cert_pem();
  so.server_key_pem = state_->server_key_pem().Clone();
  so.unix_peers = std::move(unix_peers);
  IdentityTable* table = &state_->identities();
  so.authenticate = [table](std::string_view pem) {
    return table->Authenticate(pem);
  };
  ServiceState* minter = state_.get();
  so.mint_identity = [minter](const Caller& host, std::string_view name,
                              std::string_view public_key_pem) {
    return minter->Mint(host, name, public_key_pem);
  };
  auto server = StartServer(store_.get(), std::move(so));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  if (server.ok()) server_ = std::move(*server);
}

TestVaultService::~TestVaultService() {
  if (server_) server_->Shutdown(std::chrono::milliseconds(200));
}

std::string TestVaultService::tcp_endpoint() const {
  return "127.0.0.1:" + std::to_string(server_ ? server_->port() : 0);
}

std::string TestVaultService::unix_endpoint() const {
  return "unix:" + (tmp_.path() / "sock").string();
}

Identity TestVaultService::Issue(const std::string& name, Role role,
                                 int64_t not_before, int64_t not_after) {
  IssueRequest r;
  r.name = name;
  r.role = role;
  r.not_before = not_before;
  r.not_after = not_after;
  auto oid = NewObjectId();
  // The bundle is written under a temporary name, then named after the id.
  r.out = credentials_dir() / ("new-" + (oid.ok() ? *oid : name) + ".pem");
  auto id = state_->Issue(r);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  if (!id.ok()) return {};
  std::filesystem::rename(r.out, BundleOf(id->object_id));
  return *id;
}

std::unique_ptr<keystore::KeyStore> TestVaultService::Connect(
    const std::filesystem::path& bundle, bool unix_socket) {
  ClientOptions o;
  o.endpoint = unix_socket ? unix_endpoint() : tcp_endpoint();
  o.credential = bundle.empty() ? admin_bundle_ : bundle;
  o.credentials_dir = credentials_dir();
  auto store = ConnectKeyStore(o);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(*store) : nullptr;
}

Result<std::unique_ptr<keystore::KeyStore>> TestVaultService::TryConnect(
    const std::string& endpoint, const std::filesystem::path& bundle) {
  ClientOptions o;
  o.endpoint = endpoint;
  o.credential = bundle;
  o.deadline = std::chrono::seconds(3);
  o.attempts = 1;
  return ConnectKeyStore(o);
}

void WriteForeignBundle(const std::filesystem::path& out,
                        const std::string& object_id,
                        const crypto::SecretBytes& issuer_key,
                        const std::string& issuer_cert,
                        const std::string& ca_pem) {
  crypto::x509::CertificateRequest r;
  r.common_name = "forged";
  r.uri_sans = {std::string(kIdentityUriPrefix) + object_id};
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  r.not_before = now - 60;
  r.not_after = now + 3600;
  auto cert = crypto::x509::Issue(r, issuer_key, issuer_cert);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0) << out;
  std::string all =
      cert->cert_pem +
      std::string(reinterpret_cast<const char*>(cert->key_pem.data()),
                  cert->key_pem.size()) +
      ca_pem;
  ASSERT_EQ(::write(fd, all.data(), all.size()),
            static_cast<ssize_t>(all.size()));
  ::close(fd);
}

}  // namespace cmkfs::vault::testing
