// A KeyStore that forwards every call to another one: the base of the
// keystore doubles that change a few calls (FaultyKeyStore, GatedKeyStore).
#pragma once

#include "cmkfs/keystore.h"

namespace cmkfs::testing {

class ForwardingKeyStore : public keystore::KeyStore {
 public:
  // `base` must outlive this keystore.
  explicit ForwardingKeyStore(keystore::KeyStore* base) : base_(base) {}

  Result<keystore::VaultInfo> CreateVault(
      const keystore::VaultSpec& spec) override {
    return base_->CreateVault(spec);
  }
  Result<keystore::VaultInfo> GetVault(std::string_view vault) override {
    return base_->GetVault(vault);
  }
  Result<std::vector<keystore::VaultInfo>> ListVaults() override {
    return base_->ListVaults();
  }
  Status SetAccessPolicy(std::string_view caller, std::string_view vault,
                         std::string_view object_id,
                         keystore::PermissionSet permissions) override {
    return base_->SetAccessPolicy(caller, vault, object_id, permissions);
  }
  Status DeleteAccessPolicy(std::string_view caller, std::string_view vault,
                            std::string_view object_id) override {
    return base_->DeleteAccessPolicy(caller, vault, object_id);
  }
  Result<std::vector<keystore::AuditEntry>> ReadAudit(
      std::string_view vault, const keystore::AuditFilter& f) override {
    return base_->ReadAudit(vault, f);
  }
  Status AppendAudit(std::string_view vault,
                     const keystore::AuditEntry& e) override {
    return base_->AppendAudit(vault, e);
  }
  Result<keystore::KeyVersionInfo> CreateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             keystore::KeyType kty,
                                             int bits) override {
    return base_->CreateKey(caller, vault, name, kty, bits);
  }
  Result<keystore::KeyVersionInfo> ImportKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             std::string_view pem,
                                             keystore::KeyType kty) override {
    return base_->ImportKey(caller, vault, name, pem, kty);
  }
  Result<keystore::KeyVersionInfo> RotateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name) override {
    return base_->RotateKey(caller, vault, name);
  }
  Result<keystore::KeyInfo> GetKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name) override {
    return base_->GetKey(caller, vault, name);
  }
  Result<keystore::KeyVersionInfo> GetKeyVersion(
      std::string_view caller, const keystore::KeyId& id) override {
    return base_->GetKeyVersion(caller, id);
  }
  Result<std::vector<keystore::KeyInfo>> ListKeys(
      std::string_view caller, std::string_view vault) override {
    return base_->ListKeys(caller, vault);
  }
  Result<keystore::KeyVersionInfo> UpdateKeyAttributes(
      std::string_view caller, const keystore::KeyId& id,
      const keystore::AttributeUpdate& u) override {
    return base_->UpdateKeyAttributes(caller, id, u);
  }
  Status DeleteKey(std::string_view caller, std::string_view vault,
                   std::string_view name) override {
    return base_->DeleteKey(caller, vault, name);
  }
  Status RecoverKey(std::string_view caller, std::string_view vault,
                    std::string_view name) override {
    return base_->RecoverKey(caller, vault, name);
  }
  Status PurgeKey(std::string_view caller, std::string_view vault,
                  std::string_view name) override {
    return base_->PurgeKey(caller, vault, name);
  }
  Status SetRotationPolicy(std::string_view caller, std::string_view vault,
                           std::string_view name,
                           const keystore::RotationPolicy& policy) override {
    return base_->SetRotationPolicy(caller, vault, name, policy);
  }
  Result<std::vector<keystore::KeyId>> ApplyRotationPolicies() override {
    return base_->ApplyRotationPolicies();
  }
  Result<std::vector<uint8_t>> WrapKey(std::string_view caller,
                                       const keystore::KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) override {
    return base_->WrapKey(caller, id, plaintext, label, alg);
  }
  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const keystore::KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        keystore::WrapAlgorithm alg) override {
    return base_->UnwrapKey(caller, id, blob, label, alg);
  }
  Result<uint64_t> ChangeCounter() override { return base_->ChangeCounter(); }
  std::vector<Status> CheckUsable(
      std::span<const keystore::UsabilityQuery> queries) override {
    return base_->CheckUsable(queries);
  }

 protected:
  keystore::KeyStore* base_;
};

}  // namespace cmkfs::testing
