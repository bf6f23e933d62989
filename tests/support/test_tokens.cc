#include "test_tokens.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

namespace cmkfs::test_tokens {
namespace {

namespace stdfs = std::filesystem;

constexpr const char* kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr const char* kNssModule = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so";
constexpr const char* kNssLabel = "NSS Certificate DB";
// The p11-kit server runs as this user when the tests run as root: p11-kit
// reads no per-user module configuration for root.
constexpr uid_t kServerUid = 65534;

Status Fail(const std::string& what) { return IOError("test tokens: " + what); }

Status WriteFile(const stdfs::path& p, const std::string& text,
                 stdfs::perms mode = stdfs::perms::owner_read |
                                     stdfs::perms::owner_write) {
  std::ofstream out(p, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Fail("cannot write " + p.string());
  std::error_code ec;
  stdfs::permissions(p, mode, ec);
  return Status::Ok();
}

Status Sh(const std::string& command) {
  const int rc = std::system((command + " >/dev/null 2>&1").c_str());
  if (rc != 0)
    return Fail("'" + command + "' failed (" + std::to_string(rc) + ")");
  return Status::Ok();
}

Result<stdfs::path> MakeTempDir(const std::string& prefix) {
  std::string tmpl = (stdfs::temp_directory_path() / (prefix + "-XXXXXX"));
  if (::mkdtemp(tmpl.data()) == nullptr) return Fail("mkdtemp " + tmpl);
  return stdfs::path(tmpl);
}

std::string NssInitArgs(const stdfs::path& db) {
  return "configdir='sql:" + db.string() +
         "' certPrefix='' keyPrefix='' secmod='secmod.db' flags=";
}

// A SoftHSM2 token directory with `labels`, and its softhsm2.conf.
Status MakeSoftHsm(const stdfs::path& dir,
                   const std::vector<std::string>& labels) {
  stdfs::create_directories(dir / "tokens");
  CMKFS_RETURN_IF_ERROR(
      WriteFile(dir / "softhsm2.conf",
                "directories.tokendir = " + (dir / "tokens").string() +
                    "\nobjectstore.backend = file\nlog.level = ERROR\n"));
  for (const std::string& label : labels) {
    CMKFS_RETURN_IF_ERROR(
        Sh("SOFTHSM2_CONF=" + (dir / "softhsm2.conf").string() +
           " softhsm2-util --init-token --free --label " + label +
           " --pin 1234 --so-pin 5678"));
  }
  return Status::Ok();
}

// An NSS sql: database whose key slot has user PIN 1234.
Status MakeNssDb(const stdfs::path& db, const stdfs::path& scratch) {
  stdfs::create_directories(db);
  CMKFS_RETURN_IF_ERROR(WriteFile(scratch / "nss.pw", "1234\n"));
  return Sh("certutil -N -d sql:" + db.string() + " -f " +
            (scratch / "nss.pw").string());
}

struct State {
  stdfs::path dir;         // ours: PIN files, direct tokens
  stdfs::path server_dir;  // the p11-kit server's (owned by its user)
  bool softhsm_direct = false;
  bool nss_direct = false;
  bool server_made = false;
  pid_t server_pid = -1;
  // CMKFS_TEST_P11KIT_TLS_RELAY: the loopback TLS tunnel in front of the
  // server; its processes exit when `relay_stdin` (the write end of their
  // stdin) closes with this process.
  bool relay_started = false;
  int relay_stdin = -1;
};

State& St() {
  static State* state = new State;
  return *state;
}

void Cleanup() {
  (void)StopServer();
  std::error_code ec;
  if (!St().dir.empty()) stdfs::remove_all(St().dir, ec);
  if (!St().server_dir.empty()) stdfs::remove_all(St().server_dir, ec);
}

Status EnsureDir() {
  if (!St().dir.empty()) return Status::Ok();
  CMKFS_ASSIGN_OR_RETURN(St().dir, MakeTempDir("cmkfs-tokens"));
  std::atexit(Cleanup);
  CMKFS_RETURN_IF_ERROR(WriteFile(St().dir / "user.pin", "1234\n"));
  return WriteFile(St().dir / "wrong.pin", "9999\n");
}

Config::Pkcs11 Cfg(const std::string& module, const std::string& label,
                   const std::string& init_args = "") {
  Config::Pkcs11 c;
  c.module = module;
  c.token_label = label;
  c.pin_file = St().dir / "user.pin";
  c.init_args = init_args;
  return c;
}

Status EnsureSoftHsmDirect() {
  if (St().softhsm_direct) return Status::Ok();
  const stdfs::path d = St().dir / "softhsm";
  CMKFS_RETURN_IF_ERROR(MakeSoftHsm(d, {"cmkfs", "cmkfs-other"}));
  ::setenv("SOFTHSM2_CONF", (d / "softhsm2.conf").c_str(), 1);
  St().softhsm_direct = true;
  return Status::Ok();
}

Status EnsureNssDirect() {
  if (St().nss_direct) return Status::Ok();
  CMKFS_RETURN_IF_ERROR(MakeNssDb(St().dir / "nss-db", St().dir));
  // Kept mapped for the process: softokn's C_Finalize leaves NSPR memory
  // reachable only from its own globals, which LeakSanitizer reports as
  // leaks once the backend's dlclose unmaps them.
  if (::dlopen(kNssModule, RTLD_NOW | RTLD_NODELETE) == nullptr) {
    return Fail(std::string("dlopen ") + kNssModule);
  }
  St().nss_direct = true;
  return Status::Ok();
}

// The server's directory: SoftHSM tokens cmkfs-remote(-other), an NSS
// database and a p11-kit user configuration naming both modules (with
// softokn's init parameters as x-init-reserved).
Status EnsureServerDir() {
  if (St().server_made) return Status::Ok();
  CMKFS_ASSIGN_OR_RETURN(St().server_dir, MakeTempDir("cmkfs-p11srv"));
  const stdfs::path& d = St().server_dir;
  CMKFS_RETURN_IF_ERROR(
      MakeSoftHsm(d / "softhsm", {"cmkfs-remote", "cmkfs-remote-other"}));
  CMKFS_RETURN_IF_ERROR(MakeNssDb(d / "nss-db", d));
  const stdfs::path modules = d / "home/.config/pkcs11/modules";
  stdfs::create_directories(modules);
  stdfs::create_directories(d / "run");
  const auto shared = stdfs::perms::owner_read | stdfs::perms::owner_write |
                      stdfs::perms::group_read | stdfs::perms::others_read;
  CMKFS_RETURN_IF_ERROR(
      WriteFile(modules / "softhsm2.module",
                std::string("module: ") + kSoftHsmModule + "\n", shared));
  CMKFS_RETURN_IF_ERROR(
      WriteFile(modules / "nss.module",
                std::string("module: ") + kNssModule +
                    "\nx-init-reserved: " + NssInitArgs(d / "nss-db") + "\n",
                shared));
  if (::geteuid() == 0) {
    CMKFS_RETURN_IF_ERROR(Sh("chown -R " + std::to_string(kServerUid) + ":" +
                             std::to_string(kServerUid) + " " + d.string()));
  }
  St().server_made = true;
  return Status::Ok();
}

const char* TlsRelayScript() {
  const char* script = std::getenv("CMKFS_TEST_P11KIT_TLS_RELAY");
  return script != nullptr && *script != '\0' ? script : nullptr;
}

stdfs::path RelayDir() { return St().dir / "tls"; }

Status WaitFor(const stdfs::path& p, const std::string& what) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::error_code ec;
  while (!stdfs::exists(p, ec)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Fail(what + " made no " + p.string() + " within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::Ok();
}

// The TLS relay pair (tests/support/tls_relay.py) with a throw-away CA, a
// server certificate for "cmkfs-key-host" and a client certificate.
Status StartTlsRelay() {
  if (St().relay_started) return Status::Ok();
  const stdfs::path d = RelayDir();
  stdfs::create_directories(d);
  const std::string ds = d.string();
  auto key = [&](const std::string& name) {
    return "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout " +
           ds + "/" + name + ".key -subj /CN=" + name;
  };
  CMKFS_RETURN_IF_ERROR(
      Sh(key("cmkfs-test-ca") + " -x509 -days 1 -out " + ds + "/ca.crt"));
  CMKFS_RETURN_IF_ERROR(
      WriteFile(d / "san.ext", "subjectAltName=DNS:cmkfs-key-host\n"));
  for (const std::string name : {"cmkfs-key-host", "cmkfs-storage-host"}) {
    CMKFS_RETURN_IF_ERROR(Sh(key(name) + " -out " + ds + "/" + name + ".csr"));
    CMKFS_RETURN_IF_ERROR(Sh("openssl x509 -req -days 1 -in " + ds + "/" +
                             name + ".csr -CA " + ds + "/ca.crt -CAkey " + ds +
                             "/cmkfs-test-ca.key -CAcreateserial -extfile " +
                             ds + "/san.ext -out " + ds + "/" + name + ".crt"));
  }
  int fds[2];
  if (::pipe(fds) != 0) return Fail("pipe");
  ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  St().relay_stdin = fds[1];
  auto spawn = [&](std::vector<std::string> args) -> Status {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return Fail("fork");
    if (pid == 0) {
      ::dup2(fds[0], STDIN_FILENO);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    return Status::Ok();
  };
  const std::string script = TlsRelayScript();
  CMKFS_RETURN_IF_ERROR(
      spawn({"python3", script, "server", "--to-unix", ServerSocket().string(),
             "--port-file", ds + "/port", "--cert", ds + "/cmkfs-key-host.crt",
             "--key", ds + "/cmkfs-key-host.key", "--ca", ds + "/ca.crt"}));
  CMKFS_RETURN_IF_ERROR(WaitFor(d / "port", "the TLS relay server"));
  std::ifstream port_in(d / "port");
  std::string port;
  port_in >> port;
  CMKFS_RETURN_IF_ERROR(
      spawn({"python3", script, "client", "--listen-unix", ds + "/tls.sock",
             "--port", port, "--cert", ds + "/cmkfs-storage-host.crt", "--key",
             ds + "/cmkfs-storage-host.key", "--ca", ds + "/ca.crt"}));
  ::close(fds[0]);
  CMKFS_RETURN_IF_ERROR(WaitFor(d / "tls.sock", "the TLS relay client"));
  St().relay_started = true;
  return Status::Ok();
}

}  // namespace

const stdfs::path& Dir() {
  (void)EnsureDir();
  return St().dir;
}

stdfs::path ServerSocket() { return St().server_dir / "run/p11.sock"; }

std::string ServerAddress() {
  if (TlsRelayScript() != nullptr) {
    return "unix:path=" + (RelayDir() / "tls.sock").string();
  }
  return "unix:path=" + ServerSocket().string();
}

Status StartServer() {
  CMKFS_RETURN_IF_ERROR(EnsureDir());
  CMKFS_RETURN_IF_ERROR(EnsureServerDir());
  if (St().server_pid > 0) return Status::Ok();
  const stdfs::path& d = St().server_dir;
  std::error_code ec;
  stdfs::remove(ServerSocket(), ec);
  std::vector<std::string> args = {"timeout", "-s", "TERM", "600"};
  if (::geteuid() == 0) {
    for (const char* a :
         {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}) {
      args.push_back(a);
    }
  }
  for (const std::string& a :
       {std::string("p11-kit"), std::string("server"), std::string("-f"),
        std::string("-n"), ServerSocket().string(),
        std::string("pkcs11:token=cmkfs-remote"),
        std::string("pkcs11:token=cmkfs-remote-other"),
        std::string("pkcs11:token=NSS%20Certificate%20DB")}) {
    args.push_back(a);
  }
  std::vector<std::string> env = {
      "HOME=" + (d / "home").string(),
      "SOFTHSM2_CONF=" + (d / "softhsm/softhsm2.conf").string()};
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view var(*e);
    if (var.rfind("HOME=", 0) != 0 && var.rfind("SOFTHSM2_CONF=", 0) != 0) {
      env.emplace_back(var);
    }
  }
  std::vector<char*> argv, envp;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Fail("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  St().server_pid = pid;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!stdfs::exists(ServerSocket(), ec)) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      St().server_pid = -1;
      return Fail("p11-kit server exited before making its socket");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      (void)StopServer();
      return Fail("p11-kit server made no socket within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (TlsRelayScript() != nullptr) return StartTlsRelay();
  return Status::Ok();
}

Status StopServer() {
  const pid_t pid = St().server_pid;
  if (pid <= 0) return Status::Ok();
  // `timeout` forwards the signal to its process group: the server and the
  // children serving connections.
  ::kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      St().server_pid = -1;
      return Status::Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  St().server_pid = -1;
  return Status::Ok();
}

Result<Token> Get(Kind kind, Transport transport) {
  CMKFS_RETURN_IF_ERROR(EnsureDir());
  Token t;
  if (transport == Transport::kDirect) {
    CMKFS_RETURN_IF_ERROR(EnsureSoftHsmDirect());
    t.isolated = Cfg(kSoftHsmModule, "cmkfs-other");
    if (kind == Kind::kSoftHsm) {
      t.config = Cfg(kSoftHsmModule, "cmkfs");
      t.description = "SoftHSM2, module loaded directly";
    } else {
      CMKFS_RETURN_IF_ERROR(EnsureNssDirect());
      t.config = Cfg(kNssModule, kNssLabel, NssInitArgs(St().dir / "nss-db"));
      t.description = "NSS softokn, module loaded directly";
    }
  } else {
    CMKFS_RETURN_IF_ERROR(StartServer());
    ::setenv("P11_KIT_SERVER_ADDRESS", ServerAddress().c_str(), 1);
    const std::string client =
        std::string(CMKFS_P11KIT_MODULE_PATH) + "/p11-kit-client.so";
    t.isolated = Cfg(client, "cmkfs-remote-other");
    t.config = Cfg(client, kind == Kind::kSoftHsm ? "cmkfs-remote" : kNssLabel);
    t.description = kind == Kind::kSoftHsm
                        ? "SoftHSM2 behind p11-kit server"
                        : "NSS softokn behind p11-kit server";
  }
  t.wrong_pin = t.config;
  t.wrong_pin.pin_file = St().dir / "wrong.pin";
  return t;
}

}  // namespace cmkfs::test_tokens
