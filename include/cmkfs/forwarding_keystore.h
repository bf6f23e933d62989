// A KeyStore that passes every call on to another KeyStore: the base of the
// decorators (metrics timing, the split between the local system vault and
// the vault service, the watcher tests' fault injection), which override
// only the calls they change.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "cmkfs/keystore.h"

namespace cmkfs::keystore {

class ForwardingKeyStore : public KeyStore {
 public:
  // Forwards to `inner`, which it does not own and which must outlive it.
  explicit ForwardingKeyStore(KeyStore* inner) : inner_(inner) {}
  // Forwards to `inner`, which it owns.
  explicit ForwardingKeyStore(std::unique_ptr<KeyStore> inner)
      : owned_(std::move(inner)), inner_(owned_.get()) {}

  Result<VaultInfo> CreateVault(const VaultSpec& spec) override;
  Result<VaultInfo> GetVault(std::string_view vault) override;
  Result<std::vector<VaultInfo>> ListVaults() override;
  Status SetAccessPolicy(std::string_view caller, std::string_view vault,
                         std::string_view object_id,
                         PermissionSet permissions) override;
  Status DeleteAccessPolicy(std::string_view caller, std::string_view vault,
                            std::string_view object_id) override;
  Result<std::vector<AuditEntry>> ReadAudit(std::string_view vault,
                                            const AuditFilter& f) override;
  Status AppendAudit(std::string_view vault, const AuditEntry& e) override;
  Result<KeyVersionInfo> CreateKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name, KeyType kty,
                                   int bits) override;
  Result<KeyVersionInfo> ImportKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name, std::string_view pem,
                                   KeyType kty) override;
  Result<KeyVersionInfo> RotateKey(std::string_view caller,
                                   std::string_view vault,
                                   std::string_view name) override;
  Result<KeyInfo> GetKey(std::string_view caller, std::string_view vault,
                         std::string_view name) override;
  Result<KeyVersionInfo> GetKeyVersion(std::string_view caller,
                                       const KeyId& id) override;
  Result<std::vector<KeyInfo>> ListKeys(std::string_view caller,
                                        std::string_view vault) override;
  Result<KeyVersionInfo> UpdateKeyAttributes(std::string_view caller,
                                             const KeyId& id,
                                             const AttributeUpdate& u) override;
  Status DeleteKey(std::string_view caller, std::string_view vault,
                   std::string_view name) override;
  Status RecoverKey(std::string_view caller, std::string_view vault,
                    std::string_view name) override;
  Status PurgeKey(std::string_view caller, std::string_view vault,
                  std::string_view name) override;
  Status SetRotationPolicy(std::string_view caller, std::string_view vault,
                           std::string_view name,
                           const RotationPolicy& policy) override;
  Result<std::vector<KeyId>> ApplyRotationPolicies() override;
  Result<std::vector<uint8_t>> WrapKey(std::string_view caller, const KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       WrapAlgorithm alg) override;
  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        WrapAlgorithm alg) override;
  Result<uint64_t> ChangeCounter() override;
  std::vector<Status> CheckUsable(
      std::span<const UsabilityQuery> queries) override;
  Result<std::unique_ptr<ChangeSubscription>> SubscribeChanges(
      ChangeSubscriber subscriber) override;

 protected:
  // The store a call about `vault` goes to: the wrapped one, unless a
  // subclass routes vaults to several stores. Calls that name no vault go
  // to the wrapped store.
  virtual KeyStore& Route(std::string_view vault);
  KeyStore& inner() { return *inner_; }

 private:
  std::unique_ptr<KeyStore> owned_;
  KeyStore* const inner_;
};

}  // namespace cmkfs::keystore
