#include "cmkfs/forwarding_keystore.h"

namespace cmkfs::keystore {

KeyStore& ForwardingKeyStore::Route(std::string_view) { return *inner_; }

Result<VaultInfo> ForwardingKeyStore::CreateVault(const VaultSpec& spec) {
  return Route(spec.name).CreateVault(spec);
}
Result<VaultInfo> ForwardingKeyStore::GetVault(std::string_view vault) {
  return Route(vault).GetVault(vault);
}
Result<std::vector<VaultInfo>> ForwardingKeyStore::ListVaults() {
  return inner_->ListVaults();
}
Status ForwardingKeyStore::SetAccessPolicy(std::string_view caller,
                                           std::string_view vault,
                                           std::string_view object_id,
                                           PermissionSet permissions) {
  return Route(vault).SetAccessPolicy(caller, vault, object_id, permissions);
}
Status ForwardingKeyStore::DeleteAccessPolicy(std::string_view caller,
                                              std::string_view vault,
                                              std::string_view object_id) {
  return Route(vault).DeleteAccessPolicy(caller, vault, object_id);
}
Result<std::vector<AuditEntry>> ForwardingKeyStore::ReadAudit(
    std::string_view vault, const AuditFilter& f) {
  return Route(vault).ReadAudit(vault, f);
}
Status ForwardingKeyStore::AppendAudit(std::string_view vault,
                                       const AuditEntry& e) {
  return Route(vault).AppendAudit(vault, e);
}
Result<KeyVersionInfo> ForwardingKeyStore::CreateKey(std::string_view caller,
                                                     std::string_view vault,
                                                     std::string_view name,
                                                     KeyType kty, int bits) {
  return Route(vault).CreateKey(caller, vault, name, kty, bits);
}
Result<KeyVersionInfo> ForwardingKeyStore::ImportKey(std::string_view caller,
                                                     std::string_view vault,
                                                     std::string_view name,
                                                     std::string_view pem,
                                                     KeyType kty) {
  return Route(vault).ImportKey(caller, vault, name, pem, kty);
}
Result<KeyVersionInfo> ForwardingKeyStore::RotateKey(std::string_view caller,
                                                     std::string_view vault,
                                                     std::string_view name) {
  return Route(vault).RotateKey(caller, vault, name);
}
Result<KeyInfo> ForwardingKeyStore::GetKey(std::string_view caller,
                                           std::string_view vault,
                                           std::string_view name) {
  return Route(vault).GetKey(caller, vault, name);
}
Result<KeyVersionInfo> ForwardingKeyStore::GetKeyVersion(
    std::string_view caller, const KeyId& id) {
  return Route(id.vault).GetKeyVersion(caller, id);
}
Result<std::vector<KeyInfo>> ForwardingKeyStore::ListKeys(
    std::string_view caller, std::string_view vault) {
  return Route(vault).ListKeys(caller, vault);
}
Result<KeyVersionInfo> ForwardingKeyStore::UpdateKeyAttributes(
    std::string_view caller, const KeyId& id, const AttributeUpdate& u) {
  return Route(id.vault).UpdateKeyAttributes(caller, id, u);
}
Status ForwardingKeyStore::DeleteKey(std::string_view caller,
                                     std::string_view vault,
                                     std::string_view name) {
  return Route(vault).DeleteKey(caller, vault, name);
}
Status ForwardingKeyStore::RecoverKey(std::string_view caller,
                                      std::string_view vault,
                                      std::string_view name) {
  return Route(vault).RecoverKey(caller, vault, name);
}
Status ForwardingKeyStore::PurgeKey(std::string_view caller,
                                    std::string_view vault,
                                    std::string_view name) {
  return Route(vault).PurgeKey(caller, vault, name);
}
Status ForwardingKeyStore::SetRotationPolicy(std::string_view caller,
                                             std::string_view vault,
                                             std::string_view name,
                                             const RotationPolicy& policy) {
  return Route(vault).SetRotationPolicy(caller, vault, name, policy);
}
Result<std::vector<KeyId>> ForwardingKeyStore::ApplyRotationPolicies() {
  return inner_->ApplyRotationPolicies();
}
Result<std::vector<uint8_t>> ForwardingKeyStore::WrapKey(
    std::string_view caller, const KeyId& id,
    std::span<const uint8_t> plaintext, std::span<const uint8_t> label,
    WrapAlgorithm alg) {
  return Route(id.vault).WrapKey(caller, id, plaintext, label, alg);
}
Result<crypto::SecretBytes> ForwardingKeyStore::UnwrapKey(
    std::string_view caller, const KeyId& id, std::span<const uint8_t> blob,
    std::span<const uint8_t> label, WrapAlgorithm alg) {
  return Route(id.vault).UnwrapKey(caller, id, blob, label, alg);
}
Result<uint64_t> ForwardingKeyStore::ChangeCounter() {
  return inner_->ChangeCounter();
}
std::vector<Status> ForwardingKeyStore::CheckUsable(
    std::span<const UsabilityQuery> queries) {
  return inner_->CheckUsable(queries);
}
Result<std::unique_ptr<ChangeSubscription>>
ForwardingKeyStore::SubscribeChanges(ChangeSubscriber subscriber) {
  return inner_->SubscribeChanges(std::move(subscriber));
}

}  // namespace cmkfs::keystore
