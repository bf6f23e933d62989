#!/usr/bin/env bash
# The shipped unit passes `systemd-analyze verify` and its sandbox keeps
# `systemd-analyze security` at or under the exposure documented in
# docs/packaging.md. Both run offline: no systemd as PID 1 is needed.
# Usage: systemd_unit_test.sh UNIT_FILE CMKFS_BINARY MAX_EXPOSURE
set -euo pipefail
unit=${1:?unit file}
cmkfs=${2:?cmkfs binary}
max=${3:?maximum exposure score}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (apt-get install systemd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify checks that ExecStart's binary exists: point it at this build's.
sed "s#/usr/bin/cmkfs#$cmkfs#" "$unit" >"$tmp/cmkfs.service"
out=$(systemd-analyze verify --man=no "$tmp/cmkfs.service" 2>&1) ||
  fail "systemd-analyze verify failed: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify warned: $out"
echo "verify: ok"

report=$(systemd-analyze security --offline=true "$tmp/cmkfs.service" 2>&1) ||
  fail "systemd-analyze security failed: $report"
score=$(sed -n 's/.*Overall exposure level for cmkfs.service: \([0-9.]*\).*/\1/p' <<<"$report")
[[ -n "$score" ]] || fail "no exposure score in: $report"
echo "exposure: $score (at most $max)"
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' ||
  fail "exposure $score is over $max; the sandbox lost something:
$(grep '✗' <<<"$report")"

# The directives the sandbox is made of (docs/packaging.md says why each).
for line in NoNewPrivileges=yes 'CapabilityBoundingSet=CAP_SYS_ADMIN CAP_IPC_LOCK' \
  RestrictAddressFamilies=AF_UNIX 'SystemCallFilter=@system-service @mount' LimitMEMLOCK= \
  LimitCORE=0 DevicePolicy=closed 'DeviceAllow=/dev/fuse rw' MemoryDenyWriteExecute=yes; do
  grep -q "^$line" "$unit" || fail "$unit lacks '$line'"
done
# None that gives the service a mount namespace: the FUSE mount would then
# never reach the host (systemd.exec(5), MountFlags=).
for ns in ProtectSystem ReadWritePaths ReadOnlyPaths InaccessiblePaths ProtectHome PrivateTmp \
  PrivateDevices PrivateMounts ProtectKernelTunables ProtectKernelModules ProtectKernelLogs \
  ProtectControlGroups ProtectProc ProcSubset BindPaths TemporaryFileSystem MountFlags; do
  grep -q "^$ns=" "$unit" && fail "$unit sets $ns=, which hides cmkfs's mount from the host"
done
# The sandbox must not take from cmkfs what it needs.
for need in CAP_SYS_ADMIN CAP_IPC_LOCK; do
  grep -Eq "^✓ CapabilityBoundingSet=~[^ ]*$need" <<<"$report" &&
    fail "$need is not in the bounding set"
done
echo "PASS"
