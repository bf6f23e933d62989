#include "split_keystore.h"

namespace cmkfs::cli {
namespace {

using keystore::KeyId;
using keystore::KeyStore;

class Split final : public KeyStore {
 public:
  Split(std::string system_vault, std::unique_ptr<KeyStore> local,
        std::unique_ptr<KeyStore> remote)
      : system_(std::move(system_vault)),
        local_(std::move(local)),
        remote_(std::move(remote)) {}

  Result<keystore::VaultInfo> CreateVault(
      const keystore::VaultSpec& spec) override {
    return For(spec.name).CreateVault(spec);
  }
  Result<keystore::VaultInfo> GetVault(std::string_view vault) override {
    return For(vault).GetVault(vault);
  }
  Result<std::vector<keystore::VaultInfo>> ListVaults() override {
    CMKFS_ASSIGN_OR_RETURN(auto out, remote_->ListVaults());
    CMKFS_ASSIGN_OR_RETURN(auto local, local_->ListVaults());
    for (auto& v : local) {
      if (v.spec.name == system_) out.push_back(std::move(v));
    }
    return out;
  }
  Status SetAccessPolicy(std::string_view caller, std::string_view vault,
                         std::string_view object_id,
                         keystore::PermissionSet permissions) override {
    return For(vault).SetAccessPolicy(caller, vault, object_id, permissions);
  }
  Status DeleteAccessPolicy(std::string_view caller, std::string_view vault,
                            std::string_view object_id) override {
    return For(vault).DeleteAccessPolicy(caller, vault, object_id);
  }
  Result<std::vector<keystore::AuditEntry>> ReadAudit(
      std::string_view vault, const keystore::AuditFilter& f) override {
    return For(vault).ReadAudit(vault, f);
  }
  Status AppendAudit(std::string_view vault,
                     const keystore::AuditEntry& e) override {
    return For(vault).AppendAudit(vault, e);
  }
  Result<keystore::KeyVersionInfo> CreateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             keystore::KeyType kty,
                                             int bits) override {
    return For(vault).CreateKey(caller, vault, name, kty, bits);
  }
  Result<keystore::KeyVersionInfo> ImportKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             std::string_view pem,
                                             keystore::KeyType kty) override {
    return For(vault).ImportKey(caller, vault, name, pem, kty);
  }
  Result<keystore::KeyVersionInfo> RotateKey(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name) override {
    return For(vault).RotateKey(caller, vault, name);
  }
  Result<keystore::KeyInfo> GetKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name) override {
    return For(vault).GetKey(caller, vault, name);
  }
  Result<keystore::KeyVersionInfo> GetKeyVersion(std::string_view caller,
                                                 const KeyId& id) override {
    return For(id.vault).GetKeyVersion(caller, id);
  }
  Result<std::vector<keystore::KeyInfo>> ListKeys(
      std::string_view caller, std::string_view vault) override {
    return For(vault).ListKeys(caller, vault);
  }
  Result<keystore::KeyVersionInfo> UpdateKeyAttributes(
      std::string_view caller, const KeyId& id,
      const keystore::AttributeUpdate& u) override {
    return For(id.vault).UpdateKeyAttributes(caller, id, u);
  }
  Status DeleteKey(std::string_view caller, std::string_view vault,
                   std::string_view name) override {
    return For(vault).DeleteKey(caller, vault, name);
  }
  Status RecoverKey(std::string_view caller, std::string_view vault,
                    std::string_view name) override {
    return For(vault).RecoverKey(caller, vault, name);
  }
  Status PurgeKey(std::string_view caller, std::string_view vault,
                  std::string_view name) override {
    return For(vault).PurgeKey(caller, vault, name);
  }
  Status SetRotationPolicy(std::string_view caller, std::string_view vault,
                           std::string_view name,
                           const keystore::RotationPolicy& policy) override {
    return For(vault).SetRotationPolicy(caller, vault, name, policy);
  }
  Result<std::vector<KeyId>> ApplyRotationPolicies() override {
    return local_->ApplyRotationPolicies();
  }
  Result<std::vector<uint8_t>> WrapKey(std::string_view caller, const KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) override {
    return For(id.vault).WrapKey(caller, id, plaintext, label, alg);
  }
  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        keystore::WrapAlgorithm alg) override {
    return For(id.vault).UnwrapKey(caller, id, blob, label, alg);
  }
  Result<uint64_t> ChangeCounter() override {
    CMKFS_ASSIGN_OR_RETURN(uint64_t local, local_->ChangeCounter());
    CMKFS_ASSIGN_OR_RETURN(uint64_t remote, remote_->ChangeCounter());
    return local + remote;
  }
  std::vector<Status> CheckUsable(
      std::span<const keystore::UsabilityQuery> queries) override {
    std::vector<keystore::UsabilityQuery> mine[2];
    std::vector<size_t> where[2];
    for (size_t i = 0; i < queries.size(); ++i) {
      const int side = queries[i].key_id.vault == system_ ? 0 : 1;
      mine[side].push_back(queries[i]);
      where[side].push_back(i);
    }
    std::vector<Status> out(queries.size());
    for (int side = 0; side < 2; ++side) {
      if (mine[side].empty()) continue;
      std::vector<Status> got =
          (side == 0 ? local_ : remote_)->CheckUsable(mine[side]);
      for (size_t j = 0; j < got.size() && j < where[side].size(); ++j) {
        out[where[side][j]] = std::move(got[j]);
      }
    }
    return out;
  }

 private:
  KeyStore& For(std::string_view vault) {
    return vault == system_ ? *local_ : *remote_;
  }

  std::string system_;
  std::unique_ptr<KeyStore> local_;
  std::unique_ptr<KeyStore> remote_;
};

}  // namespace

std::unique_ptr<keystore::KeyStore> SplitKeyStore(
    std::string system_vault, std::unique_ptr<keystore::KeyStore> local,
    std::unique_ptr<keystore::KeyStore> remote) {
  return std::make_unique<Split>(std::move(system_vault), std::move(local),
                                 std::move(remote));
}

}  // namespace cmkfs::cli
