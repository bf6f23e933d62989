// cmkvault: the key vault service (docs/vault-api.md, man page cmkvault(8)).
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <toml++/toml.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cmkfs/file_trust.h"
#include "cmkfs/log.h"
#include "cmkfs/units.h"
#include "vault/service_state.h"
#include "vault/transport/transport.h"

namespace cmkfs::vault {
namespace {

constexpr char kUsage[] =
    "usage: cmkvault [--config FILE] [--state-dir DIR] COMMAND\n"
    "  init [--admin-out FILE] [--admin-name NAME] [--server-name DNS]...\n"
    "      create the state directory, its CA, server certificate and the\n"
    "      first admin identity (bundle written to FILE, default\n"
    "      DIR/admin.pem)\n"
    "  serve [--listen ADDR]...   serve the vault (ADDR host:port or "
    "unix:/path)\n"
    "  identity issue NAME --out FILE [--admin|--host] [--days N]\n"
    "                 [--object-id ID]\n"
    "      (--host: a storage host, which may only mint DES identities;\n"
    "       --object-id: for an identity made elsewhere)\n"
    "  identity revoke OBJECT-ID\n"
    "  identity list\n"
    "  version\n";

struct Options {
  std::filesystem::path state_dir = "/var/lib/cmkvault";
  std::vector<std::string> listen;
  std::string log_level = "info";
  std::vector<uid_t> unix_peers;  // besides root and the service's own uid
};

// A uid from a user name or a number, for unix_peers.
Result<uid_t> PeerUid(const toml::node& item, const std::string& where) {
  if (item.is_integer()) {
    const int64_t v = item.as_integer()->get();
    if (v >= 0 && v < (1ll << 32) - 1) return static_cast<uid_t>(v);
  } else if (item.is_string()) {
    const std::string name = item.as_string()->get();
    passwd pw{};
    passwd* found = nullptr;
    char buf[4096];
    if (::getpwnam_r(name.c_str(), &pw, buf, sizeof(buf), &found) == 0 &&
        found != nullptr) {
      return found->pw_uid;
    }
    return InvalidArgumentError(where + ": key 'unix_peers': no user '" +
                                EscapeControl(name) + "' on this host");
  }
  return InvalidArgumentError(
      where +
      ": key 'unix_peers': expected an array of user names or uids such as "
      "[\"cmkfs\", 1001]");
}

int Fail(const Status& s, int code = 1) {
  std::fprintf(stderr, "cmkvault: %s\n", s.message().c_str());
  return code;
}

int Usage(const std::string& what) {
  std::fprintf(stderr, "cmkvault: %s\n%s", what.c_str(), kUsage);
  return 2;
}

Status LoadConfig(const std::filesystem::path& path, bool must_exist,
                  Options* o) {
  Result<std::filesystem::path> trusted =
      CheckTrustedFile(path, "cmkvault config file", FileSecrecy::kShared);
  if (!trusted.ok()) {
    if (!must_exist && trusted.status().kind() == ErrorKind::kNotFound) {
      return Status::Ok();
    }
    return trusted.status();
  }
  toml::table t;
  try {
    t = toml::parse_file(trusted->string());
  } catch (const toml::parse_error& e) {
    return InvalidArgumentError(path.string() + ":" +
                                std::to_string(e.source().begin.line) + ": " +
                                std::string(e.description()));
  }
  for (const auto& [key, node] : t) {
    const std::string k(key.str());
    const std::string where =
        path.string() + ":" + std::to_string(key.source().begin.line);
    if (k == "state_dir" && node.is_string()) {
      o->state_dir = node.as_string()->get();
    } else if (k == "log_level" && node.is_string()) {
      o->log_level = node.as_string()->get();
    } else if (k == "listen" && node.is_array()) {
      for (const auto& item : *node.as_array()) {
        if (!item.is_string()) {
          return InvalidArgumentError(
              where +
              ": key 'listen': expected an array of strings such as "
              "[\"127.0.0.1:7443\", \"unix:/run/cmkvault/sock\"]");
        }
        o->listen.push_back(item.as_string()->get());
      }
    } else if (k == "unix_peers" && node.is_array()) {
      for (const auto& item : *node.as_array()) {
        CMKFS_ASSIGN_OR_RETURN(uid_t uid, PeerUid(item, where));
        o->unix_peers.push_back(uid);
      }
    } else {
      return InvalidArgumentError(
          where + ": unknown key or wrong type '" + k +
          "'; known keys: state_dir (string), listen (array of strings), "
          "log_level (string), unix_peers (array of user names or uids)");
    }
  }
  return Status::Ok();
}

// Takes "--flag VALUE" / "--flag=VALUE" out of args; nullopt when absent.
Result<std::optional<std::string>> TakeValue(std::vector<std::string>& args,
                                             std::string_view flag) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      if (i + 1 >= args.size()) {
        return InvalidArgumentError("flag '" + std::string(flag) +
                                    "' needs a value");
      }
      std::string v = args[i + 1];
      args.erase(args.begin() + static_cast<ptrdiff_t>(i),
                 args.begin() + static_cast<ptrdiff_t>(i) + 2);
      return std::optional<std::string>(v);
    }
    if (args[i].starts_with(std::string(flag) + "=")) {
      std::string v = args[i].substr(flag.size() + 1);
      args.erase(args.begin() + static_cast<ptrdiff_t>(i));
      return std::optional<std::string>(v);
    }
  }
  return std::optional<std::string>();
}

Result<std::vector<std::string>> TakeAll(std::vector<std::string>& args,
                                         std::string_view flag) {
  std::vector<std::string> out;
  for (;;) {
    CMKFS_ASSIGN_OR_RETURN(auto v, TakeValue(args, flag));
    if (!v) return out;
    out.push_back(*v);
  }
}

bool TakeSwitch(std::vector<std::string>& args, std::string_view flag) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      args.erase(args.begin() + static_cast<ptrdiff_t>(i));
      return true;
    }
  }
  return false;
}

void PrintIdentity(const Identity& id, const std::filesystem::path& out) {
  std::printf("%s\n", id.object_id.c_str());
  std::fprintf(stderr,
               "cmkvault: issued %s identity '%s' (%s); credential bundle %s "
               "(mode 0600: hand it over, then delete it here)\n",
               std::string(RoleName(id.role)).c_str(), id.name.c_str(),
               id.object_id.c_str(), out.string().c_str());
}

int RunInit(const Options& o, std::vector<std::string> args) {
  IssueRequest admin;
  admin.role = Role::kAdmin;
  auto out = TakeValue(args, "--admin-out");
  auto name = TakeValue(args, "--admin-name");
  auto names = TakeAll(args, "--server-name");
  if (!out.ok()) return Usage(out.status().message());
  if (!name.ok()) return Usage(name.status().message());
  if (!names.ok()) return Usage(names.status().message());
  if (!args.empty()) return Usage("unexpected argument '" + args[0] + "'");
  admin.out = out->value_or((o.state_dir / "admin.pem").string());
  admin.name = name->value_or("vault owner");
  Result<Identity> id = ServiceState::Init(o.state_dir, *names, admin);
  if (!id.ok()) return Fail(id.status());
  PrintIdentity(*id, admin.out);
  return 0;
}

int RunIdentity(const Options& o, std::vector<std::string> args) {
  if (args.empty()) return Usage("identity needs issue, revoke or list");
  const std::string verb = args[0];
  args.erase(args.begin());
  if (verb == "issue") {
    IssueRequest r;
    auto out = TakeValue(args, "--out");
    auto days = TakeValue(args, "--days");
    auto object_id = TakeValue(args, "--object-id");
    if (!out.ok()) return Usage(out.status().message());
    if (!object_id.ok()) return Usage(object_id.status().message());
    if (*object_id) r.object_id = **object_id;
    if (!days.ok()) return Usage(days.status().message());
    const bool admin = TakeSwitch(args, "--admin");
    const bool host = TakeSwitch(args, "--host");
    if (admin && host)
      return Usage("identity issue: --admin or --host, not both");
    r.role = admin ? Role::kAdmin : host ? Role::kHost : Role::kClient;
    if (args.size() != 1) return Usage("identity issue needs one NAME");
    if (!*out) return Usage("identity issue needs --out FILE");
    r.name = args[0];
    r.out = **out;
    if (*days) {
      char* end = nullptr;
      long d = std::strtol((*days)->c_str(), &end, 10);
      if (end == nullptr || *end != '\0' || d < 1 || d > 3650) {
        return Usage("--days '" + **days + "': expected 1 to 3650");
      }
      r.not_before = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count() -
                     60;
      r.not_after = r.not_before + d * 24 * 3600;
    }
    auto state = ServiceState::Open(o.state_dir);
    if (!state.ok()) return Fail(state.status());
    Result<Identity> id = (*state)->Issue(r);
    if (!id.ok()) return Fail(id.status());
    PrintIdentity(*id, r.out);
    return 0;
  }
  if (verb == "revoke") {
    if (args.size() != 1) return Usage("identity revoke needs one OBJECT-ID");
    auto state = ServiceState::Open(o.state_dir);
    if (!state.ok()) return Fail(state.status());
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    Status s = (*state)->identities().Revoke(args[0], now);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "cmkvault: identity %s revoked\n", args[0].c_str());
    return 0;
  }
  if (verb == "list") {
    if (!args.empty()) return Usage("identity list takes no argument");
    auto state = ServiceState::Open(o.state_dir);
    if (!state.ok()) return Fail(state.status());
    auto ids = (*state)->identities().List();
    if (!ids.ok()) return Fail(ids.status());
    std::printf("%-36s  %-6s  %-7s  %s\n", "OBJECT-ID", "ROLE", "STATE",
                "NAME");
    for (const Identity& id : *ids) {
      std::printf("%-36s  %-6s  %-7s  %s\n", id.object_id.c_str(),
                  std::string(RoleName(id.role)).c_str(),
                  id.revoked ? "revoked" : "active",
                  EscapeControl(id.name).c_str());
    }
    return 0;
  }
  return Usage("unknown identity command '" + verb +
               "'; accepted: issue, revoke, list");
}

int RunServe(Options o, std::vector<std::string> args) {
  auto listen = TakeAll(args, "--listen");
  if (!listen.ok()) return Usage(listen.status().message());
  if (!args.empty()) return Usage("unexpected argument '" + args[0] + "'");
  if (!listen->empty()) o.listen = *listen;
  if (o.listen.empty()) {
    return Usage(
        "serve needs --listen host:port or unix:/path (or listen in "
        "the config file)");
  }
  // Signals are taken by sigwait below, in this thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto state = ServiceState::Open(o.state_dir);
  if (!state.ok()) return Fail(state.status());
  auto store = keystore::OpenKeyStore((*state)->KeystoreOptions());
  if (!store.ok()) return Fail(store.status());
  ServerOptions so;
  so.listen = o.listen;
  so.unix_peers = o.unix_peers;
  so.ca_cert_pem = (*state)->ca_cert_pem();
  so.server_cert_pem = (*state)->server_cert_pem();
  so.server_key_pem = (*state)->server_key_pem().Clone();
  IdentityTable* table = &(*state)->identities();
  so.authenticate = [table](std::string_view pem) {
    return table->Authenticate(pem);
  };
  ServiceState* minter = state->get();
  so.mint_identity = [minter](const Caller& host, std::string_view name,
                              std::string_view public_key_pem) {
    Result<MintedIdentity> m = minter->Mint(host, name, public_key_pem);
    if (m.ok()) {
      spdlog::info("cmkvault: identity {} minted identity {} ('{}')",
                   host.object_id, m->object_id, EscapeControl(name));
    }
    return m;
  };
  auto server = StartServer(store->get(), std::move(so));
  if (!server.ok()) return Fail(server.status());
  for (const std::string& a : o.listen) {
    std::string shown = a;
    if (!a.starts_with("unix:") && a.ends_with(":0")) {
      shown = a.substr(0, a.size() - 1) + std::to_string((*server)->port());
    }
    std::printf("cmkvault: listening on %s\n", shown.c_str());
  }
  std::fflush(stdout);
  // Rotation policies and retention run here, every minute, as the
  // service's own "system" identity.
  for (;;) {
    timespec minute{60, 0};
    int sig = sigtimedwait(&sigs, nullptr, &minute);
    if (sig == SIGTERM || sig == SIGINT) break;
    auto rotated = (*store)->ApplyRotationPolicies();
    if (!rotated.ok()) {
      std::fprintf(stderr, "cmkvault: rotation policies: %s\n",
                   rotated.status().message().c_str());
    }
  }
  (*server)->Shutdown(std::chrono::seconds(1));
  std::fprintf(stderr, "cmkvault: stopped\n");
  return 0;
}

int Main(std::vector<std::string> args) {
  ::umask(077);
  Options o;
  auto config = TakeValue(args, "--config");
  auto state_dir = TakeValue(args, "--state-dir");
  if (!config.ok()) return Usage(config.status().message());
  if (!state_dir.ok()) return Usage(state_dir.status().message());
  Status loaded = *config ? LoadConfig(**config, true, &o)
                          : LoadConfig("/etc/cmkfs/cmkvault.toml", false, &o);
  if (!loaded.ok()) return Fail(loaded);
  if (*state_dir) o.state_dir = **state_dir;
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (Status s = InitLogging(o.log_level, true); !s.ok()) return Fail(s, 2);
  crypto::ProtectProcessSecrets();
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "version") {
    std::printf("cmkvault %s\n", CMKFS_VERSION);
    return 0;
  }
  if (cmd == "init") return RunInit(o, std::move(args));
  if (cmd == "serve") return RunServe(o, std::move(args));
  if (cmd == "identity") return RunIdentity(o, std::move(args));
  return Usage("unknown command '" + cmd +
               "'; accepted: init, serve, identity, version, help");
}

}  // namespace
}  // namespace cmkfs::vault

int main(int argc, char** argv) {
  return cmkfs::vault::Main(std::vector<std::string>(argv + 1, argv + argc));
}
