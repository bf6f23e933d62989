#!/usr/bin/env bash
# The shipped cmkvault unit passes `systemd-analyze verify` and its sandbox
# keeps `systemd-analyze security` at or under the documented exposure, both
# offline. Usage: cmkvault_unit_test.sh UNIT_FILE CMKVAULT_BINARY MAX_EXPOSURE
set -euo pipefail
unit=${1:?unit file}
cmkvault=${2:?cmkvault binary}
max=${3:?maximum exposure score}
# shellcheck source=tests/packaging/unit_check.sh
source "$(dirname "$0")/unit_check.sh"
check_unit "$unit" /usr/bin/cmkvault "$cmkvault" "$max"
# The serve command is what the unit runs, and the keys stay out of dumps.
for line in 'ExecStart=/usr/bin/cmkvault --config /etc/cmkfs/cmkvault.toml serve' \
  StateDirectory=cmkvault StateDirectoryMode=0700 LimitCORE=0 NoNewPrivileges=yes \
  CapabilityBoundingSet=CAP_IPC_LOCK ProtectSystem=strict; do
  grep -qx "$line" "$unit" || fail "$unit lacks '$line'"
done
echo "PASS"
