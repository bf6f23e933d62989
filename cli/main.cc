// cmkctl: administers cmkfs. Sends the command to a running daemon over its
// control socket, or runs it in-process on the state directory.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "cmkfs/cli.h"
#include "cmkfs/crypto.h"
#include "cmkfs/log.h"
#include "command_support.h"

namespace {

std::atomic<bool> g_cancel{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void OnSigint(int) { g_cancel.store(true); }

void Print(const cmkfs::cli::CommandOutput& out) {
  if (!out.out.empty()) std::fwrite(out.out.data(), 1, out.out.size(), stdout);
  std::fflush(stdout);
  if (!out.err.empty()) std::fwrite(out.err.data(), 1, out.err.size(), stderr);
  std::fflush(stderr);
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "cmkctl: %s\n", message.c_str());
  return code;
}

// Import and export take a while and leave a file or a disk behind; SIGINT
// cancels them cleanly instead of killing the process.
bool IsLongRunning(const std::vector<std::string>& args) {
  if (args.size() < 2) return false;
  if (args[1] == "export") return true;
  if (args[0] == "vault" && args[1] == "audit") {
    for (const auto& a : args) {
      if (a == "--follow") return true;
    }
  }
  if (args[0] == "disk" && args[1] == "create") {
    for (const auto& a : args) {
      if (a == "--import" || a.starts_with("--import=")) return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cmkfs;
  using namespace cmkfs::cli;
  const std::vector<std::string> original(argv + 1, argv + argc);
  if (!original.empty() && original[0] == "__complete") {
    // The bash completion script's question: quiet, never an error.
    InitLogging("off", true).IgnoreError();
    crypto::ProtectProcessSecrets();
    const std::string out =
        CompleteCommandLine({original.begin() + 1, original.end()});
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  std::vector<std::string> words = original;
  GlobalFlags flags;
  if (Status s = ExtractGlobalFlags(words, &flags); !s.ok()) {
    return Fail(2, s.message());
  }
  if (Status s = InitLogging(flags.log_level.value_or("warn"), true); !s.ok()) {
    return Fail(2, "--log-level: " + s.message());
  }
  // Local mode holds DEKs and vault private keys: no core dump may hold them.
  crypto::ProtectProcessSecrets();

  CommandContext ctx;
  ctx.progress_on_tty = ::isatty(STDERR_FILENO) == 1;
  ctx.cancel = &g_cancel;
  ctx.stream_out = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  if (!NeedsServices(original)) {  // help, version, usage errors
    CommandOutput out = RunCommand(original, ctx);
    Print(out);
    return out.exit_code;
  }

  auto config = LoadEffectiveConfig(flags);
  if (!config.ok()) return Fail(1, config.status().message());
  if (!flags.log_level) {
    // The config's level applies to the daemon; the CLI stays quiet.
    InitLogging("warn", true).IgnoreError();
  }

  if (RunsWithoutServices(original)) {
    ctx.config = *config;
    CommandOutput out = RunCommand(original, ctx);
    Print(out);
    return out.exit_code;
  }

  // Forwarded: a SIGINT kills cmkctl, the daemon sees the hang-up and
  // cancels. Local: the handler turns SIGINT into a clean cancel.
  auto reply = SendControlCommand(ControlSocketPath(*config),
                                  AbsoluteFileArgs(original));
  CommandOutput out;
  if (reply.ok()) {
    out = std::move(*reply);
  } else if (reply.status().kind() == ErrorKind::kNotFound) {
    auto services = OpenServices(*config);
    if (!services.ok()) return Fail(1, services.status().message());
    ctx.config = *config;
    ctx.keystore = services->keystore.get();
    ctx.engine = services->engine.get();
    const bool long_running = IsLongRunning(words);
    struct sigaction old_action {};
    if (long_running) {
      struct sigaction sa {};
      sa.sa_handler = OnSigint;
      sigemptyset(&sa.sa_mask);
      ::sigaction(SIGINT, &sa, &old_action);
    }
    {
      LocalCallerScope caller(::getuid(), ::getpid());
      out = RunCommand(original, ctx);
    }
    if (long_running) ::sigaction(SIGINT, &old_action, nullptr);
    if (Status s = services->engine->Flush(); !s.ok() && out.exit_code == 0) {
      out.exit_code = 1;
      out.err += "cmkctl: " + s.message() + "\n";
    }
  } else {
    return Fail(1, reply.status().message());
  }
  Print(out);
  return out.exit_code;
}
