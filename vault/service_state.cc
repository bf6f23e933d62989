#include "vault/service_state.h"

#include <fcntl.h>
#include <unistd.h>

#include "cmkfs/file_trust.h"
#include "cmkfs/path_guard.h"
#include "cmkfs/x509.h"
#include "master_key.h"

namespace cmkfs::vault {
namespace {

constexpr int64_t kDay = 24 * 3600;
constexpr size_t kMaxFile = 64 * 1024;

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Writes a new file (O_EXCL, mode 0600, fsync'ed) holding `parts`.
Result<std::string> ReadPublic(const std::filesystem::path& path) {
  CMKFS_ASSIGN_OR_RETURN(auto bytes,
                         ReadFileToSecret(path, "cmkvault file", kMaxFile));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string Aad(std::string_view what) {
  return "cmkvault " + std::string(what) + " key v1";
}

Status WriteSealed(const crypto::SecretBytes& master,
                   const std::filesystem::path& path, std::string_view what,
                   const crypto::SecretBytes& key_pem) {
  CMKFS_ASSIGN_OR_RETURN(
      auto sealed, crypto::AeadSeal(master, key_pem.span(), Bytes(Aad(what))));
  return path_guard::WriteNewPrivateFile(path, {sealed});
}

Result<crypto::SecretBytes> ReadSealed(const crypto::SecretBytes& master,
                                       const std::filesystem::path& path,
                                       std::string_view what) {
  CMKFS_ASSIGN_OR_RETURN(
      int fd, path_guard::OpenNoFollow(path, O_RDONLY, 0600,
                                       path_guard::Access::kOwnerOnly));
  ::close(fd);
  CMKFS_ASSIGN_OR_RETURN(auto sealed,
                         ReadFileToSecret(path, "sealed key", kMaxFile));
  Result<crypto::SecretBytes> key =
      crypto::AeadOpen(master, sealed.span(), Bytes(Aad(what)));
  if (!key.ok()) {
    return CorruptionError(path.string() +
                           " does not open with this vault master key "
                           "(tampered, or another service's file)");
  }
  return key;
}

struct Layout {
  std::filesystem::path dir;
  std::filesystem::path master() const { return dir / "vault.key"; }
  std::filesystem::path keystore() const { return dir / "vault"; }
  std::filesystem::path identities() const { return dir / "identities"; }
  std::filesystem::path ca_cert() const { return dir / "ca.pem"; }
  std::filesystem::path ca_key() const { return dir / "ca.key.sealed"; }
  std::filesystem::path server_cert() const { return dir / "server.pem"; }
  std::filesystem::path server_key() const { return dir / "server.key.sealed"; }
};

}  // namespace

Result<std::string> NewObjectId() {
  uint8_t b[16];
  CMKFS_RETURN_IF_ERROR(crypto::RandomBytes(b));
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  std::string hex = crypto::HexEncode(b);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) +
         "-" + hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

Result<Identity> ServiceState::Init(const std::filesystem::path& dir,
                                    const std::vector<std::string>& extra_names,
                                    const IssueRequest& admin) {
  const Layout l{dir};
  CMKFS_RETURN_IF_ERROR(path_guard::PrepareStateDir(dir).WithContext(
      "unsafe cmkvault state directory " + dir.string()));
  std::error_code ec;
  if (std::filesystem::exists(l.ca_cert(), ec)) {
    return AlreadyExistsError("cmkvault state directory " + dir.string() +
                              " is already initialised (" +
                              l.ca_cert().string() + " exists)");
  }
  CMKFS_ASSIGN_OR_RETURN(auto master,
                         keystore::LoadOrCreateMasterKeyFile(l.master()));
  const int64_t now = NowSeconds();
  crypto::x509::CertificateRequest ca_req;
  ca_req.common_name = "cmkvault CA " + dir.string();
  ca_req.is_ca = true;
  ca_req.not_before = now - 60;
  ca_req.not_after = now + 3650 * kDay;
  CMKFS_ASSIGN_OR_RETURN(auto ca, crypto::x509::Issue(ca_req, {}, {}));

  crypto::x509::CertificateRequest srv_req;
  srv_req.common_name = std::string(kServerName);
  srv_req.server = true;
  srv_req.dns_sans = {std::string(kServerName), "localhost"};
  srv_req.ip_sans = {"127.0.0.1", "::1"};
  for (const std::string& n : extra_names) srv_req.dns_sans.push_back(n);
  srv_req.not_before = now - 60;
  srv_req.not_after = now + 825 * kDay;
  CMKFS_ASSIGN_OR_RETURN(auto srv,
                         crypto::x509::Issue(srv_req, ca.key_pem, ca.cert_pem));

  // The CA certificate is written last: its presence marks an initialised
  // directory.
  CMKFS_RETURN_IF_ERROR(WriteSealed(master, l.ca_key(), "ca", ca.key_pem));
  CMKFS_RETURN_IF_ERROR(
      WriteSealed(master, l.server_key(), "server", srv.key_pem));
  CMKFS_RETURN_IF_ERROR(
      path_guard::WriteNewPrivateFile(l.server_cert(), {Bytes(srv.cert_pem)}));
  CMKFS_RETURN_IF_ERROR(
      path_guard::WriteNewPrivateFile(l.ca_cert(), {Bytes(ca.cert_pem)}));

  CMKFS_ASSIGN_OR_RETURN(auto state, Open(dir));
  return state->Issue(admin);
}

Result<std::unique_ptr<ServiceState>> ServiceState::Open(
    const std::filesystem::path& dir) {
  const Layout l{dir};
  std::error_code ec;
  if (!std::filesystem::exists(l.ca_cert(), ec)) {
    return FailedPreconditionError(
        dir.string() + " is not a cmkvault state directory (no " +
        l.ca_cert().string() +
        "); create one with: cmkvault init --state-dir " + dir.string());
  }
  CMKFS_RETURN_IF_ERROR(path_guard::CheckStateDir(dir).WithContext(
      "unsafe cmkvault state directory " + dir.string()));
  std::unique_ptr<ServiceState> s(new ServiceState);
  s->dir_ = dir;
  CMKFS_ASSIGN_OR_RETURN(s->master_,
                         keystore::LoadOrCreateMasterKeyFile(l.master()));
  CMKFS_ASSIGN_OR_RETURN(s->ca_cert_pem_, ReadPublic(l.ca_cert()));
  CMKFS_ASSIGN_OR_RETURN(s->server_cert_pem_, ReadPublic(l.server_cert()));
  CMKFS_ASSIGN_OR_RETURN(s->ca_key_, ReadSealed(s->master_, l.ca_key(), "ca"));
  CMKFS_ASSIGN_OR_RETURN(s->server_key_,
                         ReadSealed(s->master_, l.server_key(), "server"));
  CMKFS_ASSIGN_OR_RETURN(s->identities_, IdentityTable::Open(l.identities()));
  return s;
}

namespace {

Status CheckIdentityName(std::string_view name) {
  bool printable = true;
  for (unsigned char c : name) printable = printable && c >= 0x20 && c != 0x7f;
  if (name.empty() || name.size() > 64 || !printable) {
    return InvalidArgumentError(
        "an identity needs a name of 1 to 64 printable characters");
  }
  return Status::Ok();
}

crypto::x509::CertificateRequest ClientCertificate(const Identity& id,
                                                   int64_t not_before,
                                                   int64_t not_after) {
  crypto::x509::CertificateRequest req;
  req.common_name = id.name;
  req.uri_sans = {std::string(kIdentityUriPrefix) + id.object_id};
  req.not_before = not_before != 0 ? not_before : NowSeconds() - 60;
  req.not_after = not_after != 0 ? not_after : req.not_before + 365 * kDay;
  return req;
}

}  // namespace

Status ServiceState::Record(Identity& id, std::string_view cert_pem,
                            int64_t not_after) {
  CMKFS_ASSIGN_OR_RETURN(auto info, crypto::x509::Inspect(cert_pem));
  id.fingerprint = info.fingerprint;
  id.issued = NowSeconds();
  id.not_after = not_after;
  return identities_->Add(id);
}

Result<Identity> ServiceState::Issue(const IssueRequest& request) {
  CMKFS_RETURN_IF_ERROR(CheckIdentityName(request.name));
  if (request.out.empty()) {
    return InvalidArgumentError(
        "an identity needs a file for its credential bundle (--out FILE)");
  }
  std::error_code ec;
  if (std::filesystem::exists(request.out, ec)) {
    return AlreadyExistsError("credential file " + request.out.string() +
                              " exists; cmkvault never replaces one");
  }
  Identity id;
  if (request.object_id.empty()) {
    CMKFS_ASSIGN_OR_RETURN(id.object_id, NewObjectId());
  } else {
    CMKFS_RETURN_IF_ERROR(
        keystore::CheckObjectId(request.object_id, "--object-id"));
    id.object_id = request.object_id;
  }
  id.name = request.name;
  id.role = request.role;
  const crypto::x509::CertificateRequest req =
      ClientCertificate(id, request.not_before, request.not_after);
  CMKFS_ASSIGN_OR_RETURN(auto cert,
                         crypto::x509::Issue(req, ca_key_, ca_cert_pem_));
  CMKFS_RETURN_IF_ERROR(Record(id, cert.cert_pem, req.not_after));
  CMKFS_RETURN_IF_ERROR(path_guard::WriteNewPrivateFile(
      request.out,
      {Bytes(cert.cert_pem), cert.key_pem.span(), Bytes(ca_cert_pem_)}));
  return id;
}

Result<MintedIdentity> ServiceState::Mint(const Caller& host,
                                          std::string_view name,
                                          std::string_view public_key_pem) {
  CMKFS_RETURN_IF_ERROR(CheckIdentityName(name));
  Identity id;
  CMKFS_ASSIGN_OR_RETURN(id.object_id, NewObjectId());
  id.name = std::string(name);
  id.role = Role::kClient;
  id.minted_by = host.object_id;
  const crypto::x509::CertificateRequest req = ClientCertificate(id, 0, 0);
  MintedIdentity out;
  CMKFS_ASSIGN_OR_RETURN(
      out.cert_pem, crypto::x509::IssueForPublicKey(req, public_key_pem,
                                                    ca_key_, ca_cert_pem_));
  CMKFS_RETURN_IF_ERROR(Record(id, out.cert_pem, req.not_after));
  out.object_id = id.object_id;
  return out;
}

keystore::KeyStoreOptions ServiceState::KeystoreOptions() const {
  const Layout l{dir_};
  keystore::KeyStoreOptions o;
  o.dir = l.keystore();
  o.master_key_file = l.master();
  return o;
}

}  // namespace cmkfs::vault
