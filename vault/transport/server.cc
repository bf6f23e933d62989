// The KeyVault gRPC service: authenticates each call's client certificate,
// then runs the operation on the KeyStore as that caller.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "cmkvault.grpc.pb.h"
#include "vault/transport/convert.h"
#include "vault/transport/library_ref.h"
#include "vault/transport/peer_checked_socket.h"
#include "vault/transport/transport.h"

namespace cmkfs::vault {
namespace {

namespace pb = ::cmkvault::v1;
using convert::FromPb;
using convert::ToPb;
using grpc::ServerContext;
using keystore::KeyId;

grpc::Status ToGrpc(ServerContext* ctx, const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  ctx->AddTrailingMetadata(convert::kKindKey,
                           std::string(ErrorKindName(s.kind())));
  return grpc::Status(convert::CodeOf(s.kind()), s.message());
}

class KeyVaultService final : public pb::KeyVault::Service {
 public:
  KeyVaultService(keystore::KeyStore* store, Authenticator auth,
                  IdentityMinter mint, std::chrono::milliseconds watch_interval)
      : store_(store),
        auth_(std::move(auth)),
        mint_(std::move(mint)),
        watch_interval_(watch_interval) {}

  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }

  // The keystore caller of a call: "" (the vault admin identity) for the
  // service admin, else the certificate's object id.
  Result<Caller> Authenticate(ServerContext* ctx) {
    std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
    std::vector<grpc::string_ref> certs =
        auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME)
             : std::vector<grpc::string_ref>{};
    if (certs.empty()) {
      return PermissionDeniedError(
          "no client certificate: cmkvault accepts only callers with a "
          "certificate issued by its CA (cmkvault identity issue)");
    }
    return auth_(std::string_view(certs[0].data(), certs[0].size()));
  }

  // Whether a storage host identity may make the call: minting DES
  // identities, watching key changes and reading vault settings (region,
  // purge protection, access policies), which the host checks before it
  // uses a DES. No key, policy change or audit access, whatever a policy
  // grants its object id.
  enum class HostUse { kRefused, kAllowed };

  static Status RefuseHost(const Caller& c, HostUse use) {
    if (!c.host || use == HostUse::kAllowed) return Status::Ok();
    return PermissionDeniedError(
        "identity " + c.object_id +
        " is a storage host identity; it may only mint DES identities, read "
        "vault settings and watch key changes");
  }

  template <typename Fn>
  grpc::Status Call(ServerContext* ctx, Fn&& fn,
                    HostUse host_use = HostUse::kRefused) {
    Result<Caller> caller = Authenticate(ctx);
    if (!caller.ok()) return ToGrpc(ctx, caller.status());
    if (Status s = RefuseHost(*caller, host_use); !s.ok()) {
      return ToGrpc(ctx, s);
    }
    const std::string who = caller->admin ? std::string() : caller->object_id;
    // Every audit entry of this call names the certificate behind it.
    keystore::ScopedAuditCaller audit_caller(caller->object_id,
                                             caller->fingerprint);
    return ToGrpc(ctx, fn(*caller, who));
  }

  // Call, for an operation that may change a vault, policy, key or version:
  // after it succeeds, every WatchKeys stream looks at the change counter at
  // once instead of at its next interval.
  template <typename Fn>
  grpc::Status CallChanging(ServerContext* ctx, Fn&& fn) {
    grpc::Status st = Call(ctx, std::forward<Fn>(fn));
    if (st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++changes_;
      cv_.notify_all();
    }
    return st;
  }

  static Status AdminOnly(const Caller& c, std::string_view what) {
    if (c.admin) return Status::Ok();
    return PermissionDeniedError(
        "identity " + c.object_id + " is not an admin of this vault service; " +
        std::string(what) + " needs an admin credential");
  }

  grpc::Status CreateVault(ServerContext* ctx, const pb::VaultSpec* req,
                           pb::Vault* resp) override {
    return CallChanging(
        ctx, [&](const Caller& c, const std::string&) -> Status {
          CMKFS_RETURN_IF_ERROR(AdminOnly(c, "creating a vault"));
          CMKFS_ASSIGN_OR_RETURN(auto spec, FromPb(*req));
          CMKFS_ASSIGN_OR_RETURN(auto v, store_->CreateVault(spec));
          *resp = ToPb(v);
          return Status::Ok();
        });
  }
  grpc::Status GetVault(ServerContext* ctx, const pb::VaultName* req,
                        pb::Vault* resp) override {
    return Call(
        ctx,
        [&](const Caller&, const std::string&) -> Status {
          CMKFS_ASSIGN_OR_RETURN(auto v, store_->GetVault(req->vault()));
          *resp = ToPb(v);
          return Status::Ok();
        },
        HostUse::kAllowed);
  }
  grpc::Status ListVaults(ServerContext* ctx, const pb::Empty*,
                          pb::VaultList* resp) override {
    return Call(
        ctx,
        [&](const Caller&, const std::string&) -> Status {
          CMKFS_ASSIGN_OR_RETURN(auto vs, store_->ListVaults());
          for (const auto& v : vs) *resp->add_vaults() = ToPb(v);
          return Status::Ok();
        },
        HostUse::kAllowed);
  }
  grpc::Status SetAccessPolicy(ServerContext* ctx,
                               const pb::SetAccessPolicyRequest* req,
                               pb::Empty*) override {
    return CallChanging(
        ctx, [&](const Caller&, const std::string& who) -> Status {
          CMKFS_ASSIGN_OR_RETURN(
              auto perms,
              keystore::ParsePermissions(std::vector<std::string>(
                  req->permissions().begin(), req->permissions().end())));
          return store_->SetAccessPolicy(who, req->vault(), req->object_id(),
                                         perms);
        });
  }
  grpc::Status DeleteAccessPolicy(ServerContext* ctx,
                                  const pb::DeleteAccessPolicyRequest* req,
                                  pb::Empty*) override {
    return CallChanging(ctx,
                        [&](const Caller&, const std::string& who) -> Status {
                          return store_->DeleteAccessPolicy(who, req->vault(),
                                                            req->object_id());
                        });
  }
  grpc::Status CreateKey(ServerContext* ctx, const pb::CreateKeyRequest* req,
                         pb::KeyVersion* resp) override {
    return CallChanging(
        ctx, [&](const Caller&, const std::string& who) -> Status {
          CMKFS_ASSIGN_OR_RETURN(auto kty, keystore::ParseKeyType(req->kty()));
          CMKFS_ASSIGN_OR_RETURN(
              auto v, store_->CreateKey(who, req->vault(), req->name(), kty,
                                        req->bits()));
          *resp = ToPb(v);
          return Status::Ok();
        });
  }
  grpc::Status ImportKey(ServerContext* ctx, const pb::ImportKeyRequest* req,
                         pb::KeyVersion* resp) override {
    return CallChanging(
        ctx, [&](const Caller&, const std::string& who) -> Status {
          CMKFS_ASSIGN_OR_RETURN(auto kty, keystore::ParseKeyType(req->kty()));
          CMKFS_ASSIGN_OR_RETURN(
              auto v, store_->ImportKey(who, req->vault(), req->name(),
                                        req->pem(), kty));
          *resp = ToPb(v);
          return Status::Ok();
        });
  }
  grpc::Status GetKey(ServerContext* ctx, const pb::KeyName* req,
                      pb::Key* resp) override {
    return Call(ctx, [&](const Caller&, const std::string& who) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto k,
                             store_->GetKey(who, req->vault(), req->name()));
      *resp = ToPb(k);
      return Status::Ok();
    });
  }
  grpc::Status GetKeyVersion(ServerContext* ctx, const pb::KeyIdRequest* req,
                             pb::KeyVersion* resp) override {
    return Call(ctx, [&](const Caller&, const std::string& who) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto id, KeyId::Parse(req->kid()));
      CMKFS_ASSIGN_OR_RETURN(auto v, store_->GetKeyVersion(who, id));
      *resp = ToPb(v);
      return Status::Ok();
    });
  }
  grpc::Status ListKeys(ServerContext* ctx, const pb::VaultName* req,
                        pb::KeyList* resp) override {
    return Call(ctx, [&](const Caller&, const std::string& who) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto ks, store_->ListKeys(who, req->vault()));
      for (const auto& k : ks) *resp->add_keys() = ToPb(k);
      return Status::Ok();
    });
  }
  grpc::Status UpdateKey(ServerContext* ctx, const pb::UpdateKeyRequest* req,
                         pb::KeyVersion* resp) override {
    return CallChanging(
        ctx, [&](const Caller&, const std::string& who) -> Status {
          CMKFS_ASSIGN_OR_RETURN(auto id, KeyId::Parse(req->kid()));
          keystore::AttributeUpdate u;
          if (req->has_enabled()) u.enabled = req->enabled();
          if (req->set_expires()) {
            u.expires = req->has_expires()
                            ? std::optional<TimePoint>(
                                  convert::FromSeconds(req->expires()))
                            : std::nullopt;
          }
          if (req->set_not_before()) {
            u.not_before = req->has_not_before()
                               ? std::optional<TimePoint>(
                                     convert::FromSeconds(req->not_before()))
                               : std::nullopt;
          }
          CMKFS_ASSIGN_OR_RETURN(auto v,
                                 store_->UpdateKeyAttributes(who, id, u));
          *resp = ToPb(v);
          return Status::Ok();
        });
  }
  grpc::Status DeleteKey(ServerContext* ctx, const pb::KeyName* req,
                         pb::Empty*) override {
    return CallChanging(ctx, [&](const Caller&, const std::string& who) {
      return store_->DeleteKey(who, req->vault(), req->name());
    });
  }
  grpc::Status RecoverDeletedKey(ServerContext* ctx, const pb::KeyName* req,
                                 pb::Empty*) override {
    return CallChanging(ctx, [&](const Caller&, const std::string& who) {
      return store_->RecoverKey(who, req->vault(), req->name());
    });
  }
  grpc::Status PurgeDeletedKey(ServerContext* ctx, const pb::KeyName* req,
                               pb::Empty*) override {
    return CallChanging(ctx, [&](const Caller&, const std::string& who) {
      return store_->PurgeKey(who, req->vault(), req->name());
    });
  }
  grpc::Status RotateKey(ServerContext* ctx, const pb::KeyName* req,
                         pb::KeyVersion* resp) override {
    return CallChanging(
        ctx, [&](const Caller&, const std::string& who) -> Status {
          CMKFS_ASSIGN_OR_RETURN(
              auto v, store_->RotateKey(who, req->vault(), req->name()));
          *resp = ToPb(v);
          return Status::Ok();
        });
  }
  grpc::Status UpdateKeyRotationPolicy(ServerContext* ctx,
                                       const pb::SetRotationPolicyRequest* req,
                                       pb::Empty*) override {
    return CallChanging(ctx, [&](const Caller&, const std::string& who) {
      return store_->SetRotationPolicy(who, req->vault(), req->name(),
                                       FromPb(req->policy()));
    });
  }
  grpc::Status ApplyRotationPolicies(ServerContext* ctx, const pb::Empty*,
                                     pb::KidList* resp) override {
    return CallChanging(
        ctx, [&](const Caller& c, const std::string&) -> Status {
          CMKFS_RETURN_IF_ERROR(AdminOnly(c, "applying rotation policies"));
          CMKFS_ASSIGN_OR_RETURN(auto ids, store_->ApplyRotationPolicies());
          for (const auto& id : ids) resp->add_kids(id.ToString());
          return Status::Ok();
        });
  }
  grpc::Status WrapKey(ServerContext* ctx, const pb::KeyOperationRequest* req,
                       pb::KeyOperationResult* resp) override {
    return Call(ctx, [&](const Caller&, const std::string& who) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto id, KeyId::Parse(req->kid()));
      CMKFS_ASSIGN_OR_RETURN(
          auto blob,
          store_->WrapKey(who, id, convert::Bytes(req->value()),
                          convert::Bytes(req->label()), FromPb(req->alg())));
      resp->set_value(blob.data(), blob.size());
      return Status::Ok();
    });
  }
  grpc::Status UnwrapKey(ServerContext* ctx, const pb::KeyOperationRequest* req,
                         pb::KeyOperationResult* resp) override {
    return Call(ctx, [&](const Caller&, const std::string& who) -> Status {
      CMKFS_ASSIGN_OR_RETURN(auto id, KeyId::Parse(req->kid()));
      CMKFS_ASSIGN_OR_RETURN(
          auto key,
          store_->UnwrapKey(who, id, convert::Bytes(req->value()),
                            convert::Bytes(req->label()), FromPb(req->alg())));
      // The DEK leaves the service only inside this TLS response.
      resp->set_value(key.data(), key.size());
      return Status::Ok();
    });
  }
  grpc::Status GetAuditEvents(ServerContext* ctx, const pb::AuditQuery* req,
                              pb::AuditList* resp) override {
    return Call(ctx, [&](const Caller&, const std::string&) -> Status {
      keystore::AuditFilter f;
      if (req->has_key_name()) f.key_name = req->key_name();
      if (req->has_since()) f.since = convert::FromSeconds(req->since());
      CMKFS_ASSIGN_OR_RETURN(auto es, store_->ReadAudit(req->vault(), f));
      for (const auto& e : es) *resp->add_events() = ToPb(e);
      return Status::Ok();
    });
  }
  grpc::Status AppendAuditEvent(ServerContext* ctx,
                                const pb::AppendAuditRequest* req,
                                pb::Empty*) override {
    return Call(ctx, [&](const Caller& c, const std::string&) {
      keystore::AuditEntry e = FromPb(req->event());
      e.identity = c.object_id;  // the caller, never what it claims
      return store_->AppendAudit(req->vault(), e);
    });
  }
  grpc::Status GetChangeCounter(ServerContext* ctx, const pb::Empty*,
                                pb::ChangeCounter* resp) override {
    return Call(
        ctx,
        [&](const Caller&, const std::string&) -> Status {
          CMKFS_ASSIGN_OR_RETURN(auto n, store_->ChangeCounter());
          resp->set_counter(n);
          return Status::Ok();
        },
        HostUse::kAllowed);
  }
  grpc::Status CheckUsable(ServerContext* ctx,
                           const pb::CheckUsableRequest* req,
                           pb::CheckUsableResponse* resp) override {
    return Call(
        ctx,
        [&](const Caller&, const std::string&) -> Status {
          std::vector<keystore::UsabilityQuery> qs;
          std::vector<Status> parse(static_cast<size_t>(req->queries_size()));
          for (int i = 0; i < req->queries_size(); ++i) {
            keystore::UsabilityQuery q;
            q.identity = req->queries(i).identity();
            auto id = KeyId::Parse(req->queries(i).kid());
            if (id.ok())
              q.key_id = *id;
            else
              parse[static_cast<size_t>(i)] = id.status();
            qs.push_back(std::move(q));
          }
          std::vector<Status> verdicts = store_->CheckUsable(qs);
          for (size_t i = 0; i < verdicts.size(); ++i) {
            const Status& v = parse[i].ok() ? verdicts[i] : parse[i];
            pb::Verdict* out = resp->add_verdicts();
            out->set_kind(std::string(ErrorKindName(v.kind())));
            out->set_message(v.message());
          }
          return Status::Ok();
        },
        HostUse::kAllowed);
  }
  grpc::Status CreateManagedIdentity(
      ServerContext* ctx, const pb::CreateManagedIdentityRequest* req,
      pb::ManagedIdentity* resp) override {
    return Call(
        ctx,
        [&](const Caller& c, const std::string&) -> Status {
          if (!c.host && !c.admin) {
            return PermissionDeniedError(
                "identity " + c.object_id +
                " is not a storage host identity; minting a DES identity "
                "needs a host credential (cmkvault identity issue NAME "
                "--host)");
          }
          if (!mint_) {
            return FailedPreconditionError(
                "this vault service does not mint identities");
          }
          CMKFS_ASSIGN_OR_RETURN(MintedIdentity m,
                                 mint_(c, req->name(), req->public_key_pem()));
          resp->set_object_id(m.object_id);
          resp->set_certificate_pem(m.cert_pem);
          return Status::Ok();
        },
        HostUse::kAllowed);
  }
  grpc::Status WatchKeys(
      ServerContext* ctx, const pb::WatchKeysRequest*,
      grpc::ServerWriter<pb::KeyChangeEvent>* writer) override {
    Result<Caller> caller = Authenticate(ctx);
    if (!caller.ok()) return ToGrpc(ctx, caller.status());
    std::optional<uint64_t> last;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_ && !ctx->IsCancelled()) {
      const uint64_t seen = changes_;
      lock.unlock();
      Result<uint64_t> n = store_->ChangeCounter();
      if (!n.ok()) return ToGrpc(ctx, n.status());
      if (!last || *last != *n) {
        last = *n;
        pb::KeyChangeEvent ev;
        ev.set_counter(*n);
        if (!writer->Write(ev)) return grpc::Status::OK;
      }
      lock.lock();
      cv_.wait_for(lock, watch_interval_,
                   [&] { return stopping_ || changes_ != seen; });
    }
    return grpc::Status::OK;
  }

 private:
  keystore::KeyStore* store_;
  Authenticator auth_;
  IdentityMinter mint_;
  std::chrono::milliseconds watch_interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t changes_ = 0;  // changing calls served, for WatchKeys
};

class GrpcServer final : public Server {
 public:
  GrpcServer(std::unique_ptr<KeyVaultService> service, int port)
      : service_(std::move(service)), port_(port) {}
  ~GrpcServer() override { Shutdown(std::chrono::milliseconds(500)); }

  void Start(std::unique_ptr<grpc::Server> server,
             std::vector<std::unique_ptr<PeerCheckedSocket>> fronts) {
    server_ = std::move(server);
    fronts_ = std::move(fronts);
  }
  int port() const override { return port_; }
  void Shutdown(std::chrono::milliseconds grace) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!server_) return;
    service_->Stop();
    fronts_.clear();  // no new local connection reaches gRPC
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
    server_.reset();
  }

 private:
  const GrpcLibraryRef library_;
  std::unique_ptr<KeyVaultService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<PeerCheckedSocket>> fronts_;
  int port_ = 0;
  std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<Server>> StartServer(keystore::KeyStore* store,
                                            ServerOptions options) {
  CMKFS_RETURN_IF_ERROR(crypto::RequireTls13ForThisProcess());
  if (options.listen.empty()) {
    return InvalidArgumentError(
        "cmkvault needs an address to listen on: host:port or unix:/path");
  }
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = options.ca_cert_pem;
  ssl.pem_key_cert_pairs.push_back(
      {std::string(reinterpret_cast<const char*>(options.server_key_pem.data()),
                   options.server_key_pem.size()),
       options.server_cert_pem});
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::SslServerCredentials(ssl);

  auto service = std::make_unique<KeyVaultService>(
      store, std::move(options.authenticate), std::move(options.mint_identity),
      options.watch_interval);
  grpc::ServerBuilder builder;
  std::vector<int> ports(options.listen.size(), 0);
  // With unix_peers, gRPC listens on PATH.inner and a PeerCheckedSocket on
  // PATH, started once gRPC is up.
  std::vector<std::pair<std::string, std::string>> fronted;
  for (size_t i = 0; i < options.listen.size(); ++i) {
    std::string address = options.listen[i];
    if (address.starts_with("unix:") && !options.unix_peers.empty()) {
      const std::string path = address.substr(5);
      fronted.emplace_back(path, path + ".inner");
      address = "unix:" + path + ".inner";
    }
    builder.AddListeningPort(address, creds, &ports[i]);
  }
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    return IOError("cmkvault cannot listen on " + options.listen[0] +
                   (options.listen.size() > 1 ? " (or another address)" : "") +
                   ": address in use, not permitted, or not host:port / "
                   "unix:/path");
  }
  int tcp_port = 0;
  for (size_t i = 0; i < options.listen.size(); ++i) {
    const bool unix_socket = options.listen[i].starts_with("unix:");
    if (ports[i] == 0 && !unix_socket) {
      server->Shutdown();
      return IOError("cmkvault cannot listen on " + options.listen[i]);
    }
    if (!unix_socket && tcp_port == 0) {
      tcp_port = ports[i];
    }
  }
  std::vector<std::unique_ptr<PeerCheckedSocket>> fronts;
  for (const auto& [path, inner] : fronted) {
    auto front = PeerCheckedSocket::Start(path, inner, options.unix_peers);
    if (!front.ok()) {
      server->Shutdown();
      return front.status();
    }
    fronts.push_back(std::move(*front));
  }
  auto out = std::make_unique<GrpcServer>(std::move(service), tcp_port);
  out->Start(std::move(server), std::move(fronts));
  return std::unique_ptr<Server>(std::move(out));
}

}  // namespace cmkfs::vault
