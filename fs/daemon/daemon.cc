#include "daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>

#include "cmkfs/crypto.h"
#include "cmkfs/log.h"
#include "cmkfs/path_guard.h"
#include "cmkfs/watcher.h"
#include "daemon_metrics.h"
#include "fuse_adapter.h"
#include "http_server.h"

namespace cmkfs::daemon {
namespace {

namespace stdfs = std::filesystem;

std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    if (comma > start) out.emplace_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

stdfs::path Absolute(const stdfs::path& p) {
  if (p.empty() || p.is_absolute()) return p;
  std::error_code ec;
  stdfs::path abs = stdfs::absolute(p, ec);
  return ec ? p : abs.lexically_normal();
}

// "\040" style escapes of /proc/self/mountinfo.
std::string UnescapeMountinfo(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = s[i + j];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool IsMountPoint(const stdfs::path& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mnt;
    if (fields >> id >> parent >> devno >> root >> mnt) {
      if (UnescapeMountinfo(mnt) == dir.string()) return true;
    }
  }
  return false;
}

// One line saying what is wrong with the mountpoint and what to do.
Status CheckMountpoint(const stdfs::path& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOTCONN) {
      return FailedPreconditionError(
          "mountpoint " + mountpoint.string() +
          " is a dead FUSE mount (transport endpoint is not connected); run "
          "'fusermount3 -u " +
          mountpoint.string() + "' first");
    }
    if (err == ENOENT) {
      return NotFoundError("mountpoint " + mountpoint.string() +
                           " does not exist; create the directory first");
    }
    return ErrnoError("mountpoint " + mountpoint.string(), err);
  }
  if (!S_ISDIR(st.st_mode)) {
    return InvalidArgumentError("mountpoint " + mountpoint.string() +
                                " is not a directory");
  }
  if (IsMountPoint(mountpoint)) {
    return BusyError("mountpoint " + mountpoint.string() +
                     " is already a mount point; unmount it first "
                     "(fusermount3 -u " +
                     mountpoint.string() + ")");
  }
  return Status::Ok();
}

stdfs::path PidFilePath(const Config& config) {
  return config.state_dir / "cmkfs.pid";
}

std::optional<pid_t> ReadLivePid(const stdfs::path& pid_file) {
  auto fd = path_guard::OpenNoFollow(pid_file, O_RDONLY);
  if (!fd.ok()) return std::nullopt;
  char buf[32] = {};
  ssize_t n = ::read(*fd, buf, sizeof(buf) - 1);
  ::close(*fd);
  long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
  if (pid <= 0) return std::nullopt;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
    return std::nullopt;
  return static_cast<pid_t>(pid);
}

Status ExplainBusy(const Config& config, const Status& engine_status) {
  if (std::optional<pid_t> pid = ReadLivePid(PidFilePath(config))) {
    return BusyError("state directory " + config.state_dir.string() +
                     " is in use by another cmkfs (pid " +
                     std::to_string(*pid) + ")");
  }
  return BusyError("state directory " + config.state_dir.string() +
                   " is in use by another process (" + engine_status.message() +
                   ")");
}

// Startup result channel from the daemonized child to the waiting parent.
class ReadyPipe {
 public:
  ReadyPipe() = default;
  explicit ReadyPipe(int fd) : fd_(fd) {}
  ~ReadyPipe() { Close(); }
  ReadyPipe(const ReadyPipe&) = delete;
  ReadyPipe& operator=(const ReadyPipe&) = delete;

  void Report(const std::string& line) {
    if (fd_ < 0) return;
    std::string msg = line + "\n";
    const char* p = msg.data();
    size_t left = msg.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
    Close();
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool active() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Parent side: waits for the child's first line. Returns the exit status.
int WaitForChild(int read_fd, pid_t child) {
  std::string line;
  char c;
  for (;;) {
    ssize_t n = ::read(read_fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  ::close(read_fd);
  int status = 0;
  ::waitpid(child, &status, 0);  // the intermediate child exits at once
  if (line == "OK") return 0;
  if (line.empty()) {
    std::cerr << "cmkfs: the daemon exited during startup (see syslog)\n";
  } else {
    std::cerr << "cmkfs: " << line << "\n";
  }
  return 1;
}

void RedirectStdioToDevNull() {
  int fd = ::open("/dev/null", O_RDWR);
  if (fd < 0) return;
  ::dup2(fd, STDIN_FILENO);
  ::dup2(fd, STDOUT_FILENO);
  ::dup2(fd, STDERR_FILENO);
  if (fd > STDERR_FILENO) ::close(fd);
}

class PidFile {
 public:
  explicit PidFile(stdfs::path path) : path_(std::move(path)) {}
  ~PidFile() {
    if (written_) {
      std::error_code ec;
      stdfs::remove(path_, ec);
    }
  }
  // A stale pid file (the engine's lock proves its daemon is gone) is
  // removed only if it is a regular file; the new one is made with O_EXCL
  // and O_NOFOLLOW, relative to the state directory.
  Status Write() {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode)) {
        CMKFS_RETURN_IF_ERROR(path_guard::CheckEntry(st, path_));
        return FailedPreconditionError(path_.string() +
                                       " is not a regular file; remove it");
      }
      if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
        return ErrnoError("remove stale " + path_.string(), errno);
      }
    }
    CMKFS_ASSIGN_OR_RETURN(
        int fd, path_guard::OpenNoFollow(path_, O_WRONLY | O_CREAT | O_EXCL));
    std::string text = std::to_string(::getpid()) + "\n";
    ssize_t n = ::write(fd, text.data(), text.size());
    int err = errno;
    ::close(fd);
    written_ = true;
    if (n != static_cast<ssize_t>(text.size())) {
      return ErrnoError("cannot write " + path_.string(), n < 0 ? err : EIO);
    }
    return Status::Ok();
  }

 private:
  stdfs::path path_;
  bool written_ = false;
};

// Everything after the (optional) fork: open, mount, serve, tear down.
int RunMount(const DaemonArgs& args, const Config& config, ReadyPipe& ready) {
  auto fail = [&](const Status& s) {
    if (ready.active()) {
      spdlog::error("{}", s.message());
      ready.Report(s.message());
    } else {
      std::cerr << "cmkfs: " << s.message() << "\n";
    }
    return 1;
  };

  // Signals stay blocked in every thread but the one running the FUSE loop.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  // A peer that goes away (a p11-kit server behind p11-kit-client.so, a
  // control client) must give EPIPE on that call, not kill the daemon.
  signal(SIGPIPE, SIG_IGN);
  crypto::ProtectProcessSecrets();

  // Before the services: the keystore is wrapped to time unwraps, and the
  // mount reports its I/O here; it outlives both.
  std::unique_ptr<metrics::DaemonMetrics> metrics;
  cli::KeyStoreWrapper wrap_keystore;
  if (config.metrics.kind != Config::Metrics::Kind::kOff) {
    metrics = std::make_unique<metrics::DaemonMetrics>();
    wrap_keystore = [&metrics](std::unique_ptr<keystore::KeyStore> inner) {
      return metrics->WrapKeyStore(std::move(inner));
    };
  }
  auto services = cli::OpenServices(config, wrap_keystore);
  if (!services.ok()) {
    if (services.status().kind() == ErrorKind::kBusy)
      return fail(ExplainBusy(config, services.status()));
    return fail(services.status());
  }
  if (std::string w = cli::MasterKeyPostureWarning(config); !w.empty()) {
    spdlog::warn("{}", w);
  }
  PidFile pid_file(PidFilePath(config));
  if (Status s = pid_file.Write(); !s.ok()) return fail(s);

  fuse::MountOptions mount_options;
  mount_options.uid = config.mount.uid;
  mount_options.gid = config.mount.gid;
  mount_options.mode = config.mount.mode;
  mount_options.allow_other = config.mount.allow_other;
  mount_options.threads = config.engine.fuse_threads;
  mount_options.debug = args.fuse_debug;
  mount_options.io_observer = metrics.get();
  for (const std::string& o : args.fuse_options) {
    if (o == "allow_other") {
      mount_options.allow_other = true;
    } else {
      mount_options.extra_options.push_back(o);
    }
  }
  auto mount = fuse::FuseMount::Mount(services->engine.get(), args.mountpoint,
                                      mount_options);
  if (!mount.ok()) return fail(mount.status());

  cli::CommandContext context;
  context.config = config;
  context.keystore = services->keystore.get();
  context.engine = services->engine.get();
  const stdfs::path socket_path = cli::ControlSocketPath(config);
  // Imports and exports run beside the other commands and are cancelled when
  // their client hangs up (cmkctl's Ctrl-C); see cli::DaemonCommandHandler.
  auto control = cli::ControlServer::StartCancellable(
      socket_path, cli::DaemonCommandHandler(context));
  if (!control.ok()) {
    (*mount)->Unmount();
    return fail(
        control.status().WithContext("control socket " + socket_path.string()));
  }

  std::vector<std::unique_ptr<DaemonComponent>> components =
      MakeComponents(config, metrics.get());
  for (size_t i = 0; i < components.size(); ++i) {
    if (Status s = components[i]->Start(context); !s.ok()) {
      const std::string name(components[i]->name());
      while (i-- > 0) components[i]->Stop();
      control->reset();
      (*mount)->Unmount();
      return fail(s.WithContext(name));
    }
  }

  spdlog::info("cmkfs serving {} from state directory {}",
               args.mountpoint.string(), config.state_dir.string());
  if (ready.active()) {
    ready.Report("OK");
    RedirectStdioToDevNull();
  }

  int exit_code = 0;
  Status run = (*mount)->Run();
  if (!run.ok()) {
    spdlog::error("{}", run.message());
    exit_code = 1;
  }
  for (auto it = components.rbegin(); it != components.rend(); ++it)
    (*it)->Stop();
  control->reset();
  {
    std::error_code ec;
    stdfs::remove(socket_path, ec);
  }
  (*mount)->Unmount();
  mount->reset();
  if (Status s = services->engine->Flush(); !s.ok()) {
    spdlog::error("flush at shutdown failed: {}", s.message());
    exit_code = 1;
  }
  services->engine.reset();
  services->keystore.reset();
  spdlog::info("cmkfs stopped");
  return exit_code;
}

}  // namespace

std::string DaemonUsage() {
  return "usage: cmkfs MOUNTPOINT [--config FILE] [--state-dir DIR] "
         "[--foreground|-f] [-o FUSE_OPTIONS] [--log-level LEVEL] [--debug]\n"
         "       cmkfs --version | --help\n"
         "Mounts the disks, snapshots and images of the state directory as\n"
         "MOUNTPOINT/{disks,snapshots,images}/NAME. Unmount with\n"
         "'fusermount3 -u MOUNTPOINT' or SIGTERM. Without --foreground the\n"
         "daemon detaches once the mount is up and logs to syslog.\n";
}

namespace {

// cmkfs's own flags (the global flags it takes are kDaemonGlobalFlags); the
// parser, the "accepted:" message and shell completion all read this table.
struct DaemonFlag {
  std::string_view name;
  std::string_view alias;
  bool takes_value;
};
constexpr DaemonFlag kDaemonFlags[] = {
    {"--foreground", "-f", false}, {"-o", "", true},
    {"--debug", "-d", false},      {"--version", "-V", false},
    {"--help", "-h", false},
};
constexpr std::string_view kDaemonGlobalFlags[] = {"--config", "--state-dir",
                                                   "--log-level"};

// The flag's table name ("--foreground" for "-f"), or "" when none.
std::string_view DaemonFlagName(std::string_view word) {
  for (const auto& f : kDaemonFlags) {
    if (word == f.name || (!f.alias.empty() && word == f.alias)) return f.name;
  }
  return "";
}

std::string AcceptedDaemonFlags() {
  std::string out;
  for (auto g : kDaemonGlobalFlags) (out += out.empty() ? "" : ", ") += g;
  for (const auto& f : kDaemonFlags) (out += ", ") += f.name;
  return out;
}

}  // namespace

std::string CompleteDaemonWords(const std::vector<std::string>& words) {
  std::vector<cli::ProgramFlag> flags;
  for (const auto& f : kDaemonFlags) {
    flags.push_back({f.name, f.takes_value});
    if (!f.alias.empty()) flags.push_back({f.alias, f.takes_value});
  }
  return cli::CompleteProgramWords(
      words, flags,
      std::vector<std::string_view>(std::begin(kDaemonGlobalFlags),
                                    std::end(kDaemonGlobalFlags)));
}

Result<DaemonArgs> ParseDaemonArgs(std::vector<std::string> args) {
  DaemonArgs out;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const std::string_view flag = DaemonFlagName(a);
    if (flag == "--help") {
      out.action = DaemonArgs::Action::kHelp;
      return out;
    }
    if (flag == "--version") {
      out.action = DaemonArgs::Action::kVersion;
      return out;
    }
    if (flag == "--foreground") {
      out.foreground = true;
    } else if (flag == "--debug") {
      out.fuse_debug = true;
      out.foreground = true;
    } else if (flag == "-o") {
      if (i + 1 >= args.size())
        return InvalidArgumentError(
            "flag '-o' needs FUSE mount options, e.g. -o allow_other");
      for (auto& o : SplitCommas(args[++i])) out.fuse_options.push_back(o);
    } else if (a.starts_with("-o")) {
      for (auto& o : SplitCommas(std::string_view(a).substr(2)))
        out.fuse_options.push_back(o);
    } else {
      rest.push_back(a);
    }
  }
  CMKFS_RETURN_IF_ERROR(cli::ExtractGlobalFlags(rest, &out.flags));
  std::vector<std::string> positional;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--") {
      positional.insert(positional.end(), rest.begin() + i + 1, rest.end());
      break;
    }
    if (rest[i].starts_with("-") && rest[i] != "-") {
      return InvalidArgumentError("unknown flag '" + rest[i] +
                                  "'; accepted: " + AcceptedDaemonFlags());
    }
    positional.push_back(rest[i]);
  }
  if (positional.size() > 1)
    return InvalidArgumentError("expected one MOUNTPOINT, got '" +
                                positional[0] + "' and '" + positional[1] +
                                "'");
  if (!positional.empty()) out.mountpoint = positional[0];
  return out;
}

namespace {

// Seals and unseals disks as their keys come and go, and auto-rotates.
class KeyWatcherComponent : public DaemonComponent {
 public:
  KeyWatcherComponent(const Config& config, metrics::DaemonMetrics* metrics)
      : config_(config), metrics_(metrics) {}
  std::string_view name() const override { return "key watcher"; }
  Status Start(cli::CommandContext& services) override {
    fs::WatcherOptions options;
    options.poll_interval = config_.watcher.poll_interval;
    options.auto_rotation_window = config_.watcher.auto_rotation_window;
    options.on_seal = config_.watcher.on_seal;
    options.unreachable_grace = config_.watcher.unreachable_grace;
    if (metrics_ != nullptr) metrics_->ObserveWatcher(&options);
    watcher_ = std::make_unique<fs::KeyWatcher>(services.engine,
                                                services.keystore, options);
    if (metrics_ != nullptr) metrics_->SetWatcher(watcher_.get());
    return watcher_->Start();
  }
  void Stop() override {
    if (metrics_ != nullptr) metrics_->SetWatcher(nullptr);
    if (watcher_) watcher_->Stop();
  }

 private:
  Config config_;
  metrics::DaemonMetrics* const metrics_;
  std::unique_ptr<fs::KeyWatcher> watcher_;
};

// Serves [metrics] listen; scrapes read the engine of the running mount.
class MetricsComponent : public DaemonComponent {
 public:
  MetricsComponent(const Config& config, metrics::DaemonMetrics* metrics)
      : listen_(config.metrics), metrics_(metrics) {}
  std::string_view name() const override { return "metrics"; }
  Status Start(cli::CommandContext& services) override {
    metrics_->SetEngine(services.engine);
    auto server = metrics::MetricsServer::Start(
        listen_, [m = metrics_] { return m->Render(); });
    if (!server.ok()) {
      metrics_->SetEngine(nullptr);
      return server.status();
    }
    server_ = std::move(server).value();
    spdlog::info("metrics: serving http://{}/metrics", server_->address());
    return Status::Ok();
  }
  void Stop() override {
    server_.reset();
    metrics_->SetEngine(nullptr);
  }

 private:
  const Config::Metrics listen_;
  metrics::DaemonMetrics* const metrics_;
  std::unique_ptr<metrics::MetricsServer> server_;
};

}  // namespace

std::vector<std::unique_ptr<DaemonComponent>> MakeComponents(
    const Config& config, metrics::DaemonMetrics* metrics) {
  std::vector<std::unique_ptr<DaemonComponent>> components;
  components.push_back(std::make_unique<KeyWatcherComponent>(config, metrics));
  if (metrics != nullptr)
    components.push_back(std::make_unique<MetricsComponent>(config, metrics));
  return components;
}

int DaemonMain(int argc, char** argv, std::string_view version) {
  // Whatever the daemon creates (exports, the socket, LMDB files) is private
  // unless it sets a mode itself.
  ::umask(077);
  std::vector<std::string> words(argv + 1, argv + argc);
  if (!words.empty() && words[0] == "__complete") {  // for the bash script
    std::cout << CompleteDaemonWords({words.begin() + 1, words.end()});
    return 0;
  }
  auto parsed = ParseDaemonArgs(std::move(words));
  if (!parsed.ok()) {
    std::cerr << "cmkfs: " << parsed.status().message() << "\n";
    return 2;
  }
  DaemonArgs args = std::move(parsed).value();
  if (args.action == DaemonArgs::Action::kHelp) {
    std::cout << DaemonUsage();
    return 0;
  }
  if (args.action == DaemonArgs::Action::kVersion) {
    std::cout << "cmkfs " << version << "\n";
    return 0;
  }

  // The daemon changes to / when it detaches: every path becomes absolute.
  if (args.flags.config_file)
    args.flags.config_file = Absolute(*args.flags.config_file);
  if (args.flags.state_dir)
    args.flags.state_dir = Absolute(*args.flags.state_dir);
  auto loaded = cli::LoadEffectiveConfig(args.flags);
  if (!loaded.ok()) {
    std::cerr << "cmkfs: " << loaded.status().message() << "\n";
    return 1;
  }
  Config config = std::move(loaded).value();
  if (args.mountpoint.empty()) args.mountpoint = config.mount.mountpoint;
  if (args.mountpoint.empty()) {
    std::cerr << "cmkfs: missing MOUNTPOINT (give it on the command line or "
                 "as [mount] mountpoint in the config; see cmkfs --help)\n";
    return 2;
  }
  config.state_dir = Absolute(config.state_dir);
  config.keystore.dir = Absolute(config.keystore.dir);
  config.keystore.master_key_file = Absolute(config.keystore.master_key_file);
  config.keystore.passphrase_file = Absolute(config.keystore.passphrase_file);
  config.keystore.tpm2_sealed_file = Absolute(config.keystore.tpm2_sealed_file);
  args.mountpoint = Absolute(args.mountpoint);
  while (args.mountpoint.string().size() > 1 &&
         args.mountpoint.string().ends_with('/')) {
    std::string trimmed = args.mountpoint.string();
    trimmed.pop_back();
    args.mountpoint = trimmed;
  }

  const std::string level = args.flags.log_level.value_or(config.log_level);
  if (Status s = InitLogging(level, /*to_stderr=*/true); !s.ok()) {
    std::cerr << "cmkfs: " << s.message() << "\n";
    return 2;
  }
  if (Status s = CheckMountpoint(args.mountpoint); !s.ok()) {
    std::cerr << "cmkfs: " << s.message() << "\n";
    return 1;
  }
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    std::cerr << "cmkfs: cannot open /dev/fuse (" << std::strerror(errno)
              << "); load the fuse module and run as root\n";
    return 1;
  }

  if (args.foreground) {
    ReadyPipe none;
    return RunMount(args, config, none);
  }

  // Detach: the parent waits on a pipe for "OK" or the startup error line.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::cerr << "cmkfs: pipe: " << std::strerror(errno) << "\n";
    return 1;
  }
  std::cout.flush();
  std::cerr.flush();
  pid_t child = ::fork();
  if (child < 0) {
    std::cerr << "cmkfs: fork: " << std::strerror(errno) << "\n";
    return 1;
  }
  if (child > 0) {
    ::close(fds[1]);
    return WaitForChild(fds[0], child);
  }
  ::close(fds[0]);
  ::setsid();
  pid_t grandchild = ::fork();
  if (grandchild < 0) _exit(1);
  if (grandchild > 0) _exit(0);
  if (::chdir("/") != 0) _exit(1);
  ReadyPipe ready(fds[1]);
  if (Status s = InitLogging(level, /*to_stderr=*/false); !s.ok()) {
    ready.Report(s.message());
    return 1;
  }
  return RunMount(args, config, ready);
}

}  // namespace cmkfs::daemon
