// cmkctl's command layer, shared by the cmkctl binary (when no daemon runs)
// and by the daemon's control socket (while it runs), so a command behaves
// the same either way.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/config.h"
#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/status.h"

namespace cmkfs::cli {

struct CommandContext {
  Config config;
  keystore::KeyStore* keystore = nullptr;
  fs::Engine* engine = nullptr;
};

struct CommandOutput {
  int exit_code = 0;
  std::string out;  // stdout text (a table, a JSON document, an id)
  std::string err;  // one line per error, for stderr
};

// Runs one cmkctl command: `args` are the words after the program name,
// global flags included (--config/--state-dir are ignored here: the context
// is already open). Never throws.
CommandOutput RunCommand(const std::vector<std::string>& args,
                         CommandContext& ctx);

// The daemon's control socket: a unix socket created 0600; a peer whose uid
// is neither root nor the daemon's own is refused. Serves requests on its
// own thread until destroyed.
class ControlServer {
 public:
  using Handler =
      std::function<CommandOutput(const std::vector<std::string>& args)>;
  static Result<std::unique_ptr<ControlServer>> Start(
      const std::filesystem::path& socket_path, Handler handler);
  virtual ~ControlServer() = default;
};

// Sends a command to a running daemon. NotFound when no daemon listens on
// `socket_path` (no socket, or a stale one).
Result<CommandOutput> SendControlCommand(
    const std::filesystem::path& socket_path,
    const std::vector<std::string>& args);

// Where the daemon listens: <state_dir>/control.sock.
std::filesystem::path ControlSocketPath(const Config& config);

}  // namespace cmkfs::cli
