#!/bin/bash
# QEMU's tools on mounted disks: qemu-img info, qemu-io with cache=none
# (O_DIRECT) pattern round trips, qemu-img convert out to a local file and
# back into another disk, compared byte for byte.
source "$(dirname "$0")/lib.sh" "$@"

cmkctl disk create vm --size 64M >/dev/null
cmkctl disk create copy --size 64M >/dev/null
start_daemon
DISK=$MNT/disks/vm

log "qemu-img info"
qemu-img info --output=json -f raw "$DISK" > "$WORK/info.json"
grep -q '"virtual-size": 67108864' "$WORK/info.json" || { cat "$WORK/info.json"; fail "qemu-img info: wrong virtual size"; }
grep -q '"format": "raw"' "$WORK/info.json" || fail "qemu-img info: not raw"

log "qemu-io -t none pattern writes and reads"
qemu-io -f raw -t none \
  -c "write -P 0xab 0 1M" \
  -c "write -P 0x5c 3M 64k" \
  -c "write -P 0x11 60M 4M" \
  -c "write -z 32M 1M" \
  -c "flush" "$DISK" > "$WORK/qemu-io-write.log" || fail "qemu-io write failed"
grep -qi "error\|failed" "$WORK/qemu-io-write.log" && { cat "$WORK/qemu-io-write.log"; fail "qemu-io write reported an error"; }
qemu-io -f raw -t none -r \
  -c "read -P 0xab 0 1M" \
  -c "read -P 0x5c 3M 64k" \
  -c "read -P 0x11 60M 4M" \
  -c "read -P 0 1M 2M" \
  -c "read -P 0 32M 1M" "$DISK" > "$WORK/qemu-io-read.log" || fail "qemu-io read failed"
grep -qi "pattern verification failed\|error" "$WORK/qemu-io-read.log" && { cat "$WORK/qemu-io-read.log"; fail "qemu-io read: pattern mismatch"; }
# The check must be able to fail: a wrong pattern is reported.
qemu-io -f raw -t none -r -c "read -P 0xac 0 4k" "$DISK" > "$WORK/qemu-io-neg.log" 2>&1 || true
grep -qi "pattern verification failed" "$WORK/qemu-io-neg.log" || { cat "$WORK/qemu-io-neg.log"; fail "qemu-io did not notice a wrong pattern"; }

log "qemu-img convert disk -> local file -> another disk"
qemu-img convert -f raw -O raw -T none "$DISK" "$WORK/local.raw"
cmp "$DISK" "$WORK/local.raw" || fail "exported copy differs from the disk"
# Change the local copy, then write it into the second disk (cache=none).
qemu-io -f raw -c "write -P 0x77 10M 1M" "$WORK/local.raw" >/dev/null
qemu-img convert -n -f raw -O raw -t none "$WORK/local.raw" "$MNT/disks/copy"
cmp "$WORK/local.raw" "$MNT/disks/copy" || fail "imported copy differs from the local file"
qemu-img compare -f raw -F raw "$WORK/local.raw" "$MNT/disks/copy" >/dev/null || fail "qemu-img compare reports a difference"

log "restart and read back"
stop_daemon
start_daemon
cmp "$WORK/local.raw" "$MNT/disks/copy" || fail "copy differs after restart"
qemu-io -f raw -t none -r -c "read -P 0xab 0 1M" -c "read -P 0x11 60M 4M" "$DISK" > "$WORK/qemu-io-restart.log" || fail "qemu-io read after restart failed"
grep -qi "pattern verification failed" "$WORK/qemu-io-restart.log" && fail "pattern lost across restart"
stop_daemon
