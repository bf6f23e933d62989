#!/usr/bin/env bash
# Key watcher e2e: the DES identity loses unwrapKey (set-policy without it):
# the disk is sealed; restoring the permission unseals it.
set -euo pipefail
# shellcheck source=tests/e2e/watcher_lib.sh
source "$(dirname "$0")/watcher_lib.sh"

setup_disk wperm-vault wperm-des wperm-disk StandardSSD_LRS
mount_cmkfs
revoke_and_restore wperm-disk \
  "ctl vault set-policy wperm-vault --object-id $identity --key-permissions get wrapKey" \
  "ctl vault set-policy wperm-vault --object-id $identity --key-permissions get wrapKey unwrapKey" \
  "identity $identity lacks '?unwrapKey"
revoke_and_restore wperm-disk \
  "ctl vault delete-policy wperm-vault --object-id $identity" \
  "ctl vault set-policy wperm-vault --object-id $identity --key-permissions get wrapKey unwrapKey" \
  "identity $identity lacks"
echo "PASS"
