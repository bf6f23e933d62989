// Attacks on cmkvault that must fail (docs/threat-model.md, "Vault service"):
// certificates it did not issue, expired or revoked ones, and identities
// doing what only the vault owner may do.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>

#include "cmkfs/x509.h"
#include "vault_test_util.h"

namespace cmkfs::vault::testing {
namespace {

using keystore::AttributeUpdate;
using keystore::KeyStore;
using keystore::Permission;
using keystore::testing::Bytes;

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class VaultAttackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    admin_ = service_.Connect();
    ASSERT_NE(admin_, nullptr);
    keystore::testing::MakeVault(*admin_, "customer");
    key_ = keystore::testing::ImportFixtureKey(*admin_, "customer", "disk-key");
    ASSERT_FALSE(key_.id.version.empty());
    auto blob = admin_->WrapKey("", key_.id, Bytes(std::string(64, 'k')), {});
    ASSERT_TRUE(blob.ok());
    blob_ = *blob;
  }

  // The call every refused client tries: list the vaults.
  static Status Probe(KeyStore& ks) { return ks.ListVaults().status(); }

  void ExpectRefused(const std::filesystem::path& bundle,
                     std::string_view why) {
    auto client = service_.TryConnect(service_.tcp_endpoint(), bundle);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    Status s = Probe(**client);
    EXPECT_FALSE(s.ok()) << why;
    EXPECT_TRUE(s.kind() == ErrorKind::kIOError ||
                s.kind() == ErrorKind::kPermissionDenied)
        << s.ToString();
    EXPECT_NE(s.message().find(service_.tcp_endpoint()), std::string::npos)
        << s.message();
    auto unwrap = (*client)->UnwrapKey("", key_.id, blob_, {});
    EXPECT_FALSE(unwrap.ok()) << why;
  }

  TestVaultService service_;
  std::unique_ptr<KeyStore> admin_;
  keystore::KeyVersionInfo key_;
  std::vector<uint8_t> blob_;
};

TEST_F(VaultAttackTest, SelfSignedClientCertificateIsRefused) {
  // It even names the admin's object id.
  auto ids = service_.state().identities().List();
  ASSERT_TRUE(ids.ok());
  ASSERT_FALSE(ids->empty());
  const auto bundle = service_.credentials_dir() / "self-signed.pem";
  WriteForeignBundle(bundle, (*ids)[0].object_id, {}, {},
                     service_.state().ca_cert_pem());
  ExpectRefused(bundle, "self-signed certificate");
}

TEST_F(VaultAttackTest, CertificateOfAnotherVaultServiceIsRefused) {
  TestVaultService other;
  // The other service's admin bundle, with this service's CA so that the
  // client side trusts the server: only the server's check is left.
  const auto bundle = service_.credentials_dir() / "other-ca.pem";
  ExpectRefused(other.admin_bundle(), "another service's admin bundle");
  // And a client certificate of this service's CA's name, signed by the
  // other CA (what a compromised sibling service could mint).
  const std::string admin_id =
      (*service_.state().identities().List())[0].object_id;
  WriteForeignBundle(bundle, admin_id, other.state().server_key_pem(),
                     other.state().server_cert_pem(),
                     service_.state().ca_cert_pem());
  ExpectRefused(bundle, "certificate signed by another service's key");
}

TEST_F(VaultAttackTest, ExpiredCertificateIsRefused) {
  Identity id =
      service_.Issue("expired", Role::kAdmin, Now() - 7200, Now() - 3600);
  ExpectRefused(service_.BundleOf(id.object_id), "expired certificate");
}

TEST_F(VaultAttackTest, RevokedIdentityIsRefusedOnItsNextCall) {
  Identity id = service_.Issue("host");
  ASSERT_TRUE(admin_
                  ->SetAccessPolicy("", "customer", id.object_id,
                                    Permission::kGet | Permission::kUnwrapKey)
                  .ok());
  auto host = service_.Connect(service_.BundleOf(id.object_id));
  ASSERT_NE(host, nullptr);
  ASSERT_TRUE(host->UnwrapKey("", key_.id, blob_, {}).ok());
  ASSERT_TRUE(service_.state().identities().Revoke(id.object_id, Now()).ok());
  // Same client, same TLS connection: refused at once.
  auto after = host->UnwrapKey("", key_.id, blob_, {});
  EXPECT_EQ(after.status().kind(), ErrorKind::kPermissionDenied);
  EXPECT_EQ(
      after.status().message(),
      "identity " + id.object_id + " was revoked; its certificate is refused");
}

TEST_F(VaultAttackTest, NonAdminCannotEnableGrantCreateOrUnwrapUngranted) {
  Identity host_id = service_.Issue("storage host");
  auto host = service_.Connect(service_.BundleOf(host_id.object_id));
  ASSERT_NE(host, nullptr);
  AttributeUpdate off;
  off.enabled = false;
  ASSERT_TRUE(admin_->UpdateKeyAttributes("", key_.id, off).ok());

  AttributeUpdate on;
  on.enabled = true;
  auto enable = host->UpdateKeyAttributes("", key_.id, on);
  EXPECT_EQ(enable.status().kind(), ErrorKind::kPermissionDenied);
  auto grant = host->SetAccessPolicy("", "customer", host_id.object_id,
                                     keystore::kAllPermissions);
  EXPECT_EQ(grant.kind(), ErrorKind::kPermissionDenied);
  EXPECT_NE(grant.message().find("only the vault admin may change access"),
            std::string::npos)
      << grant.message();
  keystore::VaultSpec spec;
  spec.name = "hostvault";
  EXPECT_EQ(host->CreateVault(spec).status().kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_EQ(host->ApplyRotationPolicies().status().kind(),
            ErrorKind::kPermissionDenied);
  ASSERT_TRUE(admin_->UpdateKeyAttributes("", key_.id, on).ok());
  auto unwrap = host->UnwrapKey("", key_.id, blob_, {});
  EXPECT_EQ(unwrap.status().kind(), ErrorKind::kPermissionDenied);
  // Claiming the admin's id as caller does not help: the client has no
  // credential for it, and the service never reads a claimed id.
  auto vault = admin_->GetVault("customer");
  ASSERT_TRUE(vault.ok());
  auto claimed = host->UnwrapKey(vault->admin_identity, key_.id, blob_, {});
  EXPECT_EQ(claimed.status().kind(), ErrorKind::kPermissionDenied);
  // The audit names the host's identity for its refused calls.
  auto audit = admin_->ReadAudit("customer", {});
  ASSERT_TRUE(audit.ok());
  int denied = 0;
  for (const auto& e : *audit) {
    if (e.identity == host_id.object_id && e.result.starts_with("denied")) {
      ++denied;
    }
  }
  EXPECT_GE(denied, 3);
}

ClientOptions HostOptions(const TestVaultService& service,
                          const std::string& host_id,
                          const std::filesystem::path& creds) {
  ClientOptions o;
  o.endpoint = service.tcp_endpoint();
  o.credential = service.BundleOf(host_id);
  o.credentials_dir = creds;
  return o;
}

// A storage host's identity mints its DES identities and may do nothing with
// keys, even when a policy grants its object id everything.
TEST_F(VaultAttackTest, HostIdentityMayOnlyMintDesIdentities) {
  Identity host_id = service_.Issue("storage host", Role::kHost);
  ASSERT_TRUE(admin_
                  ->SetAccessPolicy("", "customer", host_id.object_id,
                                    keystore::kAllPermissions)
                  .ok());
  auto host = service_.Connect(service_.BundleOf(host_id.object_id));
  ASSERT_NE(host, nullptr);
  AttributeUpdate off;
  off.enabled = false;
  const std::string refused = "is a storage host identity";
  auto get = host->GetKeyVersion("", key_.id);
  EXPECT_EQ(get.status().kind(), ErrorKind::kPermissionDenied);
  EXPECT_NE(get.status().message().find(refused), std::string::npos)
      << get.status().message();
  EXPECT_EQ(host->UnwrapKey("", key_.id, blob_, {}).status().kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_EQ(host->WrapKey("", key_.id, Bytes(std::string(64, 'k')), {})
                .status()
                .kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_EQ(host->UpdateKeyAttributes("", key_.id, off).status().kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_EQ(
      host->CreateKey("", "customer", "host-key", keystore::KeyType::kRsa, 2048)
          .status()
          .kind(),
      ErrorKind::kPermissionDenied);
  EXPECT_EQ(host->ListKeys("", "customer").status().kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_EQ(host->SetAccessPolicy("", "customer", host_id.object_id,
                                  keystore::kAllPermissions)
                .kind(),
            ErrorKind::kPermissionDenied);
  EXPECT_EQ(host->ReadAudit("customer", {}).status().kind(),
            ErrorKind::kPermissionDenied);
  keystore::AuditEntry forged;
  forged.operation = "disk.seal";
  forged.result = "ok";
  EXPECT_EQ(host->AppendAudit("customer", forged).kind(),
            ErrorKind::kPermissionDenied);
  // What the host may do: read vault settings and watch key changes.
  EXPECT_TRUE(host->GetVault("customer").ok());
  EXPECT_TRUE(host->ChangeCounter().ok());

  // It mints a DES identity: the credential lands in the host's directory,
  // 0600; the identity is a plain client, with no permission until granted.
  const auto creds = service_.credentials_dir() / "host-creds";
  auto minted = MintManagedIdentity(
      HostOptions(service_, host_id.object_id, creds), "des des1");
  ASSERT_TRUE(minted.ok()) << minted.status().ToString();
  const auto bundle = creds / (*minted + ".pem");
  struct stat st {};
  ASSERT_EQ(::stat(bundle.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto ids = service_.state().identities().List();
  ASSERT_TRUE(ids.ok());
  bool found = false;
  for (const Identity& id : *ids) {
    if (id.object_id != *minted) continue;
    found = true;
    EXPECT_EQ(id.role, Role::kClient);
    EXPECT_EQ(id.minted_by, host_id.object_id);
  }
  EXPECT_TRUE(found);
  auto des = service_.Connect(bundle);
  ASSERT_NE(des, nullptr);
  EXPECT_EQ(des->UnwrapKey("", key_.id, blob_, {}).status().kind(),
            ErrorKind::kPermissionDenied);
  keystore::VaultSpec spec;
  spec.name = "desvault";
  EXPECT_EQ(des->CreateVault(spec).status().kind(),
            ErrorKind::kPermissionDenied);
  // Once the owner grants it, the minted identity unwraps.
  ASSERT_TRUE(
      admin_
          ->SetAccessPolicy("", "customer", *minted,
                            Permission::kGet | Permission::kWrapKey |
                                static_cast<uint32_t>(Permission::kUnwrapKey))
          .ok());
  auto dek = des->UnwrapKey("", key_.id, blob_, {});
  ASSERT_TRUE(dek.ok()) << dek.status().ToString();
  EXPECT_EQ(dek->size(), 64u);
}

TEST_F(VaultAttackTest, OnlyAHostOrTheOwnerMintsIdentities) {
  Identity client = service_.Issue("some client");
  auto minted = MintManagedIdentity(
      HostOptions(service_, client.object_id,
                  service_.credentials_dir() / "client-creds"),
      "des x");
  EXPECT_EQ(minted.status().kind(), ErrorKind::kPermissionDenied);
  EXPECT_NE(minted.status().message().find("needs a host credential"),
            std::string::npos)
      << minted.status().message();
  // The service checks what a host sends: a name and a P-256 public key.
  Caller host;
  host.object_id = "00000000-0000-4000-8000-000000000001";
  host.host = true;
  auto bad_key = service_.state().Mint(host, "des y", "not a key");
  EXPECT_EQ(bad_key.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(bad_key.status().message().find("accepted: an EC P-256 key"),
            std::string::npos)
      << bad_key.status().message();
  auto pair = crypto::x509::NewKeyPair();
  ASSERT_TRUE(pair.ok());
  auto bad_name =
      service_.state().Mint(host, "des\n[admin]", pair->public_key_pem);
  EXPECT_EQ(bad_name.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(service_.state().Mint(host, "des z", pair->public_key_pem).ok());
}

// TLS 1.3 only: a client that offers at most TLS 1.2 gets no handshake.
TEST_F(VaultAttackTest, Tls12ClientIsRefused) {
  const std::string bundle = service_.admin_bundle().string();
  auto handshake = [&](const char* version) {
    const std::string cmd = "timeout 20 openssl s_client -connect " +
                            service_.tcp_endpoint() + " " + version +
                            " -cert " + bundle + " -key " + bundle +
                            " -CAfile " + bundle + " </dev/null 2>&1";
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return std::string("popen failed");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
  };
  const std::string tls13 = handshake("-tls1_3");
  EXPECT_NE(tls13.find("New, TLSv1.3,"), std::string::npos) << tls13;
  const std::string tls12 = handshake("-tls1_2");
  EXPECT_EQ(tls12.find("New, TLSv1.2,"), std::string::npos) << tls12;
  EXPECT_NE(tls12.find("Cipher is (NONE)"), std::string::npos) << tls12;
}

TEST_F(VaultAttackTest, AppendedAuditEntriesCarryTheCallerNotTheClaim) {
  Identity host_id = service_.Issue("storage host");
  auto host = service_.Connect(service_.BundleOf(host_id.object_id));
  keystore::AuditEntry e;
  e.identity = "00000000-0000-4000-8000-000000000000";
  e.operation = "disk.seal";
  e.result = "ok";
  ASSERT_TRUE(host->AppendAudit("customer", e).ok());
  auto audit = admin_->ReadAudit("customer", {});
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().operation, "disk.seal");
  EXPECT_EQ(audit->back().identity, host_id.object_id);
}

TEST_F(VaultAttackTest, ServerOfAnotherCaIsRefusedByTheClient) {
  TestVaultService other;
  auto client =
      service_.TryConnect(other.tcp_endpoint(), service_.admin_bundle());
  ASSERT_TRUE(client.ok());
  Status s = Probe(**client);
  EXPECT_EQ(s.kind(), ErrorKind::kIOError);
  EXPECT_NE(s.message().find("vault service " + other.tcp_endpoint()),
            std::string::npos)
      << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
}

TEST_F(VaultAttackTest, UnreachableServiceIsOneLineNamingTheEndpoint) {
  const std::string endpoint =
      "unix:" + (service_.credentials_dir() / "no-such.sock").string();
  auto client = service_.TryConnect(endpoint, service_.admin_bundle());
  ASSERT_TRUE(client.ok());
  Status s = Probe(**client);
  EXPECT_EQ(s.kind(), ErrorKind::kIOError);
  EXPECT_TRUE(
      s.message().starts_with("vault service " + endpoint + " unreachable"))
      << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
}

TEST_F(VaultAttackTest, CredentialReadableByOthersIsRefused) {
  std::filesystem::permissions(service_.admin_bundle(),
                               std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  auto client =
      service_.TryConnect(service_.tcp_endpoint(), service_.admin_bundle());
  EXPECT_EQ(client.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(client.status().message().find(service_.admin_bundle().string()),
            std::string::npos)
      << client.status().message();
}

}  // namespace
}  // namespace cmkfs::vault::testing
