// A host in service mode for the vault tests: cmkctl's and cmkfs's
// composition root (cli::OpenServices) on a config naming the endpoint.
#pragma once

#include <filesystem>
#include <string>

#include "cmkfs/cli.h"

namespace cmkfs::vault::testing {

// Writes DIR/cmkfs.toml (state_dir DIR/state, [keystore] service, credential
// and, when not empty, credentials_dir) and opens its services.
Result<cli::Services> OpenServiceModeServices(
    const std::filesystem::path& dir, const std::string& endpoint,
    const std::filesystem::path& credential,
    const std::filesystem::path& credentials_dir = {});

}  // namespace cmkfs::vault::testing
