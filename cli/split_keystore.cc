#include "split_keystore.h"

#include "cmkfs/forwarding_keystore.h"

namespace cmkfs::cli {
namespace {

using keystore::KeyId;
using keystore::KeyStore;

// Calls about the system vault go to `local`, every other call to `remote`.
class Split final : public keystore::ForwardingKeyStore {
 public:
  Split(std::string system_vault, std::unique_ptr<KeyStore> local,
        std::unique_ptr<KeyStore> remote)
      : ForwardingKeyStore(std::move(remote)),
        system_(std::move(system_vault)),
        local_(std::move(local)) {}

  Result<std::vector<keystore::VaultInfo>> ListVaults() override {
    CMKFS_ASSIGN_OR_RETURN(auto out, inner().ListVaults());
    CMKFS_ASSIGN_OR_RETURN(auto local, local_->ListVaults());
    for (auto& v : local) {
      if (v.spec.name == system_) out.push_back(std::move(v));
    }
    return out;
  }
  Result<std::vector<KeyId>> ApplyRotationPolicies() override {
    return local_->ApplyRotationPolicies();
  }
  Result<uint64_t> ChangeCounter() override {
    CMKFS_ASSIGN_OR_RETURN(uint64_t local, local_->ChangeCounter());
    CMKFS_ASSIGN_OR_RETURN(uint64_t remote, inner().ChangeCounter());
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
          (side == 0 ? *local_ : inner()).CheckUsable(mine[side]);
      for (size_t j = 0; j < got.size() && j < where[side].size(); ++j) {
        out[where[side][j]] = std::move(got[j]);
      }
    }
    return out;
  }

 private:
  KeyStore& Route(std::string_view vault) override {
    return vault == system_ ? *local_ : inner();
  }

  std::string system_;
  std::unique_ptr<KeyStore> local_;
};

}  // namespace

std::unique_ptr<keystore::KeyStore> SplitKeyStore(
    std::string system_vault, std::unique_ptr<keystore::KeyStore> local,
    std::unique_ptr<keystore::KeyStore> remote) {
  return std::make_unique<Split>(std::move(system_vault), std::move(local),
                                 std::move(remote));
}

}  // namespace cmkfs::cli
