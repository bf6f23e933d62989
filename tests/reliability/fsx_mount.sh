#!/usr/bin/env bash
# fsx through a cmkfs mount: random reads/writes (aligned and unaligned),
# discards, zero ranges, fsyncs, reopens and snapshots (cmkctl snapshot
# create against the live daemon, each snapshot compared with the shadow copy
# and deleted), checked against fsx's in-memory shadow. 0 mismatches allowed;
# cmkctl fsck must be clean afterwards and after a remount.
# CI: 1,000,000 ops (FSX_OPS overrides); CMKFS_LONG_TESTS=1: 10,000,000 ops
# with a customer-key disk as well. FSX_SEED fixes the seed.
# Usage: fsx_mount.sh CMKFS CMKCTL FSX CRASH_WRITER
# shellcheck source=tests/reliability/lib.sh
source "$(dirname "$0")/lib.sh"

OPS=${FSX_OPS:-1000000}
[[ "$LONG" == 1 && -z "${FSX_OPS:-}" ]] && OPS=10000000
SEED=${FSX_SEED:-$RANDOM$RANDOM}
SNAPS=${FSX_SNAPSHOTS:-10}

start_daemon
cmkctl disk create fsx --size 16M >/dev/null
ctl="timeout 120 $CMKCTL_BIN --state-dir $STATE"
run_fsx() {
  local disk=$1
  "$FSX_BIN" --file "$MNT/disks/$disk" --seed "$SEED" --ops "$OPS" \
    --weights 550,400,30,15,0,1 --fsync-every 5000 --verify-every 250000 \
    --snapshot-every $((OPS / SNAPS)) \
    --snapshot-cmd "$ctl snapshot create %n --source $disk >/dev/null" \
    --snapshot-path "$MNT/snapshots/%n" \
    --snapshot-delete-cmd "$ctl snapshot delete %n >/dev/null" \
    --progress $((OPS / 10)) --minimize --minimize-seconds 120 \
    --log-file "$WORK/fsx-$disk.log" | tee "$WORK/fsx-$disk.out"
  grep -q 'mismatches=0' "$WORK/fsx-$disk.out" || fail "fsx on $disk did not pass"
  grep -q 'fallocate not supported' "$WORK/fsx-$disk.out" &&
    fail "the mount refused fallocate punch-hole/zero-range"
  return 0
}
log "fsx: $OPS ops, seed $SEED, platform-key disk"
run_fsx fsx

if [[ "$LONG" == 1 ]]; then
  cmkctl vault create fsxv --purge-protection >/dev/null
  cmkctl key create fsxv k --size 2048 >/dev/null
  identity=$(cmkctl des create fdes --key-id cmk://fsxv/keys/k)
  cmkctl vault set-policy fsxv --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
  cmkctl disk create fsxc --size 16M --des fdes >/dev/null
  log "fsx: $OPS ops, seed $SEED, customer-key disk"
  run_fsx fsxc
fi

expect_fsck_clean
sha_before=$(sha256sum <"$MNT/disks/fsx")
stop_daemon
start_daemon
[[ "$(sha256sum <"$MNT/disks/fsx")" == "$sha_before" ]] || fail "disk content changed across a clean remount"
expect_fsck_clean
stop_daemon
