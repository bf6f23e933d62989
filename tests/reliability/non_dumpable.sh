#!/usr/bin/env bash
# The daemon is not dumpable (it calls PR_SET_DUMPABLE 0 at start), checked by
# what that flag is for: a crash of the daemon leaves no core dump holding
# DEKs, where an ordinary process with the same core limit and pattern does.
#  1. Points kernel.core_pattern at a scratch directory (restored on exit).
#  2. Control: `sleep` with `ulimit -c unlimited`, killed with SIGABRT, must
#     leave a core file (otherwise this machine cannot show the difference,
#     and the test fails saying so).
#  3. The daemon, started the same way with a disk open, killed with SIGABRT,
#     must leave none.
#  4. cmkctl in local mode, started the same way, killed with SIGABRT during
#     a long `disk export`, must leave none.
# Usage: non_dumpable.sh CMKFS CMKCTL
set -euo pipefail

CMKFS_BIN=${1:?path to cmkfs}
CMKCTL_BIN=${2:?path to cmkctl}
unset CMKFS_CONFIG CMKFS_STATE_DIR
ROOT=$(mktemp -d /tmp/cmkfs-rel-dump-XXXXXX)
STATE=$ROOT/state MNT=$ROOT/mnt CORES=$ROOT/cores
mkdir -p "$STATE" "$MNT" "$CORES"
old_pattern=$(cat /proc/sys/kernel/core_pattern)

cleanup() {
  echo "$old_pattern" >/proc/sys/kernel/core_pattern || true
  local pid
  pid=$(cat "$STATE/cmkfs.pid" 2>/dev/null || true)
  [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  rm -rf "$ROOT"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits up to 10 s for PID to be gone.
wait_gone() {
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
cores_of() { find "$CORES" -name "core.*.$1" | head -1; }

echo "$CORES/core.%e.%p" >/proc/sys/kernel/core_pattern

# 2. The control.
control_pid=$(bash -c 'ulimit -c unlimited; sleep 60 >/dev/null 2>&1 & echo $!')
kill -ABRT "$control_pid"
wait_gone "$control_pid" || fail "control sleep (pid $control_pid) did not die on SIGABRT"
[[ -n "$(cores_of "$control_pid")" ]] ||
  fail "no core dump from the control process in $CORES: this machine does not write core dumps (ulimit -c or a core_pattern the kernel refuses), so non-dumpability cannot be shown"

# 3. The daemon, with a disk open (a DEK in memory).
ctl() { timeout 60 "$CMKCTL_BIN" --state-dir "$STATE" "$@"; }
ctl vault create dumpvault --purge-protection >/dev/null
key_id=$(ctl key create dumpvault k1)
des_id=$(ctl des create des1 --key-id "$key_id")
ctl vault set-policy dumpvault --object-id "$des_id" \
  --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create d1 --size 64M --des des1 >/dev/null
# ASan (the CI build) turns core dumps off itself unless told not to.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0" \
  bash -c 'ulimit -c unlimited; exec timeout 60 "$0" --state-dir "$1" "$2"' \
  "$CMKFS_BIN" "$STATE" "$MNT" || fail "cmkfs did not start"
pid=$(cat "$STATE/cmkfs.pid")
# Started with an unlimited core limit, the daemon lowers it to 0 itself
# (crypto::ProtectProcessSecrets, besides PR_SET_DUMPABLE 0).
grep -q '^Max core file size *0 ' "/proc/$pid/limits" ||
  fail "the daemon did not lower its core limit to 0: $(grep 'core' "/proc/$pid/limits")"
exec 3<"$MNT/disks/d1"
head -c 4096 <&3 >/dev/null
kill -ABRT "$pid"
wait_gone "$pid" || fail "cmkfs (pid $pid) did not die on SIGABRT"
exec 3<&-
core=$(cores_of "$pid")
[[ -z "$core" ]] || fail "the daemon left a core dump ($core, $(stat -c %s "$core") bytes): it is dumpable"
echo "PASS: the control left a core dump, the daemon (pid $pid, disk open) left none"

# 4. cmkctl in local mode (no daemon) holds the DEK while it exports a disk:
#    killed with SIGABRT in the middle of a long export, started like the
#    daemon (unlimited core limit), it must leave no core either.
fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
head -c 256M /dev/zero | tr '\0' 'x' >"$ROOT/fill.raw"
ctl disk create d2 --size 256M --des des1 --import "$ROOT/fill.raw" >/dev/null 2>&1
rm -f "$ROOT/fill.raw"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0" \
  bash -c 'ulimit -c unlimited; exec "$0" --state-dir "$1" disk export d2 "$2"' \
  "$CMKCTL_BIN" "$STATE" "$ROOT/d2.raw" >"$ROOT/export.log" 2>&1 &
ctl_pid=$!
ctl_fail() {
  kill -KILL "$ctl_pid" 2>/dev/null || true
  fail "$@"
}
# The export has the DEK once it writes data: stop cmkctl there.
for _ in $(seq 1 1000); do
  [[ -s "$ROOT/d2.raw" ]] && break
  kill -0 "$ctl_pid" 2>/dev/null || break
  sleep 0.01
done
kill -STOP "$ctl_pid" 2>/dev/null ||
  fail "cmkctl disk export ended before it could be stopped mid-export: $(cat "$ROOT/export.log")"
[[ -s "$ROOT/d2.raw" ]] || ctl_fail "cmkctl disk export wrote nothing within 10 s"
for _ in $(seq 1 100); do
  [[ "$(awk '{print $3}' "/proc/$ctl_pid/stat")" == T ]] && break
  sleep 0.05
done
[[ "$(awk '{print $3}' "/proc/$ctl_pid/stat")" == T ]] ||
  ctl_fail "cmkctl (pid $ctl_pid) did not stop mid-export"
grep -q '^Max core file size *0 ' "/proc/$ctl_pid/limits" ||
  ctl_fail "cmkctl did not lower its core limit to 0: $(grep 'core' "/proc/$ctl_pid/limits")"
kill -ABRT "$ctl_pid"
kill -CONT "$ctl_pid"
wait "$ctl_pid" && fail "cmkctl finished the export despite SIGABRT"
core=$(cores_of "$ctl_pid")
[[ -z "$core" ]] || fail "cmkctl left a core dump ($core, $(stat -c %s "$core") bytes) when aborted during disk export"
echo "PASS: cmkctl (pid $ctl_pid), aborted during a local disk export, left no core dump"
