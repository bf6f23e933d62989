#include "cmkfs/watcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

#include "cmkfs/units.h"

extern char** environ;

namespace cmkfs::fs {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string ResourcePath(ResourceKind kind, std::string_view name) {
  std::string path(ResourceKindName(kind));
  path += "s/";
  path += name;
  return path;
}

// A key problem (seal) rather than a failure to find out (keep state).
bool MeansUnusable(const Status& s) {
  switch (s.kind()) {
    case ErrorKind::kKeyUnavailable:
    case ErrorKind::kNotFound:
    case ErrorKind::kPermissionDenied:
      return true;
    default:
      return false;
  }
}

// The keystore may prefix its reason with the key id; the seal reason names
// the key once.
std::string KeyProblem(const Status& s, const keystore::KeyId& id) {
  const std::string prefix = id.ToString() + ": ";
  if (s.message().starts_with(prefix)) return s.message().substr(prefix.size());
  return s.message();
}

std::string FormatLatency(std::chrono::microseconds us) {
  return fmt::format("{:.1f} ms", static_cast<double>(us.count()) / 1000.0);
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return "exit status " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  }
  return "wait status " + std::to_string(status);
}

}  // namespace

KeyWatcher::KeyWatcher(Engine* engine, keystore::KeyStore* keystore,
                       WatcherOptions options)
    : engine_(engine), keystore_(keystore), options_(std::move(options)) {}

KeyWatcher::~KeyWatcher() { Stop(); }

Status KeyWatcher::Start() {
  if (options_.poll_interval <= std::chrono::milliseconds::zero()) {
    return InvalidArgumentError(
        "key watcher: poll interval must be positive, such as \"1s\" or "
        "\"5s\"");
  }
  MutexLock lk(&thread_mu_);
  if (thread_.joinable()) {
    return FailedPreconditionError("key watcher: already running");
  }
  stop_requested_ = false;
  wake_requested_ = false;
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    return IOError(std::string("key watcher: cannot start its thread: ") +
                   e.what());
  }
  std::string push = "no push (polling only)";
  if (options_.subscribe) {
    keystore::ChangeSubscriber subscriber;
    subscriber.on_change = [this](uint64_t) {
      {
        MutexLock sl(&stats_mu_);
        ++stats_.push_events;
        stats_.push_connected = true;
      }
      Wake();
    };
    subscriber.on_lost = [this](const Status& why) {
      bool was_connected = false;
      {
        MutexLock sl(&stats_mu_);
        was_connected = stats_.push_connected;
        stats_.push_connected = false;
      }
      if (was_connected) {
        spdlog::warn("key watcher: change stream lost, polling: {}",
                     why.message());
      }
      Wake();
    };
    Result<std::unique_ptr<keystore::ChangeSubscription>> sub =
        keystore_->SubscribeChanges(std::move(subscriber));
    if (sub.ok()) {
      subscription_ = std::move(*sub);
      push = "subscribed to pushed key changes";
    } else if (sub.status().kind() != ErrorKind::kNotSupported) {
      push = "cannot subscribe to key changes (" + sub.status().message() +
             "), polling only";
    }
  }
  spdlog::info(
      "key watcher started: poll every {}, auto-rotation window {}, "
      "rotation policies every {}, unreachable grace {}, {}{}",
      FormatDuration(options_.poll_interval),
      FormatDuration(options_.auto_rotation_window),
      FormatDuration(options_.rotation_policy_interval),
      FormatDuration(options_.unreachable_grace), push,
      options_.on_seal.empty() ? "" : ", on_seal set");
  return Status::Ok();
}

void KeyWatcher::Stop() {
  std::thread thread;
  std::unique_ptr<keystore::ChangeSubscription> subscription;
  {
    MutexLock lk(&thread_mu_);
    if (!thread_.joinable()) return;
    stop_requested_ = true;
    thread = std::move(thread_);
    subscription = std::move(subscription_);
  }
  // Its callbacks take thread_mu_ (Wake): ended without holding it.
  subscription.reset();
  {
    MutexLock sl(&stats_mu_);
    stats_.push_connected = false;
  }
  wake_cv_.SignalAll();
  thread.join();
  ReapChildren(/*log_running=*/true);
  spdlog::info("key watcher stopped");
}

void KeyWatcher::Wake() {
  {
    MutexLock lk(&thread_mu_);
    wake_requested_ = true;
  }
  wake_cv_.SignalAll();
}

void KeyWatcher::Run() {
  MutexLock lk(&thread_mu_);
  while (!stop_requested_) {
    const auto next = SteadyClock::now() + options_.poll_interval;
    wake_requested_ = false;
    lk.Unlock();
    try {
      Result<PollReport> report = PollOnce();
      (void)report;  // PollOnce logs its own failures
    } catch (const std::exception& e) {
      // Nothing may end the thread but Stop (e.g. bad_alloc in one poll).
      spdlog::error("key watcher: poll failed: {}", e.what());
    }
    lk.Lock();
    while (!stop_requested_ && !wake_requested_) {
      if (!wake_cv_.WaitUntil(&thread_mu_, next)) break;
    }
  }
}

Result<PollReport> KeyWatcher::PollOnce() {
  MutexLock lk(&poll_mu_);
  const auto poll_start = SteadyClock::now();
  auto observe = [&](bool ok) {
    if (!options_.poll_observer) return;
    options_.poll_observer(
        std::chrono::duration_cast<std::chrono::microseconds>(
            SteadyClock::now() - poll_start),
        ok);
  };
  PollReport report;
  ReapChildren(/*log_running=*/false);
  ApplyRotationPoliciesIfDue(report);

  Result<uint64_t> counter = keystore_->ChangeCounter();
  bool keystore_changed = true;
  const bool keystore_readable = counter.ok();
  std::optional<Status> cut_off;
  if (counter.ok()) {
    report.change_counter = *counter;
    keystore_changed = !last_counter_ || *last_counter_ != *counter;
    last_counter_ = *counter;
    unreachable_since_.reset();
    ClearError("change-counter");
  } else {
    if (!unreachable_since_) unreachable_since_ = poll_start;
    NoteError("change-counter",
              "key watcher: cannot read the keystore change counter: " +
                  counter.status().ToString(),
              report);
    if (poll_start - *unreachable_since_ >= options_.unreachable_grace) {
      cut_off = KeyUnavailableError(
          "keystore unreachable for longer than the grace period of " +
          FormatDuration(options_.unreachable_grace) +
          " ([watcher] "
          "unreachable_grace): " +
          counter.status().message());
    }
  }
  AutoRotate(keystore_changed, report);

  const auto check_start = SteadyClock::now();
  Result<std::vector<KeyUse>> uses = engine_->KeyUses();
  if (!uses.ok()) {
    Status s = uses.status().WithContext("key watcher: cannot list key uses");
    NoteError("key-uses", s.message(), report);
    {
      MutexLock sl(&stats_mu_);
      ++stats_.polls;
    }
    observe(false);
    return s;
  }
  ClearError("key-uses");
  if (cut_off) {
    SealAllUnreachable(*uses, *cut_off, check_start, report);
  } else {
    CheckKeyUses(*uses, keystore_readable, check_start, report);
  }
  {
    MutexLock sl(&stats_mu_);
    ++stats_.polls;
  }
  observe(true);
  return report;
}

SteadyClock::time_point KeyWatcher::TimerNow() const {
  return options_.timer_clock ? options_.timer_clock() : SteadyClock::now();
}

void KeyWatcher::ApplyRotationPoliciesIfDue(PollReport& report) {
  const auto now = TimerNow();
  if (last_policy_run_ &&
      now - *last_policy_run_ < options_.rotation_policy_interval) {
    return;
  }
  last_policy_run_ = now;
  Result<std::vector<keystore::KeyId>> created =
      keystore_->ApplyRotationPolicies();
  if (!created.ok()) {
    NoteError("rotation-policies",
              "key watcher: applying rotation policies failed: " +
                  created.status().ToString(),
              report);
    return;
  }
  ClearError("rotation-policies");
  for (const keystore::KeyId& id : *created) {
    spdlog::info("rotation policy created key version {}", id.ToString());
    report.policy_rotations.push_back(id);
  }
}

void KeyWatcher::AutoRotate(bool keystore_changed, PollReport& report) {
  Result<std::vector<DesInfo>> all = engine_->ListDes();
  if (!all.ok()) {
    NoteError("list-des",
              "key watcher: cannot list disk encryption sets: " +
                  all.status().ToString(),
              report);
    return;
  }
  ClearError("list-des");
  std::string fingerprint;
  for (const DesInfo& des : *all) {
    if (!des.auto_rotate) continue;
    fingerprint += des.name + '\n' + des.key_id.ToString() + '\n';
  }
  // A new key version only appears with a keystore change; the periodic
  // check covers a change missed while a DES was being edited.
  const auto now = TimerNow();
  const auto periodic =
      std::max(options_.poll_interval, options_.auto_rotation_window / 4);
  const bool due = keystore_changed || fingerprint != last_des_fingerprint_ ||
                   !last_rotation_check_ ||
                   now - *last_rotation_check_ >= periodic;
  if (!due) return;
  last_rotation_check_ = now;
  last_des_fingerprint_ = fingerprint;

  std::map<std::string, std::string> errors;
  // Shown by `des show` as rotation_error until a rotation succeeds.
  auto record_error = [&](const DesInfo& des, const std::string& topic,
                          std::string msg) REQUIRES(poll_mu_) {
    NoteError(topic, msg, report);
    if (des.rotation_error != msg) {
      Status saved = engine_->SetDesRotationError(des.name, msg);
      if (!saved.ok()) {
        NoteError("rotation-error:" + des.name,
                  "key watcher: cannot record the rotation error of disk "
                  "encryption set " +
                      des.name + ": " + saved.ToString(),
                  report);
      }
    }
    errors[des.name] = std::move(msg);
  };
  for (const DesInfo& des : *all) {
    if (!des.auto_rotate) continue;
    const std::string topic = "rotate:" + des.name;
    keystore::KeyId versionless = des.key_id;
    versionless.version.clear();
    Result<keystore::KeyVersionInfo> latest =
        keystore_->GetKeyVersion(des.identity, versionless);
    if (!latest.ok()) {
      record_error(des, topic,
                   "auto-rotation of disk encryption set " + des.name +
                       ": cannot resolve the latest version of " +
                       versionless.ToString() + ": " +
                       latest.status().ToString());
      continue;
    }
    if (latest->id.version == des.key_id.version) {
      ClearError(topic);
      // Up to date with nothing pending: an error this watcher recorded
      // (say, a permission granted since) is over.
      if (!des.rotation_error.empty() && !des.previous_key_id) {
        engine_->SetDesRotationError(des.name, "").IgnoreError();
      }
      continue;
    }
    // Only forward: when the DES's own version is disabled, the latest
    // enabled one is older, and moving back would need the disabled one.
    Result<bool> newer = IsNewerVersion(des.identity, latest->id, des.key_id);
    if (!newer.ok()) {
      record_error(des, topic,
                   "auto-rotation of disk encryption set " + des.name +
                       ": cannot order the versions of " +
                       versionless.ToString() + ": " +
                       newer.status().ToString());
      continue;
    }
    if (!*newer) {
      ClearError(topic);
      continue;
    }
    Result<DesInfo> updated =
        engine_->UpdateDes(des.name, latest->id, std::nullopt);
    if (!updated.ok()) {
      record_error(des, topic,
                   "auto-rotation of disk encryption set " + des.name +
                       " from " + des.key_id.ToString() + " to " +
                       latest->id.ToString() +
                       " failed: " + updated.status().ToString());
      continue;
    }
    ClearError(topic);
    spdlog::info("auto-rotated disk encryption set {} from {} to {}", des.name,
                 des.key_id.ToString(), latest->id.ToString());
    report.rotated_des.push_back(des.name);
    MutexLock sl(&stats_mu_);
    ++stats_.rotations;
  }
  MutexLock sl(&stats_mu_);
  stats_.rotation_errors = std::move(errors);
}

Result<bool> KeyWatcher::IsNewerVersion(const std::string& identity,
                                        const keystore::KeyId& candidate,
                                        const keystore::KeyId& current) {
  CMKFS_ASSIGN_OR_RETURN(
      keystore::KeyInfo key,
      keystore_->GetKey(identity, candidate.vault, candidate.name));
  std::optional<size_t> candidate_index;
  std::optional<size_t> current_index;
  for (size_t i = 0; i < key.versions.size(); ++i) {
    if (key.versions[i].id.version == candidate.version) candidate_index = i;
    if (key.versions[i].id.version == current.version) current_index = i;
  }
  if (!candidate_index) {
    return NotFoundError("version " + candidate.version + " not listed");
  }
  // A DES on another key (or a purged version): any version is a move on.
  if (current.vault != candidate.vault || current.name != candidate.name ||
      !current_index) {
    return true;
  }
  return *candidate_index > *current_index;  // versions are oldest first
}

void KeyWatcher::CheckKeyUses(const std::vector<KeyUse>& uses,
                              bool keystore_readable,
                              SteadyClock::time_point check_start,
                              PollReport& report) {
  std::vector<keystore::UsabilityQuery> queries;
  queries.reserve(uses.size());
  for (const KeyUse& use : uses) {
    queries.push_back({use.identity, use.key_id});
  }
  std::vector<Status> usable = keystore_->CheckUsable(queries);
  if (usable.size() != uses.size()) {
    NoteError("check-usable",
              "key watcher: the keystore answered " +
                  std::to_string(usable.size()) + " usability checks for " +
                  std::to_string(uses.size()) + " key uses",
              report);
    return;
  }
  if (!usable.empty() &&
      std::all_of(usable.begin(), usable.end(), [](const Status& s) {
        return !s.ok() && !MeansUnusable(s);
      })) {
    // A transient read failure must not seal anything: keep every state.
    NoteError("check-usable",
              "key watcher: cannot check " + std::to_string(uses.size()) +
                  " key uses, every resource keeps its state: " +
                  usable.front().message(),
              report);
    return;
  }
  ClearError("check-usable");

  std::set<ResourceKey> present;
  for (size_t i = 0; i < uses.size(); ++i) {
    const KeyUse& use = uses[i];
    const Status& status = usable[i];
    ResourceKey key{use.kind, use.name};
    present.insert(key);
    const bool ours = sealed_by_us_.count(key) > 0;
    if (status.ok()) {
      ClearError("check:" + ResourcePath(use.kind, use.name));
      if (use.state == ResourceState::kSealed || ours) {
        UnsealOne(use, report);
      }
    } else if (MeansUnusable(status) && keystore_readable) {
      if (use.state == ResourceState::kActive && !ours) {
        SealOne(use, status, check_start, report);
      }
    } else if (keystore_readable) {
      // Not knowing is no reason to cut a disk off: keep its state.
      NoteError("check:" + ResourcePath(use.kind, use.name),
                "key watcher: cannot check key " + use.key_id.ToString() +
                    " of " + ResourcePath(use.kind, use.name) + ": " +
                    status.ToString(),
                report);
    }
  }
  std::erase_if(sealed_by_us_,
                [&](const ResourceKey& k) { return !present.count(k); });
}

void KeyWatcher::SealAllUnreachable(const std::vector<KeyUse>& uses,
                                    const Status& why,
                                    SteadyClock::time_point check_start,
                                    PollReport& report) {
  for (const KeyUse& use : uses) {
    if (use.state != ResourceState::kActive) continue;
    if (sealed_by_us_.count({use.kind, use.name}) > 0) continue;
    SealOne(use, why, check_start, report);
  }
}

void KeyWatcher::SealOne(const KeyUse& use, const Status& why,
                         SteadyClock::time_point check_start,
                         PollReport& report) {
  const std::string path = ResourcePath(use.kind, use.name);
  const std::string problem = KeyProblem(why, use.key_id);
  const std::string reason =
      "key " + use.key_id.ToString() + " unusable: " + problem;
  Status sealed = engine_->Seal(use.kind, use.name, reason);
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(
      SteadyClock::now() - check_start);
  if (!sealed.ok()) {
    if (sealed.kind() != ErrorKind::kNotFound) {  // deleted meanwhile
      NoteError("seal:" + path,
                "key watcher: cannot seal " + path + " (" + reason +
                    "): " + sealed.ToString(),
                report);
    }
    return;
  }
  ClearError("seal:" + path);
  sealed_by_us_.insert({use.kind, use.name});
  spdlog::warn("sealed {} {}: {} (sealed {} after detection)",
               ResourceKindName(use.kind), use.name, reason,
               FormatLatency(latency));
  Audit(use, std::string(ResourceKindName(use.kind)) + ".seal",
        "sealed " + path + ": " + problem);
  {
    MutexLock sl(&stats_mu_);
    ++stats_.seals;
    stats_.last_seal_latency = latency;
    stats_.max_seal_latency = std::max(stats_.max_seal_latency, latency);
  }
  if (options_.seal_observer) options_.seal_observer(latency);
  report.sealed.push_back(path);
  if (use.kind == ResourceKind::kDisk) RunOnSeal(use, reason);
}

void KeyWatcher::UnsealOne(const KeyUse& use, PollReport& report) {
  const std::string path = ResourcePath(use.kind, use.name);
  Status unsealed = engine_->Unseal(use.kind, use.name);
  if (!unsealed.ok()) {
    if (unsealed.kind() == ErrorKind::kNotFound) {
      sealed_by_us_.erase({use.kind, use.name});
    } else {
      NoteError("unseal:" + path,
                "key watcher: cannot unseal " + path + " although key " +
                    use.key_id.ToString() +
                    " is usable again: " + unsealed.ToString(),
                report);
    }
    return;
  }
  ClearError("unseal:" + path);
  sealed_by_us_.erase({use.kind, use.name});
  spdlog::warn("unsealed {} {}: key {} usable again",
               ResourceKindName(use.kind), use.name, use.key_id.ToString());
  Audit(use, std::string(ResourceKindName(use.kind)) + ".unseal",
        "unsealed " + path);
  {
    MutexLock sl(&stats_mu_);
    ++stats_.unseals;
  }
  report.unsealed.push_back(path);
}

void KeyWatcher::Audit(const KeyUse& use, std::string_view operation,
                       std::string result) {
  keystore::AuditEntry entry;
  entry.time = Now();
  entry.identity = use.identity;
  entry.operation = std::string(operation);
  entry.key_id = use.key_id.ToString();
  entry.result = std::move(result);
  Status s = keystore_->AppendAudit(use.key_id.vault, entry);
  if (!s.ok()) {
    // The seal itself happened; a lost audit line is logged, not retried.
    spdlog::error(
        "key watcher: cannot record {} of {} {} in the audit of {}: {}",
        operation, ResourceKindName(use.kind), use.name, use.key_id.vault,
        s.ToString());
  }
}

void KeyWatcher::RunOnSeal(const KeyUse& use, const std::string& reason) {
  if (options_.on_seal.empty()) return;
  // The disk name travels as its own argv entry ("$@"), never through the
  // command text, so no name can inject shell syntax.
  const std::string script = options_.on_seal + " \"$@\"";
  const std::string arg0 = "cmkfs-on-seal";
  std::vector<char*> argv = {
      const_cast<char*>("/bin/sh"),        const_cast<char*>("-c"),
      const_cast<char*>(script.c_str()),   const_cast<char*>(arg0.c_str()),
      const_cast<char*>(use.name.c_str()), nullptr};
  std::vector<std::string> extra_env = {
      "CMKFS_DISK=" + use.name, "CMKFS_SEAL_REASON=" + reason,
      "CMKFS_KEY_ID=" + use.key_id.ToString()};
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "CMKFS_DISK=", 11) == 0 ||
        std::strncmp(*e, "CMKFS_SEAL_REASON=", 18) == 0 ||
        std::strncmp(*e, "CMKFS_KEY_ID=", 13) == 0) {
      continue;
    }
    envp.push_back(*e);
  }
  for (std::string& e : extra_env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  // stdin from /dev/null; stdout/stderr shared with the daemon; no other
  // descriptor (the FUSE channel, LMDB files) leaks into the command.
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  sigset_t empty;
  sigset_t defaults;
  sigemptyset(&empty);
  sigfillset(&defaults);
  sigdelset(&defaults, SIGKILL);
  sigdelset(&defaults, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
  pid_t pid = 0;
  const int err =
      posix_spawn(&pid, "/bin/sh", &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);

  MutexLock sl(&stats_mu_);
  ++stats_.on_seal_started;
  if (err != 0) {
    ++stats_.on_seal_failed;
    spdlog::error("on_seal for disk {}: cannot start /bin/sh: {}", use.name,
                  std::strerror(err));
    return;
  }
  spdlog::info("on_seal for disk {} started (pid {})", use.name, pid);
  children_.push_back({pid, use.name});
  stats_.on_seal_running = children_.size();
}

void KeyWatcher::ReapChildren(bool log_running) {
  MutexLock sl(&stats_mu_);
  uint64_t failed = 0;
  std::erase_if(children_, [&](const Child& child) {
    int status = 0;
    const pid_t r = waitpid(child.pid, &status, WNOHANG);
    if (r == 0) {
      if (log_running) {
        spdlog::info("on_seal for disk {} (pid {}) still running", child.disk,
                     child.pid);
      }
      return false;
    }
    if (r < 0) {
      // ECHILD: someone else reaped it; its status is lost.
      spdlog::warn("on_seal for disk {} (pid {}): cannot wait for it: {}",
                   child.disk, child.pid, std::strerror(errno));
      return true;
    }
    const bool success = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (success) {
      spdlog::info("on_seal for disk {} finished: {}", child.disk,
                   DescribeWaitStatus(status));
    } else {
      ++failed;
      spdlog::warn("on_seal for disk {} failed: {}", child.disk,
                   DescribeWaitStatus(status));
    }
    return true;
  });
  stats_.on_seal_failed += failed;
  stats_.on_seal_running = children_.size();
}

size_t KeyWatcher::WaitForOnSealCommands(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    ReapChildren(/*log_running=*/false);
    size_t running = 0;
    {
      MutexLock sl(&stats_mu_);
      running = children_.size();
    }
    if (running == 0 || SteadyClock::now() >= deadline) return running;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

WatcherStats KeyWatcher::stats() const {
  MutexLock sl(&stats_mu_);
  return stats_;
}

void KeyWatcher::NoteError(const std::string& topic, const std::string& message,
                           PollReport& report) {
  report.errors.push_back(message);
  {
    MutexLock sl(&stats_mu_);
    ++stats_.errors;
  }
  auto [it, inserted] = last_errors_.try_emplace(topic, message);
  if (!inserted && it->second == message) return;
  it->second = message;
  spdlog::error("{}", message);
}

void KeyWatcher::ClearError(const std::string& topic) {
  auto it = last_errors_.find(topic);
  if (it == last_errors_.end()) return;
  spdlog::info("key watcher: resolved: {}", it->second);
  last_errors_.erase(it);
}

}  // namespace cmkfs::fs
