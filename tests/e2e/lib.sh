# Shared setup for the end-to-end scripts: a fresh state directory and
# mountpoint, cmkctl/cmkfs wrappers, and a trap that always unmounts and
# stops the daemon, then fails on any sanitizer report or bad daemon exit
# (tests/daemon_reports.sh). Usage: source lib.sh CMKFS CMKCTL
set -euo pipefail
# shellcheck source=tests/daemon_reports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../daemon_reports.sh"

CMKFS_BIN=$(realpath "${1:?path to cmkfs}")
CMKCTL_BIN=$(realpath "${2:?path to cmkctl}")
unset CMKFS_CONFIG CMKFS_STATE_DIR
E2E_ROOT=$(mktemp -d /tmp/cmkfs-e2e-XXXXXX)
STATE=$E2E_ROOT/state
MNT=$E2E_ROOT/mnt
WORK=$E2E_ROOT/work
mkdir -p "$STATE" "$MNT" "$WORK"
reports_init "$E2E_ROOT/reports" \
  "${CMKFS_TEST_REAPER:-$(dirname "$CMKFS_BIN")/../../tests/support/cmkfs_test_reaper}"
cd "$WORK"  # tools that drop files in the current directory (fio) stay here
E2E_LOOPS=()
E2E_INNER_MOUNTS=()

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cmkctl() { "$CMKCTL_BIN" --state-dir "$STATE" "$@"; }

daemon_pid() { cat "$STATE/cmkfs.pid" 2>/dev/null || true; }

is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

start_daemon() {
  reports_launch "$CMKFS_BIN" --state-dir "$STATE" "$MNT" || fail "cmkfs did not start"
  is_mounted "$MNT" || fail "cmkfs reported success but $MNT is not mounted"
}

# SIGTERM and wait for a clean exit (the mount must be gone).
stop_daemon() {
  local pid
  pid=$(daemon_pid)
  [[ -n "$pid" ]] || fail "no daemon to stop: $STATE/cmkfs.pid is missing"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    alive "$pid" || break
    sleep 0.1
  done
  alive "$pid" && fail "cmkfs (pid $pid) did not exit after SIGTERM"
  is_mounted "$MNT" && fail "$MNT still mounted after the daemon exited"
  return 0
}

e2e_cleanup() {
  local rc=$?
  set +e
  cd /
  for m in "${E2E_INNER_MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
  for l in "${E2E_LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  local pid
  pid=$(daemon_pid)
  if [[ -n "$pid" ]] && alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  if is_mounted "$MNT"; then fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"; fi
  reports_check || [[ $rc -ne 0 ]] || rc=1
  is_mounted "$MNT" || rm -rf "$E2E_ROOT"
  if [[ $rc -eq 0 ]]; then log "PASS"; else log "FAILED (exit $rc)"; fi
  exit $rc
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM
