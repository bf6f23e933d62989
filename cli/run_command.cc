// RunCommand: dispatch on the command words and per-command flag parsing
// (the output helpers are in output.cc).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <memory>
#include <system_error>

#include "cmkfs/cli.h"
#include "cmkfs/mutex.h"
#include "cmkfs/units.h"
#include "command_support.h"

#ifndef CMKFS_VERSION
#define CMKFS_VERSION "0.0.0"
#endif

namespace cmkfs::cli {

Status Invocation::Usage(std::string message) {
  usage_error = true;
  return InvalidArgumentError(std::move(message));
}

std::string Invocation::Name() const {
  std::string name(spec->group);
  if (!spec->verb.empty()) name += " " + std::string(spec->verb);
  return name;
}

fs::Scope Invocation::NewScope() const {
  fs::Scope scope;
  scope.subscription =
      globals.subscription.value_or(ctx->config.defaults.subscription);
  scope.resource_group =
      globals.resource_group.value_or(ctx->config.defaults.resource_group);
  scope.region = globals.region.value_or(ctx->config.defaults.region);
  return scope;
}

Result<uint64_t> SizeFlag(Invocation& inv, std::string_view flag) {
  auto text = inv.Value(flag);
  if (!text)
    return inv.Usage("'" + inv.Name() + "' needs " + std::string(flag));
  auto size = ParseSize(*text);
  if (!size.ok())
    return inv.Usage(std::string(flag) + ": " + size.status().message());
  return *size;
}

Result<bool> BoolFlag(Invocation& inv, std::string_view flag) {
  std::string v = inv.Value(flag).value_or("true");
  std::transform(v.begin(), v.end(), v.begin(), ::tolower);
  if (v == "true" || v == "yes" || v == "1" || v == "on") return true;
  if (v == "false" || v == "no" || v == "0" || v == "off") return false;
  return inv.Usage(std::string(flag) + ": expected true or false, got '" +
                   *inv.Value(flag) + "'");
}

std::vector<const CommandSpec*> AllCommands() {
  std::vector<const CommandSpec*> all;
  for (const auto& c : KeystoreCommands()) all.push_back(&c);
  for (const auto& c : DiskCommands()) all.push_back(&c);
  for (const auto& c : HostCommands()) all.push_back(&c);
  return all;
}

bool IsGroup(std::string_view word) {
  for (const CommandSpec* c : AllCommands()) {
    if (c->group == word) return true;
  }
  return false;
}

const CommandSpec* FindCommand(std::string_view group, std::string_view verb) {
  for (const CommandSpec* c : AllCommands()) {
    if (c->group != group) continue;
    if (c->verb.empty()) return c;
    if (c->verb == verb) return c;
    for (auto a : c->aliases) {
      if (a == verb) return c;
    }
  }
  return nullptr;
}

bool LooksLikeFlag(std::string_view arg) {
  return arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9');
}

namespace {

std::string UsageLine(const CommandSpec& spec) {
  // Appended piece by piece: GCC 12 at -O3 flags `" " + std::string(...)`
  // here with a false -Wstringop-overflow.
  std::string line = "cmkctl ";
  line += spec.group;
  if (!spec.verb.empty()) (line += ' ') += spec.verb;
  for (auto p : spec.positionals) (line += ' ') += p;
  for (const auto& f : spec.flags) {
    (line += " [") += f.name;
    if (!f.value_name.empty()) (line += ' ') += f.value_name;
    line += ']';
  }
  return line;
}

std::string VerbsOf(std::string_view group) {
  std::string out;
  for (const CommandSpec* c : AllCommands()) {
    if (c->group != group) continue;
    if (!out.empty()) out += ", ";
    out += std::string(c->verb);
  }
  return out;
}

bool IsHelpWord(std::string_view w) {
  return w == "help" || w == "--help" || w == "-h";
}

bool IsVersionWord(std::string_view w) {
  return w == "version" || w == "--version" || w == "-V";
}

// A file name in a command line: args[index].substr(offset).
struct FileArgRef {
  size_t index;
  size_t offset;
};

bool IsFileValue(std::string_view value_name) { return value_name == "FILE"; }

// Parses the words after the command words against the spec; `files` (if
// not null) receives where the file arguments are.
Status ParseCommandArgs(const std::vector<std::string>& args, size_t start,
                        Invocation& inv,
                        std::vector<FileArgRef>* files = nullptr) {
  const CommandSpec& spec = *inv.spec;
  bool only_positionals = false;
  for (size_t i = start; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (only_positionals || !LooksLikeFlag(arg)) {
      const size_t k = inv.positional.size();
      if (files && k < spec.positionals.size() &&
          IsFileValue(spec.positionals[k])) {
        files->push_back({i, 0});
      }
      inv.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positionals = true;
      continue;
    }
    std::string_view name = arg;
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = std::string_view(arg).substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const FlagSpec* flag = nullptr;
    for (const auto& f : spec.flags) {
      if (f.name == name) flag = &f;
    }
    if (flag == nullptr) {
      std::string accepted;
      for (const auto& f : spec.flags) {
        if (!accepted.empty()) accepted += ", ";
        accepted += std::string(f.name);
      }
      return inv.Usage("unknown flag '" + std::string(name) + "' for '" +
                       inv.Name() + "'; accepted: " +
                       (accepted.empty() ? std::string("no flags") : accepted) +
                       " (and the global flags, see 'cmkctl help')");
    }
    std::string key(flag->name);
    switch (flag->kind) {
      case FlagKind::kValue:
        if (inline_value) {
          if (files && IsFileValue(flag->value_name)) {
            files->push_back({i, name.size() + 1});
          }
          inv.values[key] = *inline_value;
        } else if (i + 1 < args.size()) {
          if (files && IsFileValue(flag->value_name)) {
            files->push_back({i + 1, 0});
          }
          inv.values[key] = args[++i];
        } else {
          return inv.Usage("flag '" + key + "' for '" + inv.Name() +
                           "' needs a value (" + std::string(flag->value_name) +
                           ")");
        }
        break;
      case FlagKind::kSwitch:
        if (inline_value) {
          inv.values[key] = *inline_value;
        } else if (i + 1 < args.size() &&
                   (args[i + 1] == "true" || args[i + 1] == "false")) {
          inv.values[key] = args[++i];
        } else {
          inv.values[key] = "true";
        }
        break;
      case FlagKind::kList: {
        std::vector<std::string>& list = inv.lists[key];
        auto add = [&](std::string_view word) {
          size_t pos = 0;
          while (pos <= word.size()) {
            size_t comma = word.find(',', pos);
            if (comma == std::string_view::npos) comma = word.size();
            std::string_view part = word.substr(pos, comma - pos);
            while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
            while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
            if (!part.empty()) list.emplace_back(part);
            pos = comma + 1;
          }
        };
        if (inline_value) add(*inline_value);
        while (i + 1 < args.size() && !LooksLikeFlag(args[i + 1])) {
          add(args[++i]);
        }
        if (list.empty()) {
          return inv.Usage("flag '" + key + "' for '" + inv.Name() +
                           "' needs one or more values (" +
                           std::string(flag->value_name) + ")");
        }
        break;
      }
    }
  }
  if (inv.positional.size() != spec.positionals.size()) {
    std::string what;
    if (inv.positional.size() < spec.positionals.size()) {
      what = "'" + inv.Name() + "' needs " +
             std::string(spec.positionals[inv.positional.size()]);
    } else {
      what = "'" + inv.Name() + "' got an unexpected argument '" +
             inv.positional[spec.positionals.size()] + "'";
    }
    return inv.Usage(what + "; usage: " + UsageLine(spec));
  }
  return Status::Ok();
}

CommandOutput UsageError(std::string message) {
  CommandOutput out;
  out.exit_code = 2;
  out.err = "cmkctl: " + message + "\n";
  return out;
}

std::string CommandHelp(const CommandSpec& spec) {
  std::string text = "usage: " + UsageLine(spec) + "\n";
  if (!spec.summary.empty()) text += "\n" + std::string(spec.summary) + "\n";
  return text;
}

}  // namespace

std::string UsageText() {
  std::string text =
      "usage: cmkctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n"
      "\n"
      "Administers cmkfs: key vaults and keys, disk encryption sets, and\n"
      "disks, snapshots and images. While a cmkfs daemon runs on the state\n"
      "directory, commands are sent to it over its control socket.\n"
      "\n"
      "Global flags (before or after the command words):\n"
      "  --config FILE          config file (default $CMKFS_CONFIG, else "
      "/etc/cmkfs/cmkfs.toml)\n"
      "  --state-dir DIR        state directory (default $CMKFS_STATE_DIR, "
      "else the config's)\n"
      "  -o, --output FORMAT    table (default), json or tsv\n"
      "  --as OBJECT_ID         identity calling the keystore (default: vault "
      "admin)\n"
      "  --subscription SUB     scope of new resources (default from config)\n"
      "  --resource-group RG    (for 'disk move': the target resource group)\n"
      "  --region REGION\n"
      "  --log-level LEVEL      trace|debug|info|warn|error|off (default "
      "warn)\n"
      "\n"
      "Commands:\n";
  std::vector<std::vector<std::string>> rows;
  for (const CommandSpec* c : AllCommands()) {
    rows.push_back({"  " + UsageLine(*c), std::string(c->summary)});
  }
  for (const auto& row : rows) text += row[0] + "\n      " + row[1] + "\n";
  text +=
      "  cmkctl version\n"
      "  cmkctl help [COMMAND]\n"
      "\n"
      "Sizes: 4096, 64M, 10G, 1T. Times: RFC 3339. Durations: P90D, PT1H, "
      "30s, 5m, 1h.\n"
      "Exit status: 0 ok, 1 failed (one line on stderr), 2 usage error.\n";
  return text;
}

bool NeedsServices(const std::vector<std::string>& original) {
  std::vector<std::string> args = original;
  GlobalFlags flags;
  if (!ExtractGlobalFlags(args, &flags).ok() || args.empty()) return false;
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") return false;
  }
  if (IsHelpWord(args[0]) || IsVersionWord(args[0])) return false;
  if (!IsGroup(args[0])) return false;
  const CommandSpec* spec =
      FindCommand(args[0], args.size() > 1 ? std::string_view(args[1]) : "");
  return spec != nullptr;
}

bool RunsWithoutServices(const std::vector<std::string>& original) {
  std::vector<std::string> args = original;
  GlobalFlags flags;
  if (!ExtractGlobalFlags(args, &flags).ok() || args.size() < 2) return false;
  return args[0] == "vault" && args[1] == "migrate-master-key";
}

std::vector<std::string> AbsoluteFileArgs(
    const std::vector<std::string>& original) {
  std::vector<std::string> words = original;
  GlobalFlags globals;
  std::vector<size_t> kept;
  if (!ExtractGlobalFlagsIndexed(words, &globals, &kept).ok() ||
      words.empty() || !IsGroup(words[0])) {
    return original;
  }
  const bool has_verb = words.size() > 1 && !LooksLikeFlag(words[1]);
  const CommandSpec* spec = FindCommand(words[0], has_verb ? words[1] : "");
  if (spec == nullptr) return original;
  Invocation inv;
  inv.spec = spec;
  std::vector<FileArgRef> files;
  if (!ParseCommandArgs(words, spec->verb.empty() ? 1 : 2, inv, &files).ok()) {
    return original;
  }
  std::vector<std::string> out = original;
  for (const FileArgRef& f : files) {
    std::string& word = out[kept[f.index]];
    const std::string value = word.substr(f.offset);
    if (value.empty()) continue;
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(value, ec);
    if (!ec) word = word.substr(0, f.offset) + abs.string();
  }
  return out;
}

CommandOutput RunCommand(const std::vector<std::string>& original,
                         CommandContext& ctx) {
  try {
    std::vector<std::string> args = original;
    Invocation inv;
    inv.ctx = &ctx;
    if (Status s = ExtractGlobalFlags(args, &inv.globals); !s.ok()) {
      return UsageError(s.message());
    }
    if (args.empty()) {
      CommandOutput out = UsageError("no command given; run 'cmkctl help'");
      return out;
    }
    const std::string& first = args[0];
    if (IsVersionWord(first)) {
      CommandOutput out;
      if (!inv.document()) {
        out.out = "cmkctl " CMKFS_VERSION "\n";
        return out;
      }
      inv.output = {};
      PrintDocument(inv, Json{{"version", CMKFS_VERSION}});
      return std::move(inv.output);
    }
    if (IsHelpWord(first)) {
      CommandOutput out;
      if (args.size() >= 2) {
        const CommandSpec* spec = FindCommand(
            args[1], args.size() > 2 ? std::string_view(args[2]) : "");
        if (spec) {
          out.out = CommandHelp(*spec);
          return out;
        }
      }
      out.out = UsageText();
      return out;
    }
    if (!IsGroup(first)) {
      if (LooksLikeFlag(first)) {
        return UsageError("unknown flag '" + first + "'; run 'cmkctl help'");
      }
      return UsageError("unknown command '" + first + "'; run 'cmkctl help'");
    }
    bool has_verb = args.size() > 1 && !LooksLikeFlag(args[1]);
    const CommandSpec* spec = FindCommand(first, has_verb ? args[1] : "");
    if (spec == nullptr) {
      if (!has_verb) {
        if (args.size() > 1 && IsHelpWord(args[1])) {
          CommandOutput out;
          out.out = UsageText();
          return out;
        }
        return UsageError("'" + first + "' needs a subcommand; accepted: " +
                          VerbsOf(first) + "; run 'cmkctl help'");
      }
      return UsageError("unknown command '" + first + " " + args[1] +
                        "'; run 'cmkctl help'");
    }
    inv.spec = spec;
    size_t start = spec->verb.empty() ? 1 : 2;
    for (size_t i = start; i < args.size(); ++i) {
      if (args[i] == "--help" || args[i] == "-h") {
        CommandOutput out;
        out.out = CommandHelp(*spec);
        return out;
      }
      if (args[i] == "--") break;
    }
    if (Status s = ParseCommandArgs(args, start, inv); !s.ok()) {
      return UsageError(s.message());
    }
    if ((ctx.keystore == nullptr || ctx.engine == nullptr) &&
        !RunsWithoutServices(args)) {
      CommandOutput out;
      out.exit_code = 1;
      out.err = "cmkctl: internal: '" + inv.Name() +
                "' needs the keystore and the engine, which are not open\n";
      return out;
    }
    Status s = spec->run(inv);
    if (!s.ok()) {
      inv.output.exit_code = inv.usage_error                     ? 2
                             : s.kind() == ErrorKind::kCancelled ? 130
                                                                 : 1;
      // One line, whatever the message quotes.
      inv.output.err += "cmkctl: " + EscapeControl(s.message()) + "\n";
    }
    return std::move(inv.output);
  } catch (const std::exception& e) {
    CommandOutput out;
    out.exit_code = 1;
    out.err = std::string("cmkctl: internal error: ") + e.what() + "\n";
    return out;
  } catch (...) {
    CommandOutput out;
    out.exit_code = 1;
    out.err = "cmkctl: internal error\n";
    return out;
  }
}

bool IsDataCopyCommand(const std::vector<std::string>& original) {
  std::vector<std::string> args = original;
  GlobalFlags flags;
  if (!ExtractGlobalFlags(args, &flags).ok() || args.size() < 2) return false;
  const std::string& group = args[0];
  const std::string& verb = args[1];
  if ((group == "disk" || group == "snapshot" || group == "image") &&
      verb == "export") {
    return true;
  }
  if (group != "disk" || verb != "create") return false;
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--") break;
    if (args[i] == "--import" || args[i].starts_with("--import=")) return true;
  }
  return false;
}

LocalCallerScope::LocalCallerScope(uid_t uid, pid_t pid)
    : scope_("uid:" + std::to_string(uid) + " pid:" + std::to_string(pid), "") {
}

void AuditOnHost(Invocation& inv, std::string_view operation,
                 const std::string& identity, const keystore::KeyId& key,
                 const Status& result, std::string_view subject) {
  keystore::AuditEntry e;
  e.identity = identity.empty() ? "platform" : identity;
  e.operation = std::string(operation);
  e.key_id = key.ToString();
  e.result = (result.ok() ? std::string("ok") : "error: " + result.message()) +
             "; " + std::string(subject);
  const std::string vault = fs::EngineOptions().system_vault;
  if (Status s = inv.ctx->keystore->AppendAudit(vault, e); !s.ok()) {
    spdlog::error("cannot record {} ({}) in the audit of {}: {}", operation,
                  subject, vault, s.message());
  }
}

ControlServer::CancellableHandler DaemonCommandHandler(CommandContext ctx,
                                                       CommandRunner run) {
  // One turn for the control plane only: data copies never take it. A
  // mutex + condition variable rather than std::timed_mutex, whose
  // try_lock_for (pthread_mutex_clocklock) GCC 12's TSan does not intercept.
  struct Turn {
    Mutex mu;
    CondVar cv;
    bool busy GUARDED_BY(mu) = false;
  };
  auto turn = std::make_shared<Turn>();
  return [ctx = std::move(ctx), run = std::move(run), turn](
             const std::vector<std::string>& args,
             const std::atomic<bool>& cancel) {
    CommandContext mine = ctx;
    mine.cancel = &cancel;
    if (IsDataCopyCommand(args)) return run(args, mine);
    {
      MutexLock lock(&turn->mu);
      while (!cancel && turn->busy) {
        turn->cv.WaitFor(&turn->mu, std::chrono::milliseconds(20));
      }
      // The client is gone: nobody would see the result, and a command sent
      // long ago (a revocation undone since, say) must not run late.
      if (cancel) {
        CommandOutput dropped;
        dropped.exit_code = 130;
        dropped.err = "cmkctl: the client hung up before the command ran\n";
        return dropped;
      }
      turn->busy = true;
    }
    struct Release {
      Turn& t;
      ~Release() {
        {
          MutexLock lock(&t.mu);
          t.busy = false;
        }
        t.cv.Signal();
      }
    } release{*turn};
    return run(args, mine);
  };
}

}  // namespace cmkfs::cli
