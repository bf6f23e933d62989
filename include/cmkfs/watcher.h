// The key watcher: seals resources whose key can no longer be used, unseals
// them when it can again, picks up new key versions for auto-rotating disk
// encryption sets and applies the keystore's rotation policies on a timer.
//
// One KeyWatcher runs one thread (Start/Stop) in the daemon; PollOnce() runs
// a single poll synchronously (tests, the CLI without a daemon). The watcher
// decides, the engine acts: per-SKU seal semantics (UltraSSD_LRS stays usable
// while open) are the engine's Seal().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cmkfs/engine.h"
#include "cmkfs/keystore.h"
#include "cmkfs/mutex.h"
#include "cmkfs/status.h"

namespace cmkfs::fs {

struct WatcherOptions {
  // How often every key in use is checked. Seal latency is at most this
  // plus the time of one poll.
  std::chrono::milliseconds poll_interval{std::chrono::seconds(5)};
  // An auto-rotating DES picks up a new latest key version within this.
  std::chrono::milliseconds auto_rotation_window{std::chrono::hours(1)};
  // While the keystore cannot be reached (its change counter cannot be
  // read: the vault service is down or cut off), resources keep their state
  // this long; then every active one is sealed, and unsealed once the
  // keystore answers again and its key is usable. Zero: seal at the first
  // poll that cannot reach it.
  std::chrono::milliseconds unreachable_grace{std::chrono::minutes(5)};
  // Subscribe to the keystore's pushed changes (KeyStore::SubscribeChanges;
  // the vault service's WatchKeys) and poll as soon as one arrives; polling
  // at poll_interval stays the fallback. Stores without push only poll.
  bool subscribe = true;
  // Run through /bin/sh -c with the disk name appended as its last argument
  // ("$@"), whenever a disk is sealed. Empty: nothing runs.
  std::string on_seal;
  // How often KeyStore::ApplyRotationPolicies runs. Zero: every poll.
  std::chrono::milliseconds rotation_policy_interval{std::chrono::minutes(1)};
  // The clock of the two timers above (the rotation-policy interval and the
  // periodic auto-rotation re-check). Empty: std::chrono::steady_clock.
  // Tests set it to step time without waiting.
  std::function<std::chrono::steady_clock::time_point()> timer_clock;
  // Observers (the daemon's metrics), called on the polling thread; they
  // must return quickly and not call the watcher. Empty: not called.
  // After every poll: its duration and whether the key uses could be listed.
  std::function<void(std::chrono::microseconds, bool)> poll_observer;
  // After every seal: its latency, as WatcherStats::last_seal_latency.
  std::function<void(std::chrono::microseconds)> seal_observer;
};

// What one poll did. Resources are named "disks/NAME", "snapshots/NAME",
// "images/NAME".
struct PollReport {
  uint64_t change_counter = 0;  // keystore ChangeCounter seen by this poll
  std::vector<std::string> sealed;
  std::vector<std::string> unsealed;
  std::vector<std::string> rotated_des;  // DES names re-pointed this poll
  std::vector<keystore::KeyId> policy_rotations;  // versions created
  std::vector<std::string> errors;  // one line per failed step; the poll
                                    // carried on with the other resources
};

struct WatcherStats {
  uint64_t polls = 0;
  uint64_t seals = 0;
  uint64_t unseals = 0;
  uint64_t rotations = 0;
  uint64_t errors = 0;
  uint64_t on_seal_started = 0;
  uint64_t on_seal_failed = 0;  // spawn failure, non-zero exit or signal
  uint64_t on_seal_running = 0;
  // Pushed change events received, and whether the push stream is up now.
  uint64_t push_events = 0;
  bool push_connected = false;
  // From the start of the poll that saw the key unusable to the return of
  // Engine::Seal, for the most recent seal and the worst one.
  std::chrono::microseconds last_seal_latency{0};
  std::chrono::microseconds max_seal_latency{0};
  // Last error of the auto-rotation of each DES (empty once it succeeds).
  std::map<std::string, std::string> rotation_errors;
};

class KeyWatcher {
 public:
  // `engine` and `keystore` must outlive the watcher.
  KeyWatcher(Engine* engine, keystore::KeyStore* keystore,
             WatcherOptions options);
  // Stops the thread if running.
  ~KeyWatcher();
  KeyWatcher(const KeyWatcher&) = delete;
  KeyWatcher& operator=(const KeyWatcher&) = delete;

  // Starts the poll thread (first poll at once) and, with
  // options.subscribe, the keystore's change subscription when it has one.
  // FailedPrecondition if it already runs; InvalidArgument for a poll
  // interval of zero.
  Status Start() EXCLUDES(thread_mu_);
  // Wakes and joins the thread; returns within one poll's duration, not a
  // poll interval. Idempotent. Running on_seal commands are not waited for.
  void Stop() EXCLUDES(thread_mu_, stats_mu_);
  // Makes the thread poll now instead of at the end of its interval.
  void Wake() EXCLUDES(thread_mu_);

  // One poll, synchronously: rotation policies (when due), auto-rotation,
  // then seal/unseal of every resource. Thread-safe (polls are serialized).
  // Fails only when the engine cannot list its key uses; per-resource
  // failures are logged and listed in the report.
  Result<PollReport> PollOnce() EXCLUDES(poll_mu_, stats_mu_);

  // Waits up to `timeout` for running on_seal commands to exit, reaping and
  // logging each. Returns how many still run.
  size_t WaitForOnSealCommands(std::chrono::milliseconds timeout)
      EXCLUDES(stats_mu_);

  WatcherStats stats() const EXCLUDES(stats_mu_);

 private:
  struct ResourceKey {
    ResourceKind kind;
    std::string name;
    auto operator<=>(const ResourceKey&) const = default;
  };
  struct Child {
    pid_t pid;
    std::string disk;
  };

  void Run() EXCLUDES(thread_mu_);
  std::chrono::steady_clock::time_point TimerNow() const;
  // The steps of a poll: they run under poll_mu_ and take stats_mu_ briefly.
  void ApplyRotationPoliciesIfDue(PollReport& report) REQUIRES(poll_mu_);
  void AutoRotate(bool keystore_changed, PollReport& report) REQUIRES(poll_mu_);
  // Whether `candidate` comes after `current` in its key's version list.
  Result<bool> IsNewerVersion(const std::string& identity,
                              const keystore::KeyId& candidate,
                              const keystore::KeyId& current);
  // With the keystore unreadable (its change counter failed) a failed check
  // means nothing: nothing is sealed, sealed resources may still unseal.
  void CheckKeyUses(const std::vector<KeyUse>& uses, bool keystore_readable,
                    std::chrono::steady_clock::time_point poll_start,
                    PollReport& report) REQUIRES(poll_mu_);
  // Seals every active resource: the keystore has been unreachable for
  // longer than the grace period (`why`).
  void SealAllUnreachable(const std::vector<KeyUse>& uses, const Status& why,
                          std::chrono::steady_clock::time_point poll_start,
                          PollReport& report) REQUIRES(poll_mu_);
  void SealOne(const KeyUse& use, const Status& why,
               std::chrono::steady_clock::time_point poll_start,
               PollReport& report) REQUIRES(poll_mu_);
  void UnsealOne(const KeyUse& use, PollReport& report) REQUIRES(poll_mu_);
  void Audit(const KeyUse& use, std::string_view operation, std::string result);
  void RunOnSeal(const KeyUse& use, const std::string& reason)
      EXCLUDES(stats_mu_);
  void ReapChildren(bool log_running) EXCLUDES(stats_mu_);
  // Logs `message` at warn unless it is the same as the last one logged for
  // `topic` (a poll every second must not repeat a lasting error).
  void NoteError(const std::string& topic, const std::string& message,
                 PollReport& report) REQUIRES(poll_mu_);
  void ClearError(const std::string& topic) REQUIRES(poll_mu_);

  Engine* const engine_;
  keystore::KeyStore* const keystore_;
  const WatcherOptions options_;

  // Lock order: poll_mu_, then stats_mu_. thread_mu_ is never held with
  // either (the thread drops it to poll). Engine and keystore calls are made
  // under poll_mu_ only.
  Mutex poll_mu_;  // serializes polls
  std::set<ResourceKey> sealed_by_us_ GUARDED_BY(poll_mu_);
  std::map<std::string, std::string> last_errors_
      GUARDED_BY(poll_mu_);  // topic -> message
  std::optional<uint64_t> last_counter_ GUARDED_BY(poll_mu_);
  // Since when the change counter could not be read (empty: it could).
  std::optional<std::chrono::steady_clock::time_point> unreachable_since_
      GUARDED_BY(poll_mu_);
  std::string last_des_fingerprint_ GUARDED_BY(poll_mu_);
  std::optional<std::chrono::steady_clock::time_point> last_rotation_check_
      GUARDED_BY(poll_mu_);
  std::optional<std::chrono::steady_clock::time_point> last_policy_run_
      GUARDED_BY(poll_mu_);

  mutable Mutex stats_mu_ ACQUIRED_AFTER(poll_mu_);
  WatcherStats stats_ GUARDED_BY(stats_mu_);
  std::vector<Child> children_ GUARDED_BY(stats_mu_);

  Mutex thread_mu_;
  CondVar wake_cv_;
  bool stop_requested_ GUARDED_BY(thread_mu_) = false;
  bool wake_requested_ GUARDED_BY(thread_mu_) = false;
  std::thread thread_ GUARDED_BY(thread_mu_);
  std::unique_ptr<keystore::ChangeSubscription> subscription_
      GUARDED_BY(thread_mu_);
};

}  // namespace cmkfs::fs
