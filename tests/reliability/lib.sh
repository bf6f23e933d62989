# shellcheck shell=bash disable=SC2034
# Shared setup of the reliability scripts: a fresh state directory and
# mountpoint under /tmp, cmkctl/cmkfs wrappers with timeouts, kill -9 and
# stale-mount cleanup, and an EXIT trap that always unmounts, stops the
# daemon, fails on any sanitizer report or bad daemon exit
# (tests/daemon_reports.sh) and removes the directory (kept after a failure
# when CMKFS_KEEP_FAILED=1).
# Usage: source lib.sh CMKFS CMKCTL FSX CRASH_WRITER
set -euo pipefail
# shellcheck source=tests/daemon_reports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../daemon_reports.sh"

CMKFS_BIN=${1:?path to cmkfs}
CMKCTL_BIN=${2:?path to cmkctl}
FSX_BIN=${3:-}
CRASH_WRITER_BIN=${4:-}
unset CMKFS_CONFIG CMKFS_STATE_DIR
LONG=${CMKFS_LONG_TESTS:-0}
REL_ROOT=$(mktemp -d /tmp/cmkfs-rel-XXXXXX)
STATE=$REL_ROOT/state
MNT=$REL_ROOT/mnt
WORK=$REL_ROOT/work
mkdir -p "$STATE" "$MNT" "$WORK"
reports_init "$REL_ROOT/reports" \
  "${CMKFS_TEST_REAPER:-$(dirname "$CMKFS_BIN")/../../tests/support/cmkfs_test_reaper}"
REL_EXTRA_MOUNTS=()   # unmounted (lazily) by the trap, last first
REL_CHILDREN=()       # background pids killed by the trap

log() { echo "[$(date +%H:%M:%S.%N | cut -c1-12)] $*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# cmkctl against the live daemon (or directly on the state dir), 120 s cap.
cmkctl() { timeout 120 "$CMKCTL_BIN" --state-dir "$STATE" "$@"; }

daemon_pid() { cat "$STATE/cmkfs.pid" 2>/dev/null || true; }
is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

# Starts the daemon detached; returns once the mount is up.
start_daemon() {
  reports_launch "$CMKFS_BIN" --state-dir "$STATE" "$@" "$MNT" || fail "cmkfs did not start"
  is_mounted "$MNT" || fail "cmkfs reported success but $MNT is not mounted"
}

# SIGTERM and wait for a clean exit.
stop_daemon() {
  local pid
  pid=$(daemon_pid)
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && fail "cmkfs (pid $pid) did not exit after SIGTERM"
  is_mounted "$MNT" && fail "$MNT still mounted after the daemon exited"
  return 0
}

# kill -9 the daemon, wait until it is gone, and clean the stale mount
# (the kernel keeps it, answering ENOTCONN, until it is unmounted).
kill9_daemon() {
  local pid
  pid=$(daemon_pid)
  [[ -n "$pid" ]] || fail "no daemon pid to kill"
  reports_killed "$pid"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.05; done
  alive "$pid" && fail "cmkfs (pid $pid) survived kill -9: $(grep '^State' "/proc/$pid/status" 2>&1)"
  clean_stale_mount
}

# A foreground daemon on $CONF, logging to $DLOG (both set by the script);
# extra arguments go to cmkfs. stop_fg: SIGTERM, clean exit, unmounted.
FG_PID=
start_fg() { # [CMKFS_ARGS...]
  "$CMKFS_BIN" --config "$CONF" --foreground "$@" "$MNT" >>"$DLOG" 2>&1 &
  FG_PID=$!
  # shellcheck disable=SC2034
  REL_CHILDREN=("$FG_PID")
  for _ in $(seq 1 200); do is_mounted "$MNT" && [[ -d "$MNT/disks" ]] && return 0; sleep 0.05; done
  cat "$DLOG" >&2
  fail "cmkfs --foreground did not mount"
}
stop_fg() {
  kill -TERM "$FG_PID"
  wait "$FG_PID" || fail "cmkfs exited with an error on SIGTERM"
  is_mounted "$MNT" && fail "still mounted after SIGTERM"
  return 0
}
clean_stale_mount() {
  if is_mounted "$MNT"; then
    fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  fi
  for _ in $(seq 1 100); do is_mounted "$MNT" || return 0; sleep 0.05; done
  fail "stale mount $MNT could not be removed"
}

# Seconds (float) uniformly in [lo, hi).
rand_between() { awk -v lo="$1" -v hi="$2" -v r="$RANDOM$RANDOM" 'BEGIN{srand(r); printf "%.3f", lo+rand()*(hi-lo)}'; }

# cmkctl fsck must say the state is clean (exit 0).
expect_fsck_clean() {
  local out rc=0
  out=$(cmkctl fsck 2>&1) || rc=$?
  [[ $rc -eq 0 ]] || fail "cmkctl fsck is not clean (exit $rc): $out"
}

rel_cleanup() {
  local rc=$?
  set +e
  for p in "${REL_CHILDREN[@]}"; do kill -KILL "$p" 2>/dev/null; done
  local pid
  pid=$(daemon_pid)
  if [[ -n "$pid" ]] && alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  for ((i = ${#REL_EXTRA_MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -l "${REL_EXTRA_MOUNTS[$i]}" 2>/dev/null
  done
  if is_mounted "$MNT"; then fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"; fi
  for m in "${REL_EXTRA_MOUNTS[@]}"; do is_mounted "$m" && umount -l "$m" 2>/dev/null; done
  reports_check || [[ $rc -ne 0 ]] || rc=1
  if [[ $rc -eq 0 || "${CMKFS_KEEP_FAILED:-0}" != 1 ]]; then
    is_mounted "$MNT" || rm -rf "$REL_ROOT"
  else
    log "state kept for inspection in $REL_ROOT"
  fi
  if [[ $rc -eq 0 ]]; then log "PASS"; else log "FAILED (exit $rc)"; fi
  exit $rc
}
trap rel_cleanup EXIT
trap 'exit 130' INT TERM
