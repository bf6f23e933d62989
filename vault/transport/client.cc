// A KeyStore over gRPC: every method is one call to cmkvault, made with the
// credential bundle of the caller it names.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "cmkfs/file_trust.h"
#include "cmkfs/mutex.h"
#include "cmkfs/path_guard.h"
#include "cmkfs/thread_annotations.h"
#include "cmkfs/x509.h"
#include "cmkvault.grpc.pb.h"
#include "vault/transport/convert.h"
#include "vault/transport/library_ref.h"
#include "vault/transport/transport.h"

namespace cmkfs::vault {
namespace {

namespace pb = ::cmkvault::v1;
using convert::FromPb;
using convert::ToPb;
using keystore::KeyId;

constexpr size_t kMaxBundleBytes = 64 * 1024;

// One gRPC channel of a credential. A channel that failed to connect backs
// off by itself, for seconds once the service has been away a while; a new
// one connects at once, so a call that finds the service unavailable renews
// it (Credential::Renew) instead of waiting for that backoff.
struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KeyVault::Stub> stub;
};

struct Credential {
  std::filesystem::path path;
  std::string identity;
  std::string ca_pem;  // the service's CA, as the bundle holds it
  std::string endpoint;
  std::shared_ptr<grpc::ChannelCredentials> tls;
  grpc::ChannelArguments args;

  std::shared_ptr<Connection> Current() EXCLUDES(mu) {
    MutexLock lock(&mu);
    return conn;
  }
  // Replaces `seen` with a new channel, unless another call already did.
  void Renew(const std::shared_ptr<Connection>& seen) EXCLUDES(mu) {
    MutexLock lock(&mu);
    if (conn == seen) conn = Connect();
  }
  std::shared_ptr<Connection> Connect() const {
    auto c = std::make_shared<Connection>();
    c->channel = grpc::CreateCustomChannel(endpoint, tls, args);
    c->stub = pb::KeyVault::NewStub(c->channel);
    return c;
  }

  Mutex mu;
  std::shared_ptr<Connection> conn GUARDED_BY(mu);
};

std::string Text(const crypto::SecretBytes& s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

struct Bundle {
  std::string cert_pem;
  std::string ca_pem;
  crypto::SecretBytes key_pem;
  std::string identity;
};

Result<Bundle> ReadBundle(const std::filesystem::path& path) {
  CMKFS_ASSIGN_OR_RETURN(
      auto resolved,
      CheckTrustedFile(path, "vault credential", FileSecrecy::kPrivate));
  CMKFS_ASSIGN_OR_RETURN(
      auto text,
      ReadFileToSecret(resolved, "vault credential", kMaxBundleBytes));
  std::string_view view(reinterpret_cast<const char*>(text.data()),
                        text.size());
  std::vector<std::string> certs = crypto::x509::CertificateBlocks(view);
  if (certs.size() < 2) {
    return InvalidArgumentError(
        "vault credential " + path.string() + " holds " +
        std::to_string(certs.size()) +
        " certificate(s); a credential bundle holds the identity's "
        "certificate, its private key and the service's CA certificate");
  }
  Bundle b;
  b.cert_pem = certs.front();
  b.ca_pem = certs.back();
  CMKFS_ASSIGN_OR_RETURN(
      b.key_pem,
      crypto::x509::PrivateKeyBlock(text, "vault credential " + path.string()));
  CMKFS_ASSIGN_OR_RETURN(auto info, crypto::x509::Inspect(b.cert_pem));
  for (const std::string& uri : info.uri_sans) {
    if (uri.starts_with(kIdentityUriPrefix)) {
      b.identity = uri.substr(kIdentityUriPrefix.size());
    }
  }
  if (b.identity.empty()) {
    return InvalidArgumentError("vault credential " + path.string() +
                                ": its certificate names no identity (URI "
                                "SAN cmkvault:identity:<object-id>)");
  }
  return b;
}

// The client end of WatchKeys: one thread that keeps a stream open with the
// default credential, reports each event, and re-opens it with backoff
// (first_backoff doubling to 1 s) whenever it breaks.
class WatchStream final : public keystore::ChangeSubscription {
 public:
  using Describe = std::function<Status(const grpc::Status&)>;
  WatchStream(std::shared_ptr<Credential> cred,
              keystore::ChangeSubscriber subscriber, Describe describe,
              std::chrono::milliseconds first_backoff)
      : cred_(std::move(cred)),
        subscriber_(std::move(subscriber)),
        describe_(std::move(describe)),
        first_backoff_(first_backoff) {
    thread_ = std::thread([this] { Run(); });
  }
  ~WatchStream() override {
    {
      MutexLock lock(&mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    cv_.SignalAll();
    thread_.join();
  }

 private:
  void Run() EXCLUDES(mu_) {
    std::chrono::milliseconds backoff = first_backoff_;
    while (true) {
      grpc::ClientContext ctx;
      {
        MutexLock lock(&mu_);
        if (stop_) return;
        ctx_ = &ctx;
      }
      const std::shared_ptr<Connection> conn = cred_->Current();
      std::unique_ptr<grpc::ClientReader<pb::KeyChangeEvent>> reader =
          conn->stub->WatchKeys(&ctx, pb::WatchKeysRequest());
      pb::KeyChangeEvent ev;
      while (reader->Read(&ev)) {
        backoff = first_backoff_;
        if (subscriber_.on_change) subscriber_.on_change(ev.counter());
      }
      const grpc::Status st = reader->Finish();
      {
        MutexLock lock(&mu_);
        ctx_ = nullptr;
        if (stop_) return;
      }
      if (subscriber_.on_lost) {
        const auto& trailers = ctx.GetServerTrailingMetadata();
        auto kind = trailers.find(convert::kKindKey);
        subscriber_.on_lost(
            kind != trailers.end()
                ? Status(convert::KindOf(std::string_view(kind->second.data(),
                                                          kind->second.size())),
                         st.error_message())
                : describe_(st));
      }
      {
        MutexLock lock(&mu_);
        const auto until = std::chrono::steady_clock::now() + backoff;
        while (!stop_ && cv_.WaitUntil(&mu_, until)) {
        }
        if (stop_) return;
      }
      if (st.error_code() == grpc::StatusCode::UNAVAILABLE) cred_->Renew(conn);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2,
                                                    std::chrono::seconds(1));
    }
  }

  const GrpcLibraryRef library_;
  const std::shared_ptr<Credential> cred_;
  const keystore::ChangeSubscriber subscriber_;
  const Describe describe_;
  const std::chrono::milliseconds first_backoff_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  // The stream open now, if any (cancelled by the destructor).
  grpc::ClientContext* ctx_ GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

class RemoteKeyStore final : public keystore::KeyStore {
 public:
  explicit RemoteKeyStore(ClientOptions o) : opts_(std::move(o)) {}

  Status Init() {
    CMKFS_ASSIGN_OR_RETURN(default_, Load(opts_.credential));
    return Status::Ok();
  }

  // MintManagedIdentity (transport.h).
  Result<std::string> MintManagedIdentity(std::string_view name) {
    if (opts_.credentials_dir.empty()) {
      return FailedPreconditionError(
          "minting a DES identity needs a directory for its credential: set "
          "[keystore] credentials_dir");
    }
    CMKFS_RETURN_IF_ERROR(path_guard::MakePrivateDir(opts_.credentials_dir));
    CMKFS_ASSIGN_OR_RETURN(crypto::x509::KeyPair pair,
                           crypto::x509::NewKeyPair());
    pb::CreateManagedIdentityRequest req;
    req.set_name(std::string(name));
    req.set_public_key_pem(pair.public_key_pem);
    pb::ManagedIdentity resp;
    CMKFS_RETURN_IF_ERROR(Invoke("", &Stub::CreateManagedIdentity, req, &resp));
    CMKFS_RETURN_IF_ERROR(
        keystore::CheckObjectId(resp.object_id(), "minted object id"));
    const std::filesystem::path out =
        opts_.credentials_dir / (resp.object_id() + ".pem");
    CMKFS_RETURN_IF_ERROR(path_guard::WriteNewPrivateFile(
        out, {convert::Bytes(resp.certificate_pem()),
              pair.private_key_pem.span(), convert::Bytes(default_->ca_pem)}));
    return resp.object_id();
  }

  Result<keystore::VaultInfo> CreateVault(
      const keystore::VaultSpec& spec) override {
    pb::Vault resp;
    CMKFS_RETURN_IF_ERROR(Invoke("", &Stub::CreateVault, ToPb(spec), &resp));
    return FromPb(resp);
  }
  Result<keystore::VaultInfo> GetVault(std::string_view vault) override {
    pb::VaultName req;
    req.set_vault(std::string(vault));
    pb::Vault resp;
    CMKFS_RETURN_IF_ERROR(Invoke("", &Stub::GetVault, req, &resp));
    return FromPb(resp);
  }
  Result<std::vector<keystore::VaultInfo>> ListVaults() override {
    pb::VaultList resp;
    CMKFS_RETURN_IF_ERROR(Invoke("", &Stub::ListVaults, pb::Empty(), &resp));
    std::vector<keystore::VaultInfo> out;
    for (const auto& v : resp.vaults()) {
      CMKFS_ASSIGN_OR_RETURN(auto info, FromPb(v));
      out.push_back(std::move(info));
    }
    return out;
  }
  Status SetAccessPolicy(std::string_view caller, std::string_view vault,
                         std::string_view object_id,
                         keystore::PermissionSet permissions) override {
    pb::SetAccessPolicyRequest req;
    req.set_vault(std::string(vault));
    req.set_object_id(std::string(object_id));
    for (auto& n : keystore::PermissionNames(permissions)) {
      req.add_permissions(n);
    }
    pb::Empty resp;
    return Invoke(caller, &Stub::SetAccessPolicy, req, &resp);
  }
  Status DeleteAccessPolicy(std::string_view caller, std::string_view vault,
                            std::string_view object_id) override {
    pb::DeleteAccessPolicyRequest req;
    req.set_vault(std::string(vault));
    req.set_object_id(std::string(object_id));
    pb::Empty resp;
    return Invoke(caller, &Stub::DeleteAccessPolicy, req, &resp);
  }
  Result<std::vector<keystore::AuditEntry>> ReadAudit(
      std::string_view vault, const keystore::AuditFilter& f) override {
    pb::AuditQuery req;
    req.set_vault(std::string(vault));
    if (f.key_name) req.set_key_name(*f.key_name);
    if (f.since) req.set_since(convert::Seconds(*f.since));
    pb::AuditList resp;
    CMKFS_RETURN_IF_ERROR(Invoke("", &Stub::GetAuditEvents, req, &resp));
    std::vector<keystore::AuditEntry> out;
    for (const auto& e : resp.events()) out.push_back(FromPb(e));
    return out;
  }
  Status AppendAudit(std::string_view vault,
                     const keystore::AuditEntry& e) override {
    pb::AppendAuditRequest req;
    req.set_vault(std::string(vault));
    *req.mutable_event() = ToPb(e);
    pb::Empty resp;
    // Recorded under the identity the entry names when we hold its
    // credential, else under the default credential.
    // (Both arms string_view: `? e.identity : ""` made a temporary
    // std::string and left `as` dangling; clang's -Wdangling-gsl found it.)
    const std::string_view as = HasCredential(e.identity)
                                    ? std::string_view(e.identity)
                                    : std::string_view();
    return Invoke(as, &Stub::AppendAuditEvent, req, &resp);
  }
  Result<keystore::KeyVersionInfo> CreateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             keystore::KeyType kty,
                                             int bits) override {
    pb::CreateKeyRequest req;
    req.set_vault(std::string(vault));
    req.set_name(std::string(name));
    req.set_kty(std::string(keystore::KeyTypeName(kty)));
    req.set_bits(bits);
    return VersionCall(caller, &Stub::CreateKey, req);
  }
  Result<keystore::KeyVersionInfo> ImportKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             std::string_view pem,
                                             keystore::KeyType kty) override {
    pb::ImportKeyRequest req;
    req.set_vault(std::string(vault));
    req.set_name(std::string(name));
    req.set_kty(std::string(keystore::KeyTypeName(kty)));
    req.set_pem(std::string(pem));
    Result<keystore::KeyVersionInfo> out =
        VersionCall(caller, &Stub::ImportKey, req);
    crypto::SecureWipe(req.mutable_pem()->data(), req.pem().size());
    return out;
  }
  Result<keystore::KeyVersionInfo> RotateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name) override {
    return VersionCall(caller, &Stub::RotateKey, KeyName(vault, name));
  }
  Result<keystore::KeyInfo> GetKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name) override {
    pb::Key resp;
    CMKFS_RETURN_IF_ERROR(
        Invoke(caller, &Stub::GetKey, KeyName(vault, name), &resp));
    return FromPb(resp);
  }
  Result<keystore::KeyVersionInfo> GetKeyVersion(std::string_view caller,
                                                 const KeyId& id) override {
    pb::KeyIdRequest req;
    req.set_kid(id.ToString());
    return VersionCall(caller, &Stub::GetKeyVersion, req);
  }
  Result<std::vector<keystore::KeyInfo>> ListKeys(
      std::string_view caller, std::string_view vault) override {
    pb::VaultName req;
    req.set_vault(std::string(vault));
    pb::KeyList resp;
    CMKFS_RETURN_IF_ERROR(Invoke(caller, &Stub::ListKeys, req, &resp));
    std::vector<keystore::KeyInfo> out;
    for (const auto& k : resp.keys()) {
      CMKFS_ASSIGN_OR_RETURN(auto info, FromPb(k));
      out.push_back(std::move(info));
    }
    return out;
  }
  Result<keystore::KeyVersionInfo> UpdateKeyAttributes(
      std::string_view caller, const KeyId& id,
      const keystore::AttributeUpdate& u) override {
    pb::UpdateKeyRequest req;
    req.set_kid(id.ToString());
    if (u.enabled) req.set_enabled(*u.enabled);
    if (u.expires) {
      req.set_set_expires(true);
      if (*u.expires) req.set_expires(convert::Seconds(**u.expires));
    }
    if (u.not_before) {
      req.set_set_not_before(true);
      if (*u.not_before) req.set_not_before(convert::Seconds(**u.not_before));
    }
    return VersionCall(caller, &Stub::UpdateKey, req);
  }
  Status DeleteKey(std::string_view caller, std::string_view vault,
                   std::string_view name) override {
    pb::Empty resp;
    return Invoke(caller, &Stub::DeleteKey, KeyName(vault, name), &resp);
  }
  Status RecoverKey(std::string_view caller, std::string_view vault,
                    std::string_view name) override {
    pb::Empty resp;
    return Invoke(caller, &Stub::RecoverDeletedKey, KeyName(vault, name),
                  &resp);
  }
  Status PurgeKey(std::string_view caller, std::string_view vault,
                  std::string_view name) override {
    pb::Empty resp;
    return Invoke(caller, &Stub::PurgeDeletedKey, KeyName(vault, name), &resp);
  }
  Status SetRotationPolicy(std::string_view caller, std::string_view vault,
                           std::string_view name,
                           const keystore::RotationPolicy& policy) override {
    pb::SetRotationPolicyRequest req;
    req.set_vault(std::string(vault));
    req.set_name(std::string(name));
    *req.mutable_policy() = ToPb(policy);
    pb::Empty resp;
    return Invoke(caller, &Stub::UpdateKeyRotationPolicy, req, &resp);
  }
  Result<std::vector<KeyId>> ApplyRotationPolicies() override {
    pb::KidList resp;
    CMKFS_RETURN_IF_ERROR(
        Invoke("", &Stub::ApplyRotationPolicies, pb::Empty(), &resp));
    std::vector<KeyId> out;
    for (const auto& k : resp.kids()) {
      CMKFS_ASSIGN_OR_RETURN(auto id, KeyId::Parse(k));
      out.push_back(std::move(id));
    }
    return out;
  }
  Result<std::vector<uint8_t>> WrapKey(std::string_view caller, const KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) override {
    pb::KeyOperationRequest req = KeyOp(id, plaintext, label, alg);
    pb::KeyOperationResult resp;
    Status s = Invoke(caller, &Stub::WrapKey, req, &resp);
    crypto::SecureWipe(req.mutable_value()->data(), req.value().size());
    CMKFS_RETURN_IF_ERROR(s);
    return std::vector<uint8_t>(resp.value().begin(), resp.value().end());
  }
  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        keystore::WrapAlgorithm alg) override {
    pb::KeyOperationResult resp;
    CMKFS_RETURN_IF_ERROR(
        Invoke(caller, &Stub::UnwrapKey, KeyOp(id, blob, label, alg), &resp));
    crypto::SecretBytes out(
        reinterpret_cast<const uint8_t*>(resp.value().data()),
        resp.value().size());
    crypto::SecureWipe(resp.mutable_value()->data(), resp.value().size());
    return out;
  }
  Result<uint64_t> ChangeCounter() override {
    pb::ChangeCounter resp;
    CMKFS_RETURN_IF_ERROR(
        Invoke("", &Stub::GetChangeCounter, pb::Empty(), &resp));
    return resp.counter();
  }
  std::vector<Status> CheckUsable(
      std::span<const keystore::UsabilityQuery> queries) override {
    pb::CheckUsableRequest req;
    for (const auto& q : queries) {
      pb::UsabilityQuery* out = req.add_queries();
      out->set_identity(q.identity);
      out->set_kid(q.key_id.ToString());
    }
    pb::CheckUsableResponse resp;
    Status s = Invoke("", &Stub::CheckUsable, req, &resp);
    if (s.ok() && resp.verdicts_size() != static_cast<int>(queries.size())) {
      s = IOError("vault service " + opts_.endpoint + " answered " +
                  std::to_string(resp.verdicts_size()) + " verdicts for " +
                  std::to_string(queries.size()) + " queries");
    }
    std::vector<Status> out;
    for (size_t i = 0; i < queries.size(); ++i) {
      if (!s.ok()) {
        out.push_back(IOError("keystore unreadable: " + s.message()));
        continue;
      }
      const pb::Verdict& v = resp.verdicts(static_cast<int>(i));
      out.push_back(v.kind() == "OK"
                        ? Status::Ok()
                        : Status(convert::KindOf(v.kind()), v.message()));
    }
    return out;
  }

  Result<std::unique_ptr<keystore::ChangeSubscription>> SubscribeChanges(
      keystore::ChangeSubscriber subscriber) override {
    std::shared_ptr<Credential> cred = default_;
    return std::unique_ptr<keystore::ChangeSubscription>(new WatchStream(
        cred, std::move(subscriber),
        [this, cred](const grpc::Status& st) {
          return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                         st.error_code() == grpc::StatusCode::CANCELLED
                     ? TransportError(*cred, st)
                     : IOError("vault service " + opts_.endpoint +
                               ": change stream: " + st.error_message());
        },
        opts_.first_backoff));
  }

 private:
  using Stub = pb::KeyVault::Stub;

  static pb::KeyName KeyName(std::string_view vault, std::string_view name) {
    pb::KeyName k;
    k.set_vault(std::string(vault));
    k.set_name(std::string(name));
    return k;
  }
  static pb::KeyOperationRequest KeyOp(const KeyId& id,
                                       std::span<const uint8_t> value,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) {
    pb::KeyOperationRequest req;
    req.set_kid(id.ToString());
    req.set_alg(ToPb(alg));
    req.set_value(value.data(), value.size());
    req.set_label(label.data(), label.size());
    return req;
  }

  template <typename Req>
  Result<keystore::KeyVersionInfo> VersionCall(
      std::string_view caller,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&,
                                   pb::KeyVersion*),
      const Req& req) {
    pb::KeyVersion resp;
    CMKFS_RETURN_IF_ERROR(Invoke(caller, method, req, &resp));
    return FromPb(resp);
  }

  Result<std::shared_ptr<Credential>> Load(const std::filesystem::path& path) {
    CMKFS_ASSIGN_OR_RETURN(Bundle b, ReadBundle(path));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = b.ca_pem;
    ssl.pem_cert_chain = b.cert_pem;
    ssl.pem_private_key = Text(b.key_pem);
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(std::string(kServerName));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also takes it as the
    // connect timeout (TLS handshake included), which must stay long.
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Its own subchannels: a renewed channel must not inherit the backoff
    // of the one it replaces from gRPC's global subchannel pool.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto cred = std::make_shared<Credential>();
    cred->path = path;
    cred->identity = b.identity;
    cred->ca_pem = b.ca_pem;
    cred->endpoint = opts_.endpoint;
    cred->tls = grpc::SslCredentials(ssl);
    cred->args = args;
    crypto::SecureWipe(ssl.pem_private_key.data(), ssl.pem_private_key.size());
    {
      MutexLock lock(&cred->mu);
      cred->conn = cred->Connect();
    }
    return cred;
  }

  bool HasCredential(std::string_view id) {
    if (id.empty()) return false;
    return For(id).ok();
  }

  Result<std::shared_ptr<Credential>> For(std::string_view caller) {
    if (caller.empty() || caller == default_->identity) return default_;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = others_.find(caller);
    if (it != others_.end()) return it->second;
    CMKFS_RETURN_IF_ERROR(keystore::CheckObjectId(caller, "caller"));
    if (opts_.credentials_dir.empty()) {
      return PermissionDeniedError(
          "no vault credential for identity " + std::string(caller) +
          ": set [keystore] credentials_dir to the directory of its "
          "<object-id>.pem bundle");
    }
    const std::filesystem::path path =
        opts_.credentials_dir / (std::string(caller) + ".pem");
    Result<std::shared_ptr<Credential>> cred = Load(path);
    if (!cred.ok()) {
      if (cred.status().kind() == ErrorKind::kNotFound) {
        return PermissionDeniedError("no vault credential for identity " +
                                     std::string(caller) + ": expected " +
                                     path.string());
      }
      return cred.status();
    }
    if ((*cred)->identity != caller) {
      return PermissionDeniedError("vault credential " + path.string() +
                                   " is for identity " + (*cred)->identity +
                                   ", not " + std::string(caller));
    }
    others_.emplace(std::string(caller), *cred);
    return *cred;
  }

  Status TransportError(const Credential& cred, const grpc::Status& st) {
    const std::string& m = st.error_message();
    const bool tls = m.find("andshake") != std::string::npos ||
                     m.find("ertificate") != std::string::npos ||
                     m.find("SSL") != std::string::npos ||
                     m.find("alert") != std::string::npos;
    if (tls) {
      return IOError("vault service " + opts_.endpoint +
                     ": TLS handshake failed (its certificate does not verify "
                     "against the CA in " +
                     cred.path.string() +
                     ", or it refused that credential's certificate): " + m);
    }
    return IOError(
        "vault service " + opts_.endpoint + " unreachable (" +
        std::string(st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                        ? "deadline exceeded"
                        : "unavailable") +
        "): " + m);
  }

  template <typename Req, typename Resp>
  Status Invoke(std::string_view caller,
                grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&,
                                             Resp*),
                const Req& req, Resp* resp) {
    CMKFS_ASSIGN_OR_RETURN(std::shared_ptr<Credential> cred, For(caller));
    std::chrono::milliseconds backoff = opts_.first_backoff;
    for (int attempt = 1;; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + opts_.deadline);
      const std::shared_ptr<Connection> conn = cred->Current();
      grpc::Status st = ((*conn->stub).*method)(&ctx, req, resp);
      if (st.ok()) return Status::Ok();
      const auto& trailers = ctx.GetServerTrailingMetadata();
      auto kind = trailers.find(convert::kKindKey);
      if (kind != trailers.end()) {
        return Status(convert::KindOf(std::string_view(kind->second.data(),
                                                       kind->second.size())),
                      st.error_message());
      }
      if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
          attempt < opts_.attempts) {
        cred->Renew(conn);
        std::this_thread::sleep_for(backoff);
        backoff *= 2;
        continue;
      }
      if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
          st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        return TransportError(*cred, st);
      }
      return IOError("vault service " + opts_.endpoint + ": " +
                     st.error_message());
    }
  }

  const GrpcLibraryRef library_;
  ClientOptions opts_;
  std::shared_ptr<Credential> default_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Credential>, std::less<>> others_;
};

}  // namespace

Result<std::string> CredentialIdentity(const std::filesystem::path& bundle) {
  CMKFS_ASSIGN_OR_RETURN(Bundle b, ReadBundle(bundle));
  return b.identity;
}

namespace {

Result<std::unique_ptr<RemoteKeyStore>> Connect(const ClientOptions& options) {
  CMKFS_RETURN_IF_ERROR(crypto::RequireTls13ForThisProcess());
  if (options.endpoint.empty()) {
    return InvalidArgumentError(
        "no vault service endpoint: set [keystore] service to host:port or "
        "unix:/path");
  }
  auto store = std::make_unique<RemoteKeyStore>(options);
  CMKFS_RETURN_IF_ERROR(store->Init());
  return store;
}

}  // namespace

Result<std::string> MintManagedIdentity(const ClientOptions& options,
                                        std::string_view name) {
  CMKFS_ASSIGN_OR_RETURN(auto store, Connect(options));
  return store->MintManagedIdentity(name);
}

Result<std::unique_ptr<keystore::KeyStore>> ConnectKeyStore(
    const ClientOptions& options) {
  CMKFS_ASSIGN_OR_RETURN(auto store, Connect(options));
  return std::unique_ptr<keystore::KeyStore>(std::move(store));
}

}  // namespace cmkfs::vault
