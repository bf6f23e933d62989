#!/usr/bin/env bash
# Key watcher e2e: an UltraSSD_LRS disk is not cut off while open (fio keeps
# verifying through the key's disabling); once fio closes it, it cannot be
# opened; enabling the key brings it back.
set -euo pipefail
# shellcheck source=tests/e2e/watcher_lib.sh
source "$(dirname "$0")/watcher_lib.sh"

setup_disk wult-vault wult-des wult-disk UltraSSD_LRS
file=$mnt/disks/wult-disk
mount_cmkfs

step "fio verifies for 8 s while the key is disabled after 2 s"
fio_verify "$file" 8 >/dev/null 2>"$work/fio-ultra.err" &
fio_pid=$!
sleep 2
ctl key set-attributes wult-vault k --enabled false >/dev/null
wait "$fio_pid" || fail "fio on the open ultra disk failed: $(head -n 3 "$work/fio-ultra.err")"
echo "the open ultra disk kept working (longest I/O: $(fio_max_latency_ms) ms)"

step "closed: it cannot be opened again"
sleep $((poll_ms * 2 / 1000))
if dd if="$file" bs=4k count=1 iflag=direct status=none of=/dev/null 2>"$work/open.err"; then
  fail "the ultra disk could be opened after its last handle closed"
fi
echo "new open: $(head -n 1 "$work/open.err")"
[ "$(disk_field wult-disk state)" = sealed ] || fail "wult-disk does not show sealed"

step "enable the key"
ctl key set-attributes wult-vault k --enabled true >/dev/null
wait_for_state wult-disk active 5
fio_verify "$file" 2 >/dev/null || fail "fio failed after the key came back"
echo "PASS"
