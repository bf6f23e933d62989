// Shell completion: the hidden `cmkctl __complete WORDS...` command. Every
// candidate comes from the command table (commands, flags, what their values
// name) and from the state directory the command line would use.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>

#include "cmkfs/cli.h"
#include "cmkfs/keystore.h"
#include "command_support.h"

namespace cmkfs::cli {

std::vector<std::string> SplitChoices(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t bar = text.find('|', pos);
    if (bar == std::string_view::npos) bar = text.size();
    if (bar > pos) out.emplace_back(text.substr(pos, bar - pos));
    pos = bar + 1;
  }
  return out;
}

namespace {

// Runs a read-only cmkctl command (-o json) and returns its document, or
// null when it fails for any reason.
using Lister = std::function<Json(const std::vector<std::string>& args)>;

// The string field `field` of each object of a list document.
std::vector<std::string> Field(const Json& doc, std::string_view field) {
  std::vector<std::string> out;
  if (!doc.is_array()) return out;
  for (const Json& item : doc) {
    if (!item.is_object()) continue;
    auto it = item.find(std::string(field));
    if (it != item.end() && it->is_string()) out.push_back(*it);
  }
  return out;
}

Complete PositionalComplete(const CommandSpec& spec, size_t index) {
  // A create command's last argument is the new resource's name.
  if (spec.verb == "create" && index + 1 == spec.positionals.size()) {
    return Complete::kNothing;
  }
  const std::string_view name = spec.positionals[index];
  if (name == "VAULT") return Complete::kVault;
  if (name == "NAME") return Complete::kKey;
  if (name == "DES") return Complete::kDes;
  if (name == "DISK") return Complete::kDisk;
  if (name == "SNAPSHOT") return Complete::kSnapshot;
  if (name == "IMAGE") return Complete::kImage;
  if (name == "FILE") return Complete::kFile;
  return Complete::kNothing;
}

class Completer {
 public:
  Completer(std::vector<std::string> globals,
            std::vector<std::string> positionals, Lister list)
      : globals_(std::move(globals)),
        positionals_(std::move(positionals)),
        list_(std::move(list)) {}

  // The candidates for a value that names `what`.
  std::vector<std::string> Values(Complete what, std::string_view choices) {
    switch (what) {
      case Complete::kNothing:
        return {};
      case Complete::kChoices:
        return SplitChoices(choices);
      case Complete::kFile:
        return {":files"};
      case Complete::kDirectory:
        return {":dirs"};
      case Complete::kPermission:
        return keystore::PermissionNames(keystore::kAllPermissions);
      case Complete::kDiskSku: {
        std::vector<std::string> out;
        for (int s = 0; s <= static_cast<int>(fs::DiskSku::kUltraSsdLrs); ++s)
          out.emplace_back(fs::DiskSkuName(static_cast<fs::DiskSku>(s)));
        return out;
      }
      case Complete::kVault:
        return Field(List({"vault", "list"}), "name");
      case Complete::kKey:
        if (positionals_.empty()) return {};
        return Field(List({"key", "list", positionals_[0]}), "name");
      case Complete::kKeyVersion: {
        if (positionals_.size() < 2) return {};
        Json key = List({"key", "show", positionals_[0], positionals_[1]});
        return key.is_object() ? Field(key["versions"], "version")
                               : std::vector<std::string>{};
      }
      case Complete::kKeyId: {
        std::vector<std::string> out;
        for (const auto& vault : Field(List({"vault", "list"}), "name")) {
          Json keys = List({"key", "list", vault});
          for (const auto& name : Field(keys, "name"))
            out.push_back("cmk://" + vault + "/keys/" + name);
          for (const auto& id : Field(keys, "key_id")) out.push_back(id);
        }
        return out;
      }
      case Complete::kIdentity: {
        std::vector<std::string> out = Field(List({"des", "list"}), "identity");
        if (!positionals_.empty()) {
          Json vault = List({"vault", "show", positionals_[0]});
          if (vault.is_object()) {
            for (const auto& id : Field(vault["policies"], "object_id"))
              out.push_back(id);
          }
        }
        return out;
      }
      case Complete::kDes:
        return Field(List({"des", "list"}), "name");
      case Complete::kDisk:
        return Field(List({"disk", "list"}), "name");
      case Complete::kSnapshot:
        return Field(List({"snapshot", "list"}), "name");
      case Complete::kImage:
        return Field(List({"image", "list"}), "name");
      case Complete::kDiskOrSnapshot: {
        std::vector<std::string> out = Values(Complete::kDisk, "");
        for (auto& s : Values(Complete::kSnapshot, "")) out.push_back(s);
        return out;
      }
      case Complete::kSnapshotOrImage: {
        std::vector<std::string> out;
        for (auto& s : Values(Complete::kSnapshot, ""))
          out.push_back("snapshots/" + s);
        for (auto& i : Values(Complete::kImage, ""))
          out.push_back("images/" + i);
        return out;
      }
    }
    return {};
  }

 private:
  Json List(std::vector<std::string> args) {
    args.insert(args.end(), globals_.begin(), globals_.end());
    args.insert(args.end(), {"-o", "json"});
    return list_(args);
  }

  std::vector<std::string> globals_;
  std::vector<std::string> positionals_;
  Lister list_;
};

const GlobalFlagInfo* FindGlobal(const std::vector<GlobalFlagInfo>& table,
                                 std::string_view name) {
  for (const auto& g : table) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

const FlagSpec* FindFlag(const CommandSpec* spec, std::string_view name) {
  if (spec == nullptr) return nullptr;
  for (const auto& f : spec->flags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// What the word at the cursor is, once the words before it are read.
struct Context {
  std::string group;
  const CommandSpec* spec = nullptr;
  bool help = false;     // after `help`: command words only
  bool unknown = false;  // an unknown command: no candidates
  std::vector<std::string> positionals;
  std::vector<std::string> globals;  // global flags seen, for the lister
  const GlobalFlagInfo* global_value = nullptr;  // the word is its value
  const FlagSpec* flag_value = nullptr;          // the word is its value
  const FlagSpec* list = nullptr;  // the word may be one more list value
  bool only_positionals = false;   // after --
};

Context Read(const std::vector<std::string>& words,
             const std::vector<GlobalFlagInfo>& table) {
  Context c;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    const bool last = i + 1 == words.size();
    c.list = nullptr;
    if (!c.only_positionals && w == "--") {
      c.only_positionals = true;
      continue;
    }
    if (!c.only_positionals && LooksLikeFlag(w)) {
      const size_t eq = w.find('=');
      const std::string name = w.substr(0, eq);
      if (const GlobalFlagInfo* g = FindGlobal(table, name)) {
        c.globals.push_back(w);
        if (eq != std::string::npos) continue;
        if (last) {
          c.global_value = g;
        } else {
          c.globals.push_back(words[++i]);
        }
        continue;
      }
      const FlagSpec* f = FindFlag(c.spec, name);
      if (f == nullptr || eq != std::string::npos) continue;
      switch (f->kind) {
        case FlagKind::kValue:
          if (last) {
            c.flag_value = f;
          } else {
            ++i;
          }
          break;
        case FlagKind::kSwitch:
          if (last) {
            c.flag_value = f;
          } else if (words[i + 1] == "true" || words[i + 1] == "false") {
            ++i;
          }
          break;
        case FlagKind::kList:
          while (i + 1 < words.size() && !LooksLikeFlag(words[i + 1])) ++i;
          c.list = f;
          break;
      }
      continue;
    }
    if (c.group.empty() && !c.help && w == "help") {
      c.help = true;
    } else if (c.group.empty()) {
      c.group = w;
      c.spec = FindCommand(w, "");
    } else if (c.unknown) {
      continue;
    } else if (c.spec == nullptr) {
      c.spec = FindCommand(c.group, w);
      c.unknown = c.spec == nullptr;
    } else {
      c.positionals.push_back(w);
    }
  }
  return c;
}

std::vector<std::string> Candidates(const std::vector<std::string>& before,
                                    std::string_view word, const Lister& list) {
  const std::vector<GlobalFlagInfo> table = GlobalFlagTable();
  Context c = Read(before, table);
  if (c.unknown) return {};
  Completer values(c.globals, c.positionals, list);
  if (c.global_value) {
    return values.Values(c.global_value->complete, c.global_value->choices);
  }
  if (c.flag_value) {
    if (c.flag_value->kind == FlagKind::kSwitch) return {"true", "false"};
    return values.Values(c.flag_value->complete, c.flag_value->value_name);
  }
  if (!c.only_positionals && word.starts_with("-")) {
    const size_t eq = word.find('=');
    if (eq != std::string_view::npos) {  // --flag=VALUE: the value alone
      const std::string_view name = word.substr(0, eq);
      if (const GlobalFlagInfo* g = FindGlobal(table, name))
        return values.Values(g->complete, g->choices);
      if (const FlagSpec* f = FindFlag(c.spec, name))
        return values.Values(f->complete, f->value_name);
      return {};
    }
    std::vector<std::string> out;
    if (c.spec) {
      for (const auto& f : c.spec->flags) out.emplace_back(f.name);
    }
    for (const auto& g : table) {
      if (g.name.starts_with("--")) out.emplace_back(g.name);
    }
    out.emplace_back("--help");
    if (c.group.empty()) out.emplace_back("--version");
    return out;
  }
  if (c.list) return values.Values(c.list->complete, c.list->value_name);
  if (c.group.empty()) {
    std::vector<std::string> out;
    for (const CommandSpec* s : AllCommands()) out.emplace_back(s->group);
    if (!c.help) out.insert(out.end(), {"help", "version"});
    return out;
  }
  if (c.spec == nullptr) {
    std::vector<std::string> out;
    for (const CommandSpec* s : AllCommands()) {
      if (s->group == c.group) out.emplace_back(s->verb);
    }
    return out;
  }
  if (c.help || c.positionals.size() >= c.spec->positionals.size()) return {};
  return values.Values(PositionalComplete(*c.spec, c.positionals.size()), "");
}

// Reads the state directory's documents: through the daemon while one runs,
// else from the state directory itself, opened once and only if it exists
// (completion creates nothing). Null on any failure.
class StateLister {
 public:
  Json operator()(const std::vector<std::string>& args) {
    CommandOutput out;
    if (!opened_) Open(args);
    if (daemon_socket_) {
      auto reply = SendControlCommand(*daemon_socket_, args);
      if (!reply.ok()) return nullptr;
      out = std::move(*reply);
    } else if (services_) {
      out = RunCommand(args, ctx_);
    } else {
      return nullptr;
    }
    if (out.exit_code != 0) return nullptr;
    auto doc = ParseJson(out.out);
    return doc.ok() ? std::move(*doc) : Json(nullptr);
  }

 private:
  void Open(const std::vector<std::string>& args) {
    opened_ = true;
    std::vector<std::string> words = args;
    GlobalFlags flags;
    if (!ExtractGlobalFlags(words, &flags).ok()) return;
    auto config = LoadEffectiveConfig(flags);
    if (!config.ok()) return;
    std::error_code ec;
    if (!std::filesystem::is_directory(config->state_dir, ec)) return;
    const auto socket = ControlSocketPath(*config);
    auto reply = SendControlCommand(socket, {"version"});
    if (reply.ok()) {
      daemon_socket_ = socket;
      return;
    }
    if (reply.status().kind() != ErrorKind::kNotFound) return;
    auto services = OpenServices(*config);
    if (!services.ok()) return;
    services_ = std::move(*services);
    ctx_.config = *config;
    ctx_.keystore = services_->keystore.get();
    ctx_.engine = services_->engine.get();
  }

  bool opened_ = false;
  std::optional<std::filesystem::path> daemon_socket_;
  std::optional<Services> services_;
  CommandContext ctx_;
};

// The candidates that start with the word being completed (for --flag=V,
// with V), once each; a name that would not fit on one line is left out.
std::string Format(const std::vector<std::string>& all, std::string_view word) {
  if (all.size() == 1 && all[0].starts_with(":")) return all[0] + "\n";
  if (size_t eq = word.find('=');
      word.starts_with("-") && eq != std::string_view::npos) {
    word.remove_prefix(eq + 1);
  }
  std::string out;
  std::set<std::string, std::less<>> seen;
  for (const auto& c : all) {
    if (c.empty() || !c.starts_with(word) || !seen.insert(c).second) continue;
    if (c.find_first_of(" \t\n\r\v\f") != std::string::npos) continue;
    out += c + "\n";
  }
  return out;
}

}  // namespace

std::string CompleteCommandLine(const std::vector<std::string>& words) {
  if (words.empty()) return "";
  const std::vector<std::string> before(words.begin(), words.end() - 1);
  StateLister lister;
  return Format(Candidates(before, words.back(), std::ref(lister)),
                words.back());
}

std::string CompleteProgramWords(const std::vector<std::string>& words,
                                 const std::vector<ProgramFlag>& flags,
                                 const std::vector<std::string_view>& globals) {
  if (words.empty()) return "";
  std::vector<GlobalFlagInfo> table;
  for (const auto& g : GlobalFlagTable()) {
    if (std::find(globals.begin(), globals.end(), g.name) != globals.end())
      table.push_back(g);
  }
  auto own = [&](std::string_view w) -> const ProgramFlag* {
    for (const auto& f : flags) {
      if (f.name == w) return &f;
    }
    return nullptr;
  };
  const GlobalFlagInfo* global_value = nullptr;
  bool own_value = false;
  bool only_positionals = false;
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    const std::string& w = words[i];
    const bool before_word = i + 2 == words.size();
    if (only_positionals) continue;
    if (w == "--") {
      only_positionals = true;
    } else if (const GlobalFlagInfo* g = FindGlobal(table, w)) {
      if (before_word) global_value = g;
      ++i;
    } else if (const ProgramFlag* f = own(w); f && f->takes_value) {
      own_value = before_word;
      ++i;
    }
  }
  const std::string& word = words.back();
  Completer values(
      {}, {}, [](const std::vector<std::string>&) { return Json(nullptr); });
  std::vector<std::string> all;
  if (global_value) {
    all = values.Values(global_value->complete, global_value->choices);
  } else if (own_value) {
    return "";
  } else if (!only_positionals && word.starts_with("-")) {
    for (const auto& g : table) all.emplace_back(g.name);
    for (const auto& f : flags) all.emplace_back(f.name);
  } else {
    all = {":dirs"};
  }
  return Format(all, word);
}

}  // namespace cmkfs::cli
