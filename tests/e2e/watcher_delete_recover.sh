#!/usr/bin/env bash
# Key watcher e2e: soft-deleting the key seals the disk; recovering it
# unseals it.
set -euo pipefail
# shellcheck source=tests/e2e/watcher_lib.sh
source "$(dirname "$0")/watcher_lib.sh"

setup_disk wdel-vault wdel-des wdel-disk Premium_LRS
mount_cmkfs
revoke_and_restore wdel-disk \
  "ctl key delete wdel-vault k" \
  "ctl key recover wdel-vault k" \
  "key deleted"
echo "PASS"
