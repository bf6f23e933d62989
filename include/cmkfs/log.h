// Logging setup. Code logs through spdlog directly, one line per event with
// its context (resource names, key ids with version, never key bytes).
#pragma once

#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs {

// Sets the global level ("trace".."off"); InvalidArgument on an unknown
// level. `to_stderr` picks stderr (daemon in foreground, CLI) over syslog.
Status InitLogging(std::string_view level, bool to_stderr);

}  // namespace cmkfs
