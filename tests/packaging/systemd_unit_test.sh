#!/usr/bin/env bash
# The shipped unit passes `systemd-analyze verify` and its sandbox keeps
# `systemd-analyze security` at or under the exposure documented in
# docs/packaging.md. Both run offline: no systemd as PID 1 is needed.
# Usage: systemd_unit_test.sh UNIT_FILE CMKFS_BINARY MAX_EXPOSURE
set -euo pipefail
unit=${1:?unit file}
cmkfs=${2:?cmkfs binary}
max=${3:?maximum exposure score}
# shellcheck source=tests/packaging/unit_check.sh
source "$(dirname "$0")/unit_check.sh"
check_unit "$unit" /usr/bin/cmkfs "$cmkfs" "$max"

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
