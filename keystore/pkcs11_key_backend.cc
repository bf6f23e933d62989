// PKCS#11 key backend. The module is loaded once per process (dlopen,
// C_GetFunctionList, C_Initialize with CKF_OS_LOCKING_OK) and shared by every
// backend that names it; the last backend to go finalizes and unloads it.
//
// Unwrap goes through C_Decrypt on the non-extractable private key. The
// token is asked for CKM_RSA_PKCS_OAEP with the requested hash, MGF1 and
// label first; a token that refuses those parameters (SoftHSM 2.6 knows only
// SHA-1 without label) is asked for the raw RSA operation (CKM_RSA_X_509)
// and the OAEP padding is checked in locked memory by crypto::OaepDecode.
//
// Keys the backend creates are limited (CKA_ALLOWED_MECHANISMS) to what it
// uses: CKM_RSA_PKCS_OAEP alone when the token passed the native probe
// (OAEP with SHA-1 and SHA-256, MGF1 and a label, checked on a session key
// once per connection), CKM_RSA_PKCS_OAEP and CKM_RSA_X_509 otherwise.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/file_trust.h"
#include "cmkfs/mutex.h"
#include "key_backend.h"

namespace cmkfs::keystore {
namespace {

constexpr std::string_view kMaterialMagic = "P11\x01";
constexpr size_t kMaxIdleSessions = 8;

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string CkrName(CK_RV rv) {
  switch (rv) {
#define CMKFS_CKR(name) \
  case name:            \
    return #name;
    CMKFS_CKR(CKR_OK)
    CMKFS_CKR(CKR_CANCEL)
    CMKFS_CKR(CKR_HOST_MEMORY)
    CMKFS_CKR(CKR_SLOT_ID_INVALID)
    CMKFS_CKR(CKR_GENERAL_ERROR)
    CMKFS_CKR(CKR_FUNCTION_FAILED)
    CMKFS_CKR(CKR_ARGUMENTS_BAD)
    CMKFS_CKR(CKR_ATTRIBUTE_SENSITIVE)
    CMKFS_CKR(CKR_ATTRIBUTE_TYPE_INVALID)
    CMKFS_CKR(CKR_ATTRIBUTE_VALUE_INVALID)
    CMKFS_CKR(CKR_DEVICE_ERROR)
    CMKFS_CKR(CKR_DEVICE_MEMORY)
    CMKFS_CKR(CKR_DEVICE_REMOVED)
    CMKFS_CKR(CKR_ENCRYPTED_DATA_INVALID)
    CMKFS_CKR(CKR_ENCRYPTED_DATA_LEN_RANGE)
    CMKFS_CKR(CKR_KEY_HANDLE_INVALID)
    CMKFS_CKR(CKR_KEY_TYPE_INCONSISTENT)
    CMKFS_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED)
    CMKFS_CKR(CKR_MECHANISM_INVALID)
    CMKFS_CKR(CKR_MECHANISM_PARAM_INVALID)
    CMKFS_CKR(CKR_OBJECT_HANDLE_INVALID)
    CMKFS_CKR(CKR_OPERATION_ACTIVE)
    CMKFS_CKR(CKR_PIN_INCORRECT)
    CMKFS_CKR(CKR_PIN_LOCKED)
    CMKFS_CKR(CKR_PIN_EXPIRED)
    CMKFS_CKR(CKR_PIN_LEN_RANGE)
    CMKFS_CKR(CKR_SESSION_CLOSED)
    CMKFS_CKR(CKR_SESSION_COUNT)
    CMKFS_CKR(CKR_SESSION_HANDLE_INVALID)
    CMKFS_CKR(CKR_TEMPLATE_INCOMPLETE)
    CMKFS_CKR(CKR_TEMPLATE_INCONSISTENT)
    CMKFS_CKR(CKR_TOKEN_NOT_PRESENT)
    CMKFS_CKR(CKR_TOKEN_NOT_RECOGNIZED)
    CMKFS_CKR(CKR_TOKEN_WRITE_PROTECTED)
    CMKFS_CKR(CKR_USER_NOT_LOGGED_IN)
    CMKFS_CKR(CKR_USER_PIN_NOT_INITIALIZED)
    CMKFS_CKR(CKR_USER_TYPE_INVALID)
    CMKFS_CKR(CKR_BUFFER_TOO_SMALL)
    CMKFS_CKR(CKR_CRYPTOKI_NOT_INITIALIZED)
    CMKFS_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    CMKFS_CKR(CKR_FUNCTION_NOT_SUPPORTED)
#undef CMKFS_CKR
    default: {
      std::ostringstream out;
      out << "CKR 0x" << std::hex << rv;
      return out.str();
    }
  }
}

// The token or the connection to it is gone; the next call reconnects.
bool IsConnectionLoss(CK_RV rv) {
  return rv == CKR_DEVICE_REMOVED || rv == CKR_DEVICE_ERROR ||
         rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SESSION_CLOSED ||
         rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_USER_NOT_LOGGED_IN ||
         rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

std::vector<uint8_t> ObjectIdFor(std::string_view key_id) {
  return crypto::Sha256(AsBytes(key_id));
}

// CKM_RSA_PKCS_OAEP parameters for `hash` with `label` (which must outlive
// the parameters).
CK_RSA_PKCS_OAEP_PARAMS OaepParams(crypto::OaepHash hash,
                                   std::vector<uint8_t>& label) {
  const bool sha1 = hash == crypto::OaepHash::kSha1;
  CK_RSA_PKCS_OAEP_PARAMS params{};
  params.hashAlg = sha1 ? CKM_SHA_1 : CKM_SHA256;
  params.mgf = sha1 ? CKG_MGF1_SHA1 : CKG_MGF1_SHA256;
  params.source = CKZ_DATA_SPECIFIED;
  params.pSourceData = label.empty() ? nullptr : label.data();
  params.ulSourceDataLen = label.size();
  return params;
}

// The mechanisms a key the backend creates may be used with.
std::vector<CK_MECHANISM_TYPE> AllowedMechanismsFor(bool native_oaep) {
  if (native_oaep) return {CKM_RSA_PKCS_OAEP};
  return {CKM_RSA_PKCS_OAEP, CKM_RSA_X_509};
}

// The token may not know CKA_ALLOWED_MECHANISMS, or refuse it on token
// objects: NSS softokn 3.87 fails C_GenerateKeyPair and C_CreateObject with
// CKR_GENERAL_ERROR then. The backend tries once more without it.
bool IsAttributeRefusal(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_TYPE_INVALID ||
         rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_TEMPLATE_INCONSISTENT ||
         rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED;
}

// --- process-wide module registry ------------------------------------------

struct LoadedModule {
  std::string init_args;
  void* handle = nullptr;
  CK_FUNCTION_LIST_PTR fns = nullptr;
  bool initialized_here = false;
  int users = 0;
};

// Every module loaded in this process, by path. Taken after a backend's
// conn_mu_ (Connection::Open loads the module), before nothing.
struct ModuleRegistry {
  Mutex mu;
  std::map<std::string, LoadedModule> modules GUARDED_BY(mu);
};
ModuleRegistry& Registry() {
  static auto* registry = new ModuleRegistry();
  return *registry;
}

// The module runs inside the daemon (as root): it must be a trusted file
// (cmkfs/file_trust.h), and the checked, resolved path is what is loaded.
Result<CK_FUNCTION_LIST_PTR> AcquireModule(const std::string& path,
                                           const std::string& init_args) {
  ModuleRegistry& r = Registry();
  MutexLock lock(&r.mu);
  auto it = r.modules.find(path);
  if (it != r.modules.end()) {
    if (it->second.init_args != init_args) {
      return FailedPreconditionError(
          "PKCS#11 module " + path +
          " is already initialised in this process with other [pkcs11] "
          "init_args; one process can use one configuration of a module");
    }
    ++it->second.users;
    return it->second.fns;
  }
  Result<std::filesystem::path> trusted =
      CheckTrustedFile(path, "PKCS#11 module", FileSecrecy::kShared);
  if (trusted.status().kind() == ErrorKind::kNotFound) {
    return FailedPreconditionError(
        "PKCS#11 module " + path +
        " cannot be loaded: no such file; set [pkcs11] module to the token's "
        "library");
  }
  if (!trusted.ok()) return trusted.status();
  LoadedModule m;
  m.init_args = init_args;
  m.handle = ::dlopen(trusted->c_str(), RTLD_NOW | RTLD_LOCAL);
  if (m.handle == nullptr) {
    const char* err = ::dlerror();
    return FailedPreconditionError(
        "PKCS#11 module " + path +
        " cannot be loaded: " + (err != nullptr ? err : "unknown error") +
        "; set [pkcs11] module to the token's library");
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(
      ::dlsym(m.handle, "C_GetFunctionList"));
  if (get_list == nullptr || get_list(&m.fns) != CKR_OK || m.fns == nullptr) {
    ::dlclose(m.handle);
    return FailedPreconditionError(
        "PKCS#11 module " + path +
        " cannot be loaded: it has no usable C_GetFunctionList");
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  // NSS softokn reads its parameter string from pReserved.
  if (!m.init_args.empty()) args.pReserved = m.init_args.data();
  const CK_RV rv = m.fns->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    ::dlclose(m.handle);
    return FailedPreconditionError(
        "PKCS#11 module " + path +
        " failed to initialise: C_Initialize "
        "returned " +
        CkrName(rv) +
        (m.init_args.empty() ? std::string() : "; check [pkcs11] init_args"));
  }
  m.initialized_here = rv == CKR_OK;
  m.users = 1;
  r.modules.emplace(path, m);
  return m.fns;
}

void ReleaseModule(const std::string& path) {
  ModuleRegistry& r = Registry();
  MutexLock lock(&r.mu);
  auto it = r.modules.find(path);
  if (it == r.modules.end() || --it->second.users > 0) return;
  if (it->second.initialized_here) it->second.fns->C_Finalize(nullptr);
  ::dlclose(it->second.handle);
  r.modules.erase(it);
}

constexpr size_t kMaxPinFileBytes = 4096;

// The user PIN: the first line of a trusted, private file, in locked memory.
Result<crypto::SecretBytes> ReadPin(const std::filesystem::path& file) {
  Result<std::filesystem::path> trusted =
      CheckTrustedFile(file, "PKCS#11 PIN file", FileSecrecy::kPrivate);
  Result<crypto::SecretBytes> bytes =
      trusted.ok()
          ? ReadFileToSecret(*trusted, "PKCS#11 PIN file", kMaxPinFileBytes)
          : Result<crypto::SecretBytes>(trusted.status());
  if (bytes.status().kind() == ErrorKind::kNotFound) {
    return FailedPreconditionError(
        "PKCS#11 PIN file " + file.string() +
        " cannot be read: no such file; set [pkcs11] pin_file to a file "
        "holding the user PIN");
  }
  if (!bytes.ok()) return bytes.status();
  const uint8_t* p = bytes->data();
  size_t n = std::find(p, p + bytes->size(), '\n') - p;
  while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ')) --n;
  if (n == 0) {
    return FailedPreconditionError(
        "PKCS#11 PIN file " + file.string() +
        " is empty; write the token's user PIN into it");
  }
  return crypto::SecretBytes(p, n);
}

std::string TrimLabel(const CK_UTF8CHAR* label, size_t n) {
  std::string s(reinterpret_cast<const char*>(label), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

// One logged-in connection to the token: the module, the slot and a pool of
// open sessions. Login state is per application in PKCS#11, so one C_Login
// covers every session.
class Connection {
 public:
  static Result<std::unique_ptr<Connection>> Open(const Config::Pkcs11& cfg) {
    const std::string module = cfg.module.string();
    CMKFS_ASSIGN_OR_RETURN(CK_FUNCTION_LIST_PTR fns,
                           AcquireModule(module, cfg.init_args));
    std::unique_ptr<Connection> c(new Connection(module, fns, cfg.token_label));
    CMKFS_RETURN_IF_ERROR(c->FindSlot());
    CMKFS_ASSIGN_OR_RETURN(crypto::SecretBytes pin, ReadPin(cfg.pin_file));
    CMKFS_ASSIGN_OR_RETURN(CK_SESSION_HANDLE s, c->OpenSession());
    CK_RV rv = fns->C_Login(s, CKU_USER, pin.data(), pin.size());
    pin.Wipe();
    c->Release(s, CKR_OK);
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
      return FailedPreconditionError(
          "PKCS#11 login to token " + cfg.token_label + " failed: wrong PIN (" +
          CkrName(rv) + "); check [pkcs11] pin_file " + cfg.pin_file.string());
    }
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      return FailedPreconditionError("PKCS#11 login to token " +
                                     cfg.token_label +
                                     " failed: " + CkrName(rv));
    }
    return c;
  }

  ~Connection() {
    {
      MutexLock lock(&mu_);
      for (CK_SESSION_HANDLE s : idle_) fns_->C_CloseSession(s);
      idle_.clear();
    }
    ReleaseModule(module_);
  }

  CK_FUNCTION_LIST_PTR fns() const { return fns_; }
  const std::string& label() const { return label_; }

  Result<CK_SESSION_HANDLE> Acquire() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      if (!idle_.empty()) {
        CK_SESSION_HANDLE s = idle_.back();
        idle_.pop_back();
        return s;
      }
    }
    return OpenSession();
  }

  // Returns a session to the pool, or closes it when `last_rv` says it is
  // broken or the pool is full.
  void Release(CK_SESSION_HANDLE s, CK_RV last_rv) EXCLUDES(mu_) {
    if (!IsConnectionLoss(last_rv)) {
      MutexLock lock(&mu_);
      if (idle_.size() < kMaxIdleSessions) {
        idle_.push_back(s);
        return;
      }
    }
    fns_->C_CloseSession(s);
  }

  // True once a call reported that the token or session is gone.
  bool lost() const { return lost_.load(); }

  // The result of the native OAEP probe on this connection, once made.
  std::optional<bool> native_oaep() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return native_oaep_;
  }
  void set_native_oaep(bool native) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    native_oaep_ = native;
  }

  // Set once the token refused a key with CKA_ALLOWED_MECHANISMS and took
  // it without: later keys are made without it at once.
  bool refuses_allowed_mechanisms() const {
    return refuses_allowed_mechanisms_.load();
  }
  void set_refuses_allowed_mechanisms() {
    refuses_allowed_mechanisms_.store(true);
  }

  Status Error(std::string_view call, CK_RV rv) const {
    if (IsConnectionLoss(rv)) {
      lost_.store(true);
      return IOError("PKCS#11 token " + label_ + " unreachable: " +
                     std::string(call) + " returned " + CkrName(rv));
    }
    return IOError("PKCS#11 " + std::string(call) + " on token " + label_ +
                   " failed: " + CkrName(rv));
  }

 private:
  Connection(std::string module, CK_FUNCTION_LIST_PTR fns, std::string label)
      : module_(std::move(module)), fns_(fns), label_(std::move(label)) {}

  Status FindSlot() {
    CK_ULONG n = 0;
    CK_RV rv = fns_->C_GetSlotList(CK_TRUE, nullptr, &n);
    std::vector<CK_SLOT_ID> slots(n);
    if (rv == CKR_OK && n > 0)
      rv = fns_->C_GetSlotList(CK_TRUE, slots.data(), &n);
    if (rv != CKR_OK) return Error("C_GetSlotList", rv);
    slots.resize(n);
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      if (fns_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
      if (TrimLabel(info.label, sizeof(info.label)) == label_) {
        slot_ = slot;
        return Status::Ok();
      }
    }
    return FailedPreconditionError(
        "no PKCS#11 token labelled '" + label_ + "' in module " + module_ +
        "; initialise one with softhsm2-util --init-token --free --label " +
        label_ + " (or set [pkcs11] token_label)");
  }

  Result<CK_SESSION_HANDLE> OpenSession() {
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = fns_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                   nullptr, nullptr, &s);
    if (rv != CKR_OK) return Error("C_OpenSession", rv);
    return s;
  }

  const std::string module_;
  CK_FUNCTION_LIST_PTR const fns_;
  const std::string label_;
  CK_SLOT_ID slot_ = 0;
  Mutex mu_;  // a leaf: no other lock is taken under it
  std::vector<CK_SESSION_HANDLE> idle_ GUARDED_BY(mu_);
  std::optional<bool> native_oaep_ GUARDED_BY(mu_);
  std::atomic<bool> refuses_allowed_mechanisms_{false};
  mutable std::atomic<bool> lost_{false};
};

class Pkcs11KeyBackend final : public KeyBackend {
 public:
  explicit Pkcs11KeyBackend(Config::Pkcs11 config)
      : config_(std::move(config)) {}

  Result<StoredKey> Generate(int bits, std::string_view key_id) override {
    CMKFS_ASSIGN_OR_RETURN(auto conn, Connect());
    Session s(*conn);
    CMKFS_RETURN_IF_ERROR(s.status());
    CMKFS_ASSIGN_OR_RETURN(const bool native, NativeOaep(*conn, s));
    std::vector<CK_MECHANISM_TYPE> mechs = AllowedMechanismsFor(native);
    std::vector<uint8_t> object_id = ObjectIdFor(key_id);
    std::string label(key_id);
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG modulus_bits = static_cast<CK_ULONG>(bits);
    std::array<uint8_t, 3> exponent = {1, 0, 1};
    CK_ATTRIBUTE pub_template[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &yes, sizeof(yes)},
        {CKA_VERIFY, &no, sizeof(no)},
        {CKA_MODULUS_BITS, &modulus_bits, sizeof(modulus_bits)},
        {CKA_PUBLIC_EXPONENT, exponent.data(), exponent.size()},
        {CKA_ID, object_id.data(), object_id.size()},
        {CKA_LABEL, label.data(), label.size()},
    };
    // CKA_ALLOWED_MECHANISMS last: dropped for a token that does not know it.
    std::vector<CK_ATTRIBUTE> priv_template = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_UNWRAP, &yes, sizeof(yes)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_ID, object_id.data(), object_id.size()},
        {CKA_LABEL, label.data(), label.size()},
        {CKA_ALLOWED_MECHANISMS, mechs.data(),
         mechs.size() * sizeof(CK_MECHANISM_TYPE)},
    };
    CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    auto generate = [&] {
      return conn->fns()->C_GenerateKeyPair(
          s.handle(), &mech, pub_template, std::size(pub_template),
          priv_template.data(), priv_template.size(), &pub, &priv);
    };
    if (conn->refuses_allowed_mechanisms()) priv_template.pop_back();
    CK_RV rv = generate();
    if (IsAttributeRefusal(rv) && !conn->refuses_allowed_mechanisms()) {
      priv_template.pop_back();
      rv = generate();
      if (rv == CKR_OK) conn->set_refuses_allowed_mechanisms();
    }
    if (rv != CKR_OK) return s.Fail("C_GenerateKeyPair", rv);
    auto stored = Describe(*conn, s, pub, object_id);
    if (!stored.ok()) {
      conn->fns()->C_DestroyObject(s.handle(), priv);
      conn->fns()->C_DestroyObject(s.handle(), pub);
      return stored.status();
    }
    RememberHandle(object_id, {priv, native});
    return stored;
  }

  Result<StoredKey> Import(const crypto::RsaKey& key,
                           std::string_view key_id) override {
    CMKFS_ASSIGN_OR_RETURN(StoredKey stored,
                           StoredPublicPartOfImport(key, "PKCS#11"));
    CMKFS_ASSIGN_OR_RETURN(crypto::RsaPrivateComponents c,
                           key.PrivateComponents());
    CMKFS_ASSIGN_OR_RETURN(auto conn, Connect());
    Session s(*conn);
    CMKFS_RETURN_IF_ERROR(s.status());
    CMKFS_ASSIGN_OR_RETURN(const bool native, NativeOaep(*conn, s));
    std::vector<CK_MECHANISM_TYPE> mechs = AllowedMechanismsFor(native);
    std::vector<uint8_t> object_id = ObjectIdFor(key_id);
    std::string label(key_id);
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
    CK_KEY_TYPE rsa = CKK_RSA;
    auto secret = [](CK_ATTRIBUTE_TYPE type, crypto::SecretBytes& b) {
      return CK_ATTRIBUTE{type, b.data(), b.size()};
    };
    // CKA_ALLOWED_MECHANISMS last: dropped for a token that does not know it.
    std::vector<CK_ATTRIBUTE> priv_template = {
        {CKA_CLASS, &priv_class, sizeof(priv_class)},
        {CKA_KEY_TYPE, &rsa, sizeof(rsa)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_UNWRAP, &yes, sizeof(yes)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_ID, object_id.data(), object_id.size()},
        {CKA_LABEL, label.data(), label.size()},
        {CKA_MODULUS, c.modulus.data(), c.modulus.size()},
        {CKA_PUBLIC_EXPONENT, c.public_exponent.data(),
         c.public_exponent.size()},
        secret(CKA_PRIVATE_EXPONENT, c.private_exponent),
        secret(CKA_PRIME_1, c.prime1),
        secret(CKA_PRIME_2, c.prime2),
        secret(CKA_EXPONENT_1, c.exponent1),
        secret(CKA_EXPONENT_2, c.exponent2),
        secret(CKA_COEFFICIENT, c.coefficient),
        {CKA_ALLOWED_MECHANISMS, mechs.data(),
         mechs.size() * sizeof(CK_MECHANISM_TYPE)},
    };
    CK_ATTRIBUTE pub_template[] = {
        {CKA_CLASS, &pub_class, sizeof(pub_class)},
        {CKA_KEY_TYPE, &rsa, sizeof(rsa)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &yes, sizeof(yes)},
        {CKA_ID, object_id.data(), object_id.size()},
        {CKA_LABEL, label.data(), label.size()},
        {CKA_MODULUS, c.modulus.data(), c.modulus.size()},
        {CKA_PUBLIC_EXPONENT, c.public_exponent.data(),
         c.public_exponent.size()},
    };
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
    auto create = [&] {
      return conn->fns()->C_CreateObject(s.handle(), priv_template.data(),
                                         priv_template.size(), &priv);
    };
    if (conn->refuses_allowed_mechanisms()) priv_template.pop_back();
    CK_RV rv = create();
    if (IsAttributeRefusal(rv) && !conn->refuses_allowed_mechanisms()) {
      priv_template.pop_back();
      rv = create();
      if (rv == CKR_OK) conn->set_refuses_allowed_mechanisms();
    }
    if (rv != CKR_OK) return s.Fail("C_CreateObject (private key)", rv);
    rv = conn->fns()->C_CreateObject(s.handle(), pub_template,
                                     std::size(pub_template), &pub);
    if (rv != CKR_OK) {
      conn->fns()->C_DestroyObject(s.handle(), priv);
      return s.Fail("C_CreateObject (public key)", rv);
    }
    stored.material = Material(object_id);
    RememberHandle(object_id, {priv, native});
    return stored;
  }

  Result<crypto::SecretBytes> Unwrap(const StoredKey& key,
                                     std::string_view key_id,
                                     std::span<const uint8_t> blob,
                                     std::span<const uint8_t> label,
                                     crypto::OaepHash hash) override {
    std::vector<uint8_t> object_id = ObjectIdFor(key_id);
    if (key.material != Material(object_id)) {
      return CorruptionError("token object reference of " +
                             std::string(key_id) +
                             " does not belong to this key id");
    }
    const Status failed = CorruptionError(
        "unwrap failed: wrong key, wrong label or damaged blob");
    CMKFS_ASSIGN_OR_RETURN(auto conn, Connect());
    Session s(*conn);
    CMKFS_RETURN_IF_ERROR(s.status());
    CMKFS_ASSIGN_OR_RETURN(TokenKey token_key,
                           FindPrivateKey(*conn, s, object_id, key_id));
    const CK_OBJECT_HANDLE priv = token_key.handle;
    const size_t modulus_bytes = static_cast<size_t>((key.bits + 7) / 8);
    if (blob.empty() || blob.size() > modulus_bytes) return failed;
    const bool sha1 = hash == crypto::OaepHash::kSha1;
    std::vector<uint8_t> label_copy(label.begin(), label.end());
    CK_RSA_PKCS_OAEP_PARAMS params = OaepParams(hash, label_copy);
    CK_MECHANISM oaep{CKM_RSA_PKCS_OAEP, &params, sizeof(params)};
    std::vector<uint8_t> in(blob.begin(), blob.end());
    crypto::SecretBytes out(modulus_bytes);
    auto refused = [](CK_RV rv) {
      return rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
             rv == CKR_MECHANISM_INVALID ||
             rv == CKR_KEY_FUNCTION_NOT_PERMITTED;
    };
    // One C_DecryptInit + C_Decrypt; `*init_refused` tells the caller to try
    // the other mechanism.
    auto decrypt = [&](CK_MECHANISM* mech, std::span<uint8_t> input,
                       bool* init_refused) -> Result<CK_ULONG> {
      *init_refused = false;
      CK_RV rv = conn->fns()->C_DecryptInit(s.handle(), mech, priv);
      if (rv != CKR_OK) {
        if (refused(rv)) {
          *init_refused = true;
          return failed;
        }
        if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) {
          ForgetHandle(object_id);
        }
        return s.Fail("C_DecryptInit", rv);
      }
      CK_ULONG out_len = out.size();
      rv = conn->fns()->C_Decrypt(s.handle(), input.data(), input.size(),
                                  out.data(), &out_len);
      if (rv == CKR_OK) return out_len;
      if (IsConnectionLoss(rv)) return s.Fail("C_Decrypt", rv);
      return failed;
    };
    bool init_refused = false;
    // On a token that passed the native probe (or a key limited to
    // CKM_RSA_PKCS_OAEP, which only such a token gets) the token checks
    // hash, MGF1 and label itself.
    if (token_key.native) {
      auto n = decrypt(&oaep, in, &init_refused);
      if (init_refused) {
        return NotSupportedError("PKCS#11 token " + conn->label() +
                                 " refuses CKM_RSA_PKCS_OAEP with these "
                                 "parameters for key " +
                                 std::string(key_id));
      }
      if (!n.ok()) return n.status();
      return crypto::SecretBytes(out.data(), *n);
    }
    // Without a label every token's CKM_RSA_PKCS_OAEP is trusted. Some
    // (SoftHSM 2.6) accept a label parameter and ignore it, so a labelled
    // unwrap asks for the raw operation first and checks the padding here.
    if (label.empty() && !native_refused_[sha1 ? 0 : 1].load()) {
      auto n = decrypt(&oaep, in, &init_refused);
      if (!init_refused) {
        if (!n.ok()) return n.status();
        return crypto::SecretBytes(out.data(), *n);
      }
      native_refused_[sha1 ? 0 : 1].store(true);
    }
    CK_MECHANISM raw{CKM_RSA_X_509, nullptr, 0};
    // Raw RSA wants the full modulus length.
    std::vector<uint8_t> padded(modulus_bytes - in.size(), 0);
    padded.insert(padded.end(), in.begin(), in.end());
    auto n = decrypt(&raw, padded, &init_refused);
    if (init_refused && !label.empty()) {
      n = decrypt(&oaep, in, &init_refused);
      if (n.ok()) return crypto::SecretBytes(out.data(), *n);
    }
    if (init_refused) {
      return NotSupportedError(
          "PKCS#11 token " + conn->label() +
          " supports neither CKM_RSA_PKCS_OAEP with these parameters nor "
          "CKM_RSA_X_509 for key " +
          std::string(key_id));
    }
    if (!n.ok()) return n.status();
    return crypto::OaepDecode(out.span().first(*n), modulus_bytes, label, hash);
  }

  Status Destroy(const StoredKey& key, std::string_view key_id) override {
    std::vector<uint8_t> object_id = ObjectIdFor(key_id);
    if (key.material != Material(object_id)) {
      return CorruptionError("token object reference of " +
                             std::string(key_id) +
                             " does not belong to this key id");
    }
    CMKFS_ASSIGN_OR_RETURN(auto conn, Connect());
    Session s(*conn);
    CMKFS_RETURN_IF_ERROR(s.status());
    ForgetHandle(object_id);
    CMKFS_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> objects,
                           FindObjects(*conn, s, object_id, std::nullopt));
    for (CK_OBJECT_HANDLE h : objects) {
      CK_RV rv = conn->fns()->C_DestroyObject(s.handle(), h);
      if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) {
        return s.Fail("C_DestroyObject", rv);
      }
    }
    return Status::Ok();
  }

  Result<TokenKeyFacts> Inspect(std::string_view key_id) {
    CMKFS_ASSIGN_OR_RETURN(auto conn, Connect());
    Session s(*conn);
    CMKFS_RETURN_IF_ERROR(s.status());
    CMKFS_ASSIGN_OR_RETURN(
        std::vector<CK_OBJECT_HANDLE> objects,
        FindObjects(*conn, s, ObjectIdFor(key_id), CKO_PRIVATE_KEY));
    TokenKeyFacts facts;
    if (objects.empty()) return facts;
    facts.found = true;
    CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, token = CK_FALSE;
    CK_ATTRIBUTE flags[] = {
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_TOKEN, &token, sizeof(token)},
    };
    CK_RV rv = conn->fns()->C_GetAttributeValue(s.handle(), objects[0], flags,
                                                std::size(flags));
    if (rv != CKR_OK) return s.Fail("C_GetAttributeValue", rv);
    facts.sensitive = sensitive == CK_TRUE;
    facts.extractable = extractable == CK_TRUE;
    facts.on_token = token == CK_TRUE;
    std::vector<uint8_t> d(1024);
    CK_ATTRIBUTE secret{CKA_PRIVATE_EXPONENT, d.data(), d.size()};
    rv = conn->fns()->C_GetAttributeValue(s.handle(), objects[0], &secret, 1);
    facts.private_exponent_readable =
        rv == CKR_OK && secret.ulValueLen != CK_UNAVAILABLE_INFORMATION;
    CMKFS_ASSIGN_OR_RETURN(auto mechs, AllowedMechanisms(*conn, s, objects[0]));
    facts.allowed_mechanisms_set = mechs.has_value();
    CMKFS_ASSIGN_OR_RETURN(
        TokenKey key, FindPrivateKey(*conn, s, ObjectIdFor(key_id), key_id));
    facts.unwraps_natively = key.native;
    if (mechs) {
      facts.allowed_mechanisms.assign(mechs->begin(), mechs->end());
    }
    // Whether the key works as a raw RSA oracle: decrypt a block of zeros
    // (which any modulus accepts) with CKM_RSA_X_509.
    CK_ULONG modulus_bits = 0;
    CK_ATTRIBUTE bits_attr{CKA_MODULUS_BITS, &modulus_bits,
                           sizeof(modulus_bits)};
    std::vector<uint8_t> modulus(1024);
    CK_ATTRIBUTE modulus_attr{CKA_MODULUS, modulus.data(), modulus.size()};
    CK_ULONG block = 0;
    if (conn->fns()->C_GetAttributeValue(s.handle(), objects[0], &modulus_attr,
                                         1) == CKR_OK) {
      block = modulus_attr.ulValueLen;
    } else if (conn->fns()->C_GetAttributeValue(s.handle(), objects[0],
                                                &bits_attr, 1) == CKR_OK) {
      block = (modulus_bits + 7) / 8;
    }
    CK_MECHANISM raw{CKM_RSA_X_509, nullptr, 0};
    std::vector<uint8_t> zeros(block, 0), out(block, 0);
    CK_ULONG out_len = out.size();
    facts.raw_decrypt_allowed =
        block > 0 &&
        conn->fns()->C_DecryptInit(s.handle(), &raw, objects[0]) == CKR_OK &&
        conn->fns()->C_Decrypt(s.handle(), zeros.data(), zeros.size(),
                               out.data(), &out_len) == CKR_OK;
    return facts;
  }

 private:
  // A session leased from the pool for one operation.
  class Session {
   public:
    explicit Session(Connection& conn) : conn_(conn) {
      auto s = conn.Acquire();
      if (s.ok()) {
        handle_ = *s;
      } else {
        status_ = s.status();
      }
    }
    ~Session() {
      if (status_.ok()) conn_.Release(handle_, last_rv_);
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    const Status& status() const { return status_; }
    CK_SESSION_HANDLE handle() const { return handle_; }
    Status Fail(std::string_view call, CK_RV rv) {
      last_rv_ = rv;
      return conn_.Error(call, rv);
    }

   private:
    Connection& conn_;
    CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
    CK_RV last_rv_ = CKR_OK;
    Status status_;
  };

  static std::vector<uint8_t> Material(const std::vector<uint8_t>& object_id) {
    // Sized once, then copied into: GCC 12 at -O3 reports a false
    // -Werror=array-bounds for an insert() that grows a 4-byte vector.
    std::vector<uint8_t> m(kMaterialMagic.size() + object_id.size());
    std::copy(kMaterialMagic.begin(), kMaterialMagic.end(), m.begin());
    std::copy(object_id.begin(), object_id.end(),
              m.begin() + static_cast<std::ptrdiff_t>(kMaterialMagic.size()));
    return m;
  }

  // The current connection, opened (or reopened after a loss) on demand.
  // Shared so an operation in flight keeps its connection alive.
  Result<std::shared_ptr<Connection>> Connect() EXCLUDES(conn_mu_) {
    MutexLock lock(&conn_mu_);
    if (conn_ && !conn_->lost()) return conn_;
    {
      MutexLock hl(&handles_mu_);
      handles_.clear();
    }
    conn_.reset();
    CMKFS_ASSIGN_OR_RETURN(std::unique_ptr<Connection> c,
                           Connection::Open(config_));
    conn_ = std::shared_ptr<Connection>(std::move(c));
    return conn_;
  }

  Result<StoredKey> Describe(Connection& conn, Session& s, CK_OBJECT_HANDLE pub,
                             const std::vector<uint8_t>& object_id) {
    std::vector<uint8_t> modulus(1024), exponent(16);
    CK_ATTRIBUTE attrs[] = {
        {CKA_MODULUS, modulus.data(), modulus.size()},
        {CKA_PUBLIC_EXPONENT, exponent.data(), exponent.size()},
    };
    CK_RV rv = conn.fns()->C_GetAttributeValue(s.handle(), pub, attrs,
                                               std::size(attrs));
    if (rv != CKR_OK) return s.Fail("C_GetAttributeValue", rv);
    modulus.resize(attrs[0].ulValueLen);
    exponent.resize(attrs[1].ulValueLen);
    CMKFS_ASSIGN_OR_RETURN(
        crypto::RsaKey key,
        crypto::RsaKey::FromPublicComponents(modulus, exponent));
    CMKFS_ASSIGN_OR_RETURN(StoredKey stored, StoredPublicPart(key));
    stored.material = Material(object_id);
    return stored;
  }

  Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(
      Connection& conn, Session& s, const std::vector<uint8_t>& object_id,
      std::optional<CK_OBJECT_CLASS> cls) {
    CK_OBJECT_CLASS klass = cls.value_or(CKO_PRIVATE_KEY);
    std::vector<uint8_t> id = object_id;
    CK_ATTRIBUTE query[] = {
        {CKA_ID, id.data(), id.size()},
        {CKA_CLASS, &klass, sizeof(klass)},
    };
    CK_RV rv = conn.fns()->C_FindObjectsInit(s.handle(), query, cls ? 2 : 1);
    if (rv != CKR_OK) return s.Fail("C_FindObjectsInit", rv);
    std::vector<CK_OBJECT_HANDLE> found;
    while (true) {
      std::array<CK_OBJECT_HANDLE, 8> batch{};
      CK_ULONG n = 0;
      rv =
          conn.fns()->C_FindObjects(s.handle(), batch.data(), batch.size(), &n);
      if (rv != CKR_OK || n == 0) break;
      found.insert(found.end(), batch.begin(), batch.begin() + n);
    }
    conn.fns()->C_FindObjectsFinal(s.handle());
    if (rv != CKR_OK) return s.Fail("C_FindObjects", rv);
    return found;
  }

  // A private key object and whether it is unwrapped with the token's own
  // CKM_RSA_PKCS_OAEP.
  struct TokenKey {
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    bool native = false;
  };

  Result<TokenKey> FindPrivateKey(Connection& conn, Session& s,
                                  const std::vector<uint8_t>& id,
                                  std::string_view key_id) {
    {
      MutexLock lock(&handles_mu_);
      auto it = handles_.find(HandleKey(id));
      if (it != handles_.end()) return it->second;
    }
    CMKFS_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found,
                           FindObjects(conn, s, id, CKO_PRIVATE_KEY));
    if (found.empty()) {
      return CorruptionError("the private key of " + std::string(key_id) +
                             " is not in PKCS#11 token " + conn.label());
    }
    // The key's CKA_ALLOWED_MECHANISMS says which path it was made for;
    // without it (a token that does not keep it), the probe decides.
    CMKFS_ASSIGN_OR_RETURN(auto mechs, AllowedMechanisms(conn, s, found[0]));
    TokenKey key{found[0], false};
    if (mechs.has_value()) {
      key.native = std::find(mechs->begin(), mechs->end(), CKM_RSA_X_509) ==
                   mechs->end();
    } else {
      CMKFS_ASSIGN_OR_RETURN(key.native, NativeOaep(conn, s));
    }
    RememberHandle(id, key);
    return key;
  }

  void RememberHandle(const std::vector<uint8_t>& id, TokenKey key)
      EXCLUDES(handles_mu_) {
    MutexLock lock(&handles_mu_);
    handles_[HandleKey(id)] = key;
  }

  // CKA_ALLOWED_MECHANISMS of an object; nullopt when the token does not
  // keep it. Asked with a buffer: p11-kit 0.24's RPC answers a length query
  // (pValue NULL) for it with CKR_DEVICE_ERROR.
  Result<std::optional<std::vector<CK_MECHANISM_TYPE>>> AllowedMechanisms(
      Connection& conn, Session& s, CK_OBJECT_HANDLE h) {
    std::vector<CK_MECHANISM_TYPE> mechs(64);
    CK_ATTRIBUTE attr{CKA_ALLOWED_MECHANISMS, mechs.data(),
                      mechs.size() * sizeof(CK_MECHANISM_TYPE)};
    CK_RV rv = conn.fns()->C_GetAttributeValue(s.handle(), h, &attr, 1);
    if (IsConnectionLoss(rv)) return s.Fail("C_GetAttributeValue", rv);
    if (rv != CKR_OK || attr.ulValueLen == CK_UNAVAILABLE_INFORMATION ||
        attr.ulValueLen == 0) {
      return std::optional<std::vector<CK_MECHANISM_TYPE>>();
    }
    mechs.resize(attr.ulValueLen / sizeof(CK_MECHANISM_TYPE));
    return std::optional<std::vector<CK_MECHANISM_TYPE>>(std::move(mechs));
  }

  // Whether the token does CKM_RSA_PKCS_OAEP itself with SHA-1 and SHA-256,
  // MGF1 and a label: a session key pair (never on the token) unwraps what
  // the software wraps under a label and refuses it under another label
  // (SoftHSM 2.6 ignores labels). Once per connection; a token that cannot
  // make the session key is taken as not native.
  Result<bool> NativeOaep(Connection& conn, Session& s) {
    if (std::optional<bool> known = conn.native_oaep()) return *known;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG modulus_bits = 2048;
    std::array<uint8_t, 3> exponent = {1, 0, 1};
    CK_ATTRIBUTE pub_template[] = {
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_MODULUS_BITS, &modulus_bits, sizeof(modulus_bits)},
        {CKA_PUBLIC_EXPONENT, exponent.data(), exponent.size()},
    };
    CK_ATTRIBUTE priv_template[] = {
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
    };
    CK_MECHANISM gen{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    CK_RV rv = conn.fns()->C_GenerateKeyPair(
        s.handle(), &gen, pub_template, std::size(pub_template), priv_template,
        std::size(priv_template), &pub, &priv);
    if (IsConnectionLoss(rv)) return s.Fail("C_GenerateKeyPair", rv);
    bool native = rv == CKR_OK;
    if (native) {
      auto stored = Describe(conn, s, pub, {});
      native = stored.ok() && ProbeDecrypts(conn, s, *stored, priv);
      conn.fns()->C_DestroyObject(s.handle(), priv);
      conn.fns()->C_DestroyObject(s.handle(), pub);
    }
    conn.set_native_oaep(native);
    return native;
  }

  static bool ProbeDecrypts(Connection& conn, Session& s,
                            const StoredKey& stored, CK_OBJECT_HANDLE priv) {
    auto pub = crypto::RsaKey::FromPublicDer(stored.public_der);
    if (!pub.ok()) return false;
    const std::vector<uint8_t> value(32, 0xa5);
    for (auto hash : {crypto::OaepHash::kSha1, crypto::OaepHash::kSha256}) {
      constexpr std::string_view kProbeLabel = "cmkfs native OAEP probe";
      std::vector<uint8_t> label(kProbeLabel.begin(), kProbeLabel.end());
      auto blob = pub->Wrap(value, label, hash);
      if (!blob.ok()) return false;
      auto decrypt = [&](std::vector<uint8_t>& with_label,
                         std::vector<uint8_t>* out) {
        CK_RSA_PKCS_OAEP_PARAMS params = OaepParams(hash, with_label);
        CK_MECHANISM oaep{CKM_RSA_PKCS_OAEP, &params, sizeof(params)};
        if (conn.fns()->C_DecryptInit(s.handle(), &oaep, priv) != CKR_OK) {
          return false;
        }
        out->assign(blob->size(), 0);
        CK_ULONG n = out->size();
        if (conn.fns()->C_Decrypt(s.handle(), blob->data(), blob->size(),
                                  out->data(), &n) != CKR_OK) {
          return false;
        }
        out->resize(n);
        return true;
      };
      std::vector<uint8_t> got;
      if (!decrypt(label, &got) || got != value) return false;
      std::vector<uint8_t> wrong = label;
      wrong.back() ^= 1;
      if (decrypt(wrong, &got)) return false;
    }
    return true;
  }

  void ForgetHandle(const std::vector<uint8_t>& id) EXCLUDES(handles_mu_) {
    MutexLock lock(&handles_mu_);
    handles_.erase(HandleKey(id));
  }

  const Config::Pkcs11 config_;
  // Lock order: conn_mu_, then handles_mu_ (Connect clears the handles of
  // a lost connection), then the module registry's lock (Connection::Open).
  Mutex conn_mu_;
  std::shared_ptr<Connection> conn_ GUARDED_BY(conn_mu_);
  Mutex handles_mu_ ACQUIRED_AFTER(conn_mu_);
  // Keyed by the CKA_ID bytes as a string: std::map of std::vector keys
  // trips a false -Wstringop-overread of GCC 12 at -O3.
  static std::string HandleKey(const std::vector<uint8_t>& id) {
    return std::string(id.begin(), id.end());
  }
  std::map<std::string, TokenKey> handles_ GUARDED_BY(handles_mu_);
  // Per hash (SHA-1, SHA-256): the token refused CKM_RSA_PKCS_OAEP with
  // it, so go straight to CKM_RSA_X_509.
  std::array<std::atomic<bool>, 2> native_refused_{};
};

}  // namespace

std::unique_ptr<KeyBackend> NewPkcs11KeyBackend(const Config::Pkcs11& config) {
  return std::make_unique<Pkcs11KeyBackend>(config);
}

Result<TokenKeyFacts> InspectPkcs11Key(KeyBackend& pkcs11_backend,
                                       std::string_view key_id) {
  auto* backend = dynamic_cast<Pkcs11KeyBackend*>(&pkcs11_backend);
  if (backend == nullptr) {
    return InvalidArgumentError("not a PKCS#11 key backend");
  }
  return backend->Inspect(key_id);
}

}  // namespace cmkfs::keystore
