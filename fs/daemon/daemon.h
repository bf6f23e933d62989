// The cmkfs daemon: command line, daemonization, and the lifetime of one
// mount (services, FUSE session, control socket, background components).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/cli.h"
#include "cmkfs/status.h"

namespace cmkfs::metrics {
class DaemonMetrics;
}

namespace cmkfs::daemon {

struct DaemonArgs {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  std::filesystem::path mountpoint;  // empty: [mount] mountpoint of the config
  cli::GlobalFlags flags;
  bool foreground = false;
  bool fuse_debug = false;
  std::vector<std::string> fuse_options;  // from -o, split at commas
};

// Parses the words after the program name. InvalidArgument (one line, saying
// what is accepted) for unknown flags or more than one mountpoint.
Result<DaemonArgs> ParseDaemonArgs(std::vector<std::string> args);

std::string DaemonUsage();

// `cmkfs __complete WORDS...` (the bash completion script): the candidates
// for the last word, from cmkfs's flag table (cli::CompleteProgramWords).
std::string CompleteDaemonWords(const std::vector<std::string>& words);

// A long-running part of the daemon started once the mount is up and stopped
// before it goes down (the key watcher will be one). Start and Stop are
// called from the main thread; Stop must return promptly.
class DaemonComponent {
 public:
  virtual ~DaemonComponent() = default;
  virtual std::string_view name() const = 0;
  virtual Status Start(cli::CommandContext& services) = 0;
  virtual void Stop() = 0;
};

// The components this build runs next to the mount: the key watcher and,
// when `metrics` is given ([metrics] listen is not off), the metrics
// listener. `metrics` must outlive the components.
std::vector<std::unique_ptr<DaemonComponent>> MakeComponents(
    const Config& config, metrics::DaemonMetrics* metrics = nullptr);

// The whole program: returns the process exit status. `version` is printed
// by --version ("cmkfs VERSION").
int DaemonMain(int argc, char** argv, std::string_view version);

}  // namespace cmkfs::daemon
