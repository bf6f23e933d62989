// The only file that sees the version and commit definitions, so a new
// commit recompiles nothing else.
#include "daemon_metrics.h"

#ifndef CMKFS_VERSION
#error "CMKFS_VERSION must be defined (fs/metrics/CMakeLists.txt)"
#endif
#ifndef CMKFS_GIT_COMMIT
#define CMKFS_GIT_COMMIT "unknown"
#endif

namespace cmkfs::metrics {

std::string_view BuildVersion() { return CMKFS_VERSION; }
std::string_view BuildGitCommit() { return CMKFS_GIT_COMMIT; }

}  // namespace cmkfs::metrics
