// Internal to cmkfs_cli: the command table, argument parsing for one
// command, and output (table, JSON or TSV) shared by the command files.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/cli.h"
#include "json_io.h"

namespace cmkfs::cli {

enum class FlagKind {
  kValue,   // --flag VALUE
  kSwitch,  // --flag, or --flag true|false
  kList,    // --flag A B C (until the next --flag), or --flag A,B,C
};

// What a flag's value (or a positional argument) names, for shell
// completion (complete.cc): where its candidates come from.
enum class Complete {
  kNothing,          // free text, or a new name
  kChoices,          // the '|'-separated words of value_name ("RSA|RSA-HSM")
  kFile,             // a file name (the shell completes it)
  kDirectory,        // a directory name (the shell completes it)
  kVault,            // vault names
  kKey,              // key names of the VAULT argument
  kKeyVersion,       // versions of the VAULT NAME key
  kKeyId,            // cmk://VAULT/keys/NAME[/VERSION] of every key
  kIdentity,         // object ids: DES identities, the vault's policies
  kPermission,       // key permission names
  kDes,              // disk encryption set names
  kDisk,             // disk names
  kSnapshot,         // snapshot names
  kImage,            // image names
  kDiskOrSnapshot,   // disk and snapshot names
  kSnapshotOrImage,  // snapshots/NAME and images/NAME
  kDiskSku,          // Premium_LRS, ...
};

struct FlagSpec {
  std::string_view name;  // "--size"
  FlagKind kind = FlagKind::kValue;
  std::string_view value_name = "";  // "SIZE" for usage text
  Complete complete = Complete::kNothing;
};

struct Invocation;
using CommandFn = Status (*)(Invocation&);

struct CommandSpec {
  std::string_view group;  // "disk"
  std::string_view verb;   // "create"; "" for a single-word command
  std::vector<std::string_view> positionals;  // "DISK", "FILE"
  std::vector<FlagSpec> flags;
  std::string_view summary;
  CommandFn run = nullptr;
  std::vector<std::string_view> aliases = {};  // other verbs
};

// One parsed command line.
struct Invocation {
  const CommandSpec* spec = nullptr;
  CommandContext* ctx = nullptr;
  GlobalFlags globals;
  std::vector<std::string> positional;
  std::map<std::string, std::string, std::less<>> values;  // kValue, kSwitch
  std::map<std::string, std::vector<std::string>, std::less<>> lists;
  CommandOutput output;
  bool usage_error = false;  // set by Usage(): exit 2 instead of 1

  // -o json or -o tsv: print the record, not the table-mode text.
  bool document() const { return globals.output != "table"; }
  const std::string& caller() const { return globals.as_identity; }
  bool Has(std::string_view flag) const {
    return values.count(flag) || lists.count(flag);
  }
  std::optional<std::string> Value(std::string_view flag) const {
    auto it = values.find(flag);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
  // A usage error: exit status 2 and "cmkctl: <message>".
  Status Usage(std::string message);
  // The command's name as typed in the help ("disk create").
  std::string Name() const;
  // Scope of a new resource: global flags, else the config's defaults.
  fs::Scope NewScope() const;
};

// Flag values parsed with core/units (usage error on failure).
Result<uint64_t> SizeFlag(Invocation& inv, std::string_view flag);
Result<bool> BoolFlag(Invocation& inv, std::string_view flag);

// Output helpers (output.cc): write to inv.output.out.
// The document as JSON (-o json) or as TSV rows (-o tsv).
void PrintDocument(Invocation& inv, const Json& doc);
// -o tsv: one line per record of an array (one line for an object), its
// values tab-separated in field order, no header.
std::string TsvText(const Json& doc);
void PrintLine(Invocation& inv, std::string_view line);
// "field  value" rows; arrays of objects follow as sub-tables.
void PrintShow(Invocation& inv, const Json& record);
struct Column {
  std::string_view header;
  std::string_view field;
};
// A header row and one aligned row per record.
void PrintList(Invocation& inv, const Json& records,
               const std::vector<Column>& columns);
// Show as a table or as the JSON document.
void Emit(Invocation& inv, const Json& record);
void EmitList(Invocation& inv, const Json& records,
              const std::vector<Column>& columns);

Json TimeJson(TimePoint t);
Json TimeJson(const std::optional<TimePoint>& t);

// Custody (keystore_commands.cc): the master key's source ("file",
// "passphrase", "tpm2") and where it is; where an RSA-HSM key's private half
// lives (the token, its module, the p11-kit server of a remote token).
std::pair<std::string, std::string> MasterKeyCustody(const Config& config);
std::string TokenCustody(const Config& config);
// In service mode, where a key of `vault` lives ("the vault service at ADDR
// (never on this host)"); nullopt for a vault of this host (embedded mode,
// or the platform's own vault).
std::optional<std::string> ServiceCustody(const Config& config,
                                          std::string_view vault);

// Records, in the storage host's own audit (the platform vault's), an
// operation that reads or moves a customer's data: `operation`
// ("disk.export", ...), the identity it acted as (the DES's, or "platform"),
// the key, and the outcome with its subject ("ok: disk d1 to /x.raw"). The
// local caller is stamped by the store (LocalCallerScope). A failure to
// record is logged, never returned: the operation already happened.
void AuditOnHost(Invocation& inv, std::string_view operation,
                 const std::string& identity, const keystore::KeyId& key,
                 const Status& result, std::string_view subject);

// The command tables (keystore_commands.cc, disk_commands.cc, doctor.cc).
const std::vector<CommandSpec>& KeystoreCommands();
const std::vector<CommandSpec>& DiskCommands();
const std::vector<CommandSpec>& HostCommands();
// Both tables, in the order of the usage text.
std::vector<const CommandSpec*> AllCommands();
// The command `group verb` (or an alias), or the single-word command
// `group`; nullptr when there is none.
const CommandSpec* FindCommand(std::string_view group, std::string_view verb);
bool IsGroup(std::string_view word);
// "--x" or "-x", not a negative number.
bool LooksLikeFlag(std::string_view arg);

// The global flags (services.cc): every spelling, each takes a value.
struct GlobalFlagInfo {
  std::string_view name;     // "--state-dir", "-o"
  Complete complete;         // what the value names
  std::string_view choices;  // kChoices: "table|json|tsv"
};
std::vector<GlobalFlagInfo> GlobalFlagTable();
// The words of a kChoices value name: "RSA|RSA-HSM" -> {"RSA", "RSA-HSM"}.
std::vector<std::string> SplitChoices(std::string_view text);

// ExtractGlobalFlags, and `kept` (if not null) receives, for each word left
// in `args`, its index in the original `args`.
Status ExtractGlobalFlagsIndexed(std::vector<std::string>& args,
                                 GlobalFlags* flags, std::vector<size_t>* kept);

// The usage text of `cmkctl help`.
std::string UsageText();
// True for the commands that need no keystore or engine (help, version, and
// command lines that are usage errors anyway).
bool NeedsServices(const std::vector<std::string>& args);
// True for the commands that run in cmkctl on the configuration alone, never
// in the daemon and without an open keystore (vault migrate-master-key).
bool RunsWithoutServices(const std::vector<std::string>& args);

}  // namespace cmkfs::cli
