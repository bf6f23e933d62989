#include <gtest/gtest.h>

#include <fstream>

#include "service_host.h"

namespace cmkfs::vault::testing {

Result<cli::Services> OpenServiceModeServices(
    const std::filesystem::path& dir, const std::string& endpoint,
    const std::filesystem::path& credential,
    const std::filesystem::path& credentials_dir) {
  const auto config_file = dir / "cmkfs.toml";
  {
    std::ofstream out(config_file);
    out << "state_dir = \"" << (dir / "state").string() << "\"\n"
        << "[keystore]\nservice = \"" << endpoint << "\"\ncredential = \""
        << credential.string() << "\"\n";
    if (!credentials_dir.empty()) {
      out << "credentials_dir = \"" << credentials_dir.string() << "\"\n";
    }
  }
  cli::GlobalFlags flags;
  flags.config_file = config_file;
  CMKFS_ASSIGN_OR_RETURN(Config config, cli::LoadEffectiveConfig(flags));
  return cli::OpenServices(config);
}

}  // namespace cmkfs::vault::testing
