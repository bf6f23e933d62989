#!/usr/bin/env bash
# Key watcher e2e: an expiry in the past, then a not-before in the future,
# seal the disk; valid dates unseal it.
set -euo pipefail
# shellcheck source=tests/e2e/watcher_lib.sh
source "$(dirname "$0")/watcher_lib.sh"

setup_disk wexp-vault wexp-des wexp-disk Standard_LRS
mount_cmkfs
revoke_and_restore wexp-disk \
  "ctl key set-attributes wexp-vault k --expires 2001-01-01T00:00:00Z" \
  "ctl key set-attributes wexp-vault k --expires 2099-01-01T00:00:00Z" \
  "expired"
revoke_and_restore wexp-disk \
  "ctl key set-attributes wexp-vault k --not-before 2098-01-01T00:00:00Z" \
  "ctl key set-attributes wexp-vault k --not-before 2001-01-01T00:00:00Z" \
  "not yet valid"
echo "PASS"
