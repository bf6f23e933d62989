#!/usr/bin/env bash
# Key watcher e2e: disabling the DES key version seals a mounted disk (fio
# gets EIO within poll interval + 1 s); enabling it unseals without a remount.
set -euo pipefail
# shellcheck source=tests/e2e/watcher_lib.sh
source "$(dirname "$0")/watcher_lib.sh"

setup_disk wdis-vault wdis-des wdis-disk Premium_LRS
mount_cmkfs
revoke_and_restore wdis-disk \
  "ctl key set-attributes wdis-vault k --enabled false" \
  "ctl key set-attributes wdis-vault k --enabled true" \
  "key version disabled"
step "audit"
ctl_quiet vault audit wdis-vault -o json | jq -e '[.[] | select(.operation == "disk.seal")] | length >= 1' >/dev/null ||
  fail "no disk.seal entry in the vault's audit log"
echo "PASS"
