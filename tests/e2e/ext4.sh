#!/bin/bash
# A loop device over a mounted disk: mkfs.ext4, files written, umount,
# fsck.ext4 -f clean, mounted again with identical checksums; then the same
# after a cmkfs restart.
source "$(dirname "$0")/lib.sh" "$@"

cmkctl disk create fsdisk --size 128M >/dev/null
start_daemon
DISK=$MNT/disks/fsdisk
FSMNT=$WORK/fs
mkdir -p "$FSMNT"

attach() {  # sets LOOP
  LOOP=$(losetup -f --show "$DISK") || fail "losetup failed"
  E2E_LOOPS+=("$LOOP")
}
detach() { losetup -d "$1"; }

attach
log "mkfs.ext4 on $LOOP"
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 failed"
mount "$LOOP" "$FSMNT"; E2E_INNER_MOUNTS+=("$FSMNT")
head -c 20M /dev/urandom > "$FSMNT/big.bin"
mkdir -p "$FSMNT/dir"
for i in $(seq 1 200); do head -c $((i * 97)) /dev/urandom > "$FSMNT/dir/f$i"; done
(cd "$FSMNT" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$WORK/sums"
umount "$FSMNT"
log "fsck.ext4 -f"
fsck.ext4 -f -n "$LOOP" > "$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log"; fail "fsck.ext4 found problems"; }
mount "$LOOP" "$FSMNT"
(cd "$FSMNT" && sha256sum --quiet -c "$WORK/sums") || fail "checksums differ after remount"
umount "$FSMNT"
detach "$LOOP"

log "restart cmkfs and check again"
stop_daemon
start_daemon
attach
fsck.ext4 -f -n "$LOOP" > "$WORK/fsck2.log" 2>&1 || { cat "$WORK/fsck2.log"; fail "fsck.ext4 found problems after restart"; }
mount -o ro "$LOOP" "$FSMNT"
(cd "$FSMNT" && sha256sum --quiet -c "$WORK/sums") || fail "checksums differ after restart"
umount "$FSMNT"
detach "$LOOP"
stop_daemon
