#include "timed_keystore.h"

#include <chrono>
#include <utility>

namespace cmkfs::metrics {
namespace {

using keystore::KeyId;

class TimedKeyStore final : public keystore::KeyStore {
 public:
  TimedKeyStore(std::unique_ptr<keystore::KeyStore> inner, KeyStoreMetrics m)
      : inner_(std::move(inner)), m_(m) {}

  Result<keystore::VaultInfo> CreateVault(
      const keystore::VaultSpec& spec) override {
    return inner_->CreateVault(spec);
  }
  Result<keystore::VaultInfo> GetVault(std::string_view vault) override {
    return inner_->GetVault(vault);
  }
  Result<std::vector<keystore::VaultInfo>> ListVaults() override {
    return inner_->ListVaults();
  }
  Status SetAccessPolicy(std::string_view caller, std::string_view vault,
                         std::string_view object_id,
                         keystore::PermissionSet permissions) override {
    return inner_->SetAccessPolicy(caller, vault, object_id, permissions);
  }
  Status DeleteAccessPolicy(std::string_view caller, std::string_view vault,
                            std::string_view object_id) override {
    return inner_->DeleteAccessPolicy(caller, vault, object_id);
  }
  Result<std::vector<keystore::AuditEntry>> ReadAudit(
      std::string_view vault, const keystore::AuditFilter& f) override {
    return inner_->ReadAudit(vault, f);
  }
  Status AppendAudit(std::string_view vault,
                     const keystore::AuditEntry& e) override {
    return inner_->AppendAudit(vault, e);
  }
  Result<keystore::KeyVersionInfo> CreateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             keystore::KeyType kty,
                                             int bits) override {
    return inner_->CreateKey(caller, vault, name, kty, bits);
  }
  Result<keystore::KeyVersionInfo> ImportKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             std::string_view pem,
                                             keystore::KeyType kty) override {
    return inner_->ImportKey(caller, vault, name, pem, kty);
  }
  Result<keystore::KeyVersionInfo> RotateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name) override {
    return inner_->RotateKey(caller, vault, name);
  }
  Result<keystore::KeyInfo> GetKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name) override {
    return inner_->GetKey(caller, vault, name);
  }
  Result<keystore::KeyVersionInfo> GetKeyVersion(std::string_view caller,
                                                 const KeyId& id) override {
    return inner_->GetKeyVersion(caller, id);
  }
  Result<std::vector<keystore::KeyInfo>> ListKeys(
      std::string_view caller, std::string_view vault) override {
    return inner_->ListKeys(caller, vault);
  }
  Result<keystore::KeyVersionInfo> UpdateKeyAttributes(
      std::string_view caller, const KeyId& id,
      const keystore::AttributeUpdate& u) override {
    return inner_->UpdateKeyAttributes(caller, id, u);
  }
  Status DeleteKey(std::string_view caller, std::string_view vault,
                   std::string_view name) override {
    return inner_->DeleteKey(caller, vault, name);
  }
  Status RecoverKey(std::string_view caller, std::string_view vault,
                    std::string_view name) override {
    return inner_->RecoverKey(caller, vault, name);
  }
  Status PurgeKey(std::string_view caller, std::string_view vault,
                  std::string_view name) override {
    return inner_->PurgeKey(caller, vault, name);
  }
  Status SetRotationPolicy(std::string_view caller, std::string_view vault,
                           std::string_view name,
                           const keystore::RotationPolicy& policy) override {
    return inner_->SetRotationPolicy(caller, vault, name, policy);
  }
  Result<std::vector<KeyId>> ApplyRotationPolicies() override {
    return inner_->ApplyRotationPolicies();
  }

  Result<std::vector<uint8_t>> WrapKey(std::string_view caller, const KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) override {
    const auto start = std::chrono::steady_clock::now();
    auto r = inner_->WrapKey(caller, id, plaintext, label, alg);
    Record(start, r.ok() ? Status::Ok() : r.status(), m_.wrap_seconds,
           m_.wrap_errors);
    return r;
  }
  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        keystore::WrapAlgorithm alg) override {
    const auto start = std::chrono::steady_clock::now();
    auto r = inner_->UnwrapKey(caller, id, blob, label, alg);
    Record(start, r.ok() ? Status::Ok() : r.status(), m_.unwrap_seconds,
           m_.unwrap_errors);
    return r;
  }

  Result<uint64_t> ChangeCounter() override { return inner_->ChangeCounter(); }
  std::vector<Status> CheckUsable(
      std::span<const keystore::UsabilityQuery> queries) override {
    return inner_->CheckUsable(queries);
  }

 private:
  static void Record(std::chrono::steady_clock::time_point start,
                     const Status& s, Histogram* seconds,
                     Family<Counter>* errors) {
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    if (seconds != nullptr) seconds->Observe(took.count());
    if (!s.ok() && errors != nullptr)
      errors->With({std::string(ErrorKindName(s.kind()))}).Inc();
  }

  std::unique_ptr<keystore::KeyStore> inner_;
  const KeyStoreMetrics m_;
};

}  // namespace

std::unique_ptr<keystore::KeyStore> MakeTimedKeyStore(
    std::unique_ptr<keystore::KeyStore> inner, KeyStoreMetrics metrics) {
  return std::make_unique<TimedKeyStore>(std::move(inner), metrics);
}

}  // namespace cmkfs::metrics
