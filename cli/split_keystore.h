// Internal to cmkfs_cli: service mode's keystore. The platform's own vault
// (EngineOptions::system_vault, platform-managed keys) stays in the storage
// host's embedded store; every other vault is the vault service's.
#pragma once

#include <memory>
#include <string>

#include "cmkfs/keystore.h"

namespace cmkfs::cli {

// Routes each call by its vault name: `system_vault` to `local`, the rest to
// `remote`. ListVaults lists both; ChangeCounter is the sum of both counters
// (each only grows, so the sum changes whenever either does); CheckUsable
// asks each store about its own keys; ApplyRotationPolicies runs on `local`
// only (cmkvault applies its own). Thread-safe as both stores are.
std::unique_ptr<keystore::KeyStore> SplitKeyStore(
    std::string system_vault, std::unique_ptr<keystore::KeyStore> local,
    std::unique_ptr<keystore::KeyStore> remote);

}  // namespace cmkfs::cli
