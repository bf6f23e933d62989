// cmkctl's command layer, shared by the cmkctl binary (when no daemon runs)
// and by the daemon's control socket (while it runs), so a command behaves
// the same either way.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/config.h"
#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/status.h"

namespace cmkfs::cli {

// Flags common to every cmkctl command and to cmkfs (CLI.md).
struct GlobalFlags {
  std::optional<std::filesystem::path> config_file;  // --config
  std::optional<std::filesystem::path> state_dir;    // --state-dir
  std::string output = "table";                      // -o table|json|tsv
  std::string as_identity;                           // --as ("" = admin)
  // --as FILE (a path starting with /, ./ or ../): the vault credential to use
  // in service mode ([keystore] service); replaces [keystore] credential.
  std::optional<std::filesystem::path> as_credential;
  std::optional<std::string> subscription;    // --subscription
  std::optional<std::string> resource_group;  // --resource-group
  std::optional<std::string> region;          // --region
  std::optional<std::string> log_level;       // --log-level
};

// Removes the global flags from `args` wherever they stand (before or after
// the command words) and fills `flags`. InvalidArgument for a flag without
// its value or an -o other than table|json|tsv.
Status ExtractGlobalFlags(std::vector<std::string>& args, GlobalFlags* flags);

// The effective configuration: --config, else $CMKFS_CONFIG, else
// /etc/cmkfs/cmkfs.toml if it exists, else built-in defaults; then the state
// directory from --state-dir, else $CMKFS_STATE_DIR, else the config's; then
// Config::ResolveDefaults().
Result<Config> LoadEffectiveConfig(const GlobalFlags& flags);

// The keystore (<state_dir>/vault unless configured) and the engine
// (<state_dir>) of one state directory, opened together. Engine Busy when a
// daemon (or another cmkctl) holds the state directory.
// The trust checks of docs/threat-model.md on the state directory (created
// 0700 if missing), the keystore directory and the master key's directory:
// PermissionDenied naming the path, its owner and mode. OpenServices runs it.
Status CheckStateFiles(const Config& config);

// The keystore options of `config` (master key source, TPM, PKCS#11; the
// HSM backend is enabled when the module and the PIN file exist).
Result<keystore::KeyStoreOptions> KeyStoreOptionsFor(const Config& config);

// The daemon's one start-up warning about where the vault master key lives:
// a key file on the filesystem of the data (with the fix), or a key file
// left behind after master_key = tpm2. Empty when there is nothing to say.
std::string MasterKeyPostureWarning(const Config& config);

struct Services {
  std::unique_ptr<keystore::KeyStore> keystore;
  std::unique_ptr<fs::Engine> engine;
};
// `wrap_keystore`, when given, wraps the opened keystore before the engine
// is opened on it (the daemon's metrics time wraps and unwraps this way).
using KeyStoreWrapper = std::function<std::unique_ptr<keystore::KeyStore>(
    std::unique_ptr<keystore::KeyStore>)>;
Result<Services> OpenServices(const Config& config,
                              const KeyStoreWrapper& wrap_keystore = {});

struct CommandContext {
  Config config;
  keystore::KeyStore* keystore = nullptr;
  fs::Engine* engine = nullptr;
  // Set to true (SIGINT, or the control client hung up) to cancel a long
  // operation (disk import/export); nullptr = not cancellable.
  const std::atomic<bool>* cancel = nullptr;
  // Draw a progress bar on stderr during import/export (cmkctl on a TTY);
  // otherwise one final line is added to CommandOutput::err.
  bool progress_on_tty = false;
  // Where a command that runs until cancelled (vault audit --follow) writes
  // each piece of output as it comes; empty: such a command is refused.
  std::function<void(std::string_view)> stream_out;
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

// Who runs a command on this host, as the kernel says (SO_PEERCRED of the
// control socket, or the cmkctl process itself): every audit entry the
// embedded store writes on this thread while it lives names
// "uid:UID pid:PID" as its caller (AuditEntry::caller_object_id, with an
// empty fingerprint). The vault service stamps its own entries with the
// caller's certificate instead.
class LocalCallerScope {
 public:
  LocalCallerScope(uid_t uid, pid_t pid);
  LocalCallerScope(const LocalCallerScope&) = delete;
  LocalCallerScope& operator=(const LocalCallerScope&) = delete;

 private:
  keystore::ScopedAuditCaller scope_;
};

// Bounds of the control server (docs/cli.md, "Control socket protocol").
// Connections cost no thread while they send their request; a command runs
// on a thread of its own, so at most max_connections command threads exist.
struct ControlLimits {
  // More connections at once are refused with a one-line error.
  size_t max_connections = 64;
  // A connection that has not sent its whole request by then is closed.
  std::chrono::milliseconds request_timeout{10000};
};

// The daemon's control socket: a unix socket created 0600; a peer whose uid
// is neither root nor the daemon's own is refused. Serves requests on its
// own thread until destroyed. A request whose client hangs up before its
// handler starts is dropped.
class ControlServer {
 public:
  using Handler =
      std::function<CommandOutput(const std::vector<std::string>& args)>;
  static Result<std::unique_ptr<ControlServer>> Start(
      const std::filesystem::path& socket_path, Handler handler);
  // Same, and `cancel` turns true when the client hangs up (e.g. cmkctl got
  // SIGINT) or the server shuts down; pass it as CommandContext::cancel.
  using CancellableHandler = std::function<CommandOutput(
      const std::vector<std::string>& args, const std::atomic<bool>& cancel)>;
  static Result<std::unique_ptr<ControlServer>> StartCancellable(
      const std::filesystem::path& socket_path, CancellableHandler handler,
      ControlLimits limits = {});
  virtual ~ControlServer() = default;
};

// The daemon's control-socket handler: runs each command with `run` (by
// default RunCommand) on a copy of `ctx` whose cancel flag is the client's.
// Data copies (disk create --import, disk/snapshot/image export) run at once,
// concurrently; every other command runs one at a time, never queued behind a
// data copy. A command whose client hangs up while it waits for its turn is
// dropped, not run.
using CommandRunner = std::function<CommandOutput(
    const std::vector<std::string>& args, CommandContext& ctx)>;
ControlServer::CancellableHandler DaemonCommandHandler(
    CommandContext ctx, CommandRunner run = RunCommand);
// Whether `args` (cmkctl's words) ask for a data copy (see above).
bool IsDataCopyCommand(const std::vector<std::string>& args);

// Sends a command to a running daemon. NotFound when no daemon listens on
// `socket_path` (no socket, or a stale one).
Result<CommandOutput> SendControlCommand(
    const std::filesystem::path& socket_path,
    const std::vector<std::string>& args);

// `args` with each file argument made absolute against the current
// directory, for a daemon that runs in another one. File arguments are found
// by their place in the command table (a FILE positional, the value of a flag
// whose value is a FILE), never by matching text; every other word is kept
// as it is, and a command line that does not parse is returned unchanged.
std::vector<std::string> AbsoluteFileArgs(const std::vector<std::string>& args);

// Where the daemon listens: <state_dir>/control.sock.
std::filesystem::path ControlSocketPath(const Config& config);

// Shell completion (docs/cli.md, "Shell completion"): `words` are the words
// after the program name up to the cursor, the last one being the word to
// complete (maybe empty). Returns the candidates that start with it, one a
// line, or the single line ":files" / ":dirs" when a file or directory name
// is wanted. Resource names (vaults, keys, DES, disks, snapshots, images)
// come from the state directory the command line would use (--state-dir,
// --config, the environment; through the daemon while one runs), read as
// `cmkctl ... list` reads them; a state directory that does not exist is not
// created. Never fails: anything that goes wrong gives no candidates.
std::string CompleteCommandLine(const std::vector<std::string>& words);

// The same for a program without commands (cmkfs): its own `flags`, the
// global flags named in `globals` (their values complete as for cmkctl), and
// a directory for any other word.
struct ProgramFlag {
  std::string_view name;
  bool takes_value = false;
};
std::string CompleteProgramWords(const std::vector<std::string>& words,
                                 const std::vector<ProgramFlag>& flags,
                                 const std::vector<std::string_view>& globals);

}  // namespace cmkfs::cli
