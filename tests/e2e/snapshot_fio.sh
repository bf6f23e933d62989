#!/bin/bash
# A snapshot taken while fio writes is point-in-time.
# Method: region A (0-32M) is written by fio (crc32c headers) and then left
# quiet; region B (32M-96M) is under 4 KiB O_DIRECT random writes (fio,
# overwrites allowed) while `cmkctl snapshot create` runs.
#  - region A of the snapshot must equal the disk's (nothing wrote there
#    since) and pass fio's own verification;
#  - every 4 KiB block of region B in the snapshot must be either zero (not
#    yet written) or an intact fio block for that offset (header and data
#    crc32c match: no torn block), and some blocks must already be there;
#  - region B of the disk must differ from the snapshot afterwards (the
#    writes after the snapshot did not leak into it).
# The strict per-writer ordering check (every acknowledged write is in the
# snapshot, later ones form a suffix) is FuseMountTest.WriterThreadsSnapshot*.
CHECK=$(realpath "${3:?path to fio_block_check}")
source "$(dirname "$0")/lib.sh" "$1" "$2"

cmkctl disk create src --size 96M >/dev/null
start_daemon
DISK=$MNT/disks/src

cat > "$WORK/a.fio" <<JOBS
[region-a]
filename=$DISK
allow_file_create=0
fallocate=none
rw=write
bs=1m
direct=1
ioengine=libaio
iodepth=4
offset=0
size=32m
verify=crc32c
verify_state_save=0
verify_fatal=1
JOBS
cat > "$WORK/b.fio" <<JOBS
[region-b]
filename=$DISK
allow_file_create=0
fallocate=none
rw=randwrite
bs=4k
direct=1
ioengine=libaio
iodepth=8
offset=32m
size=64m
norandommap
time_based
runtime=8
verify=crc32c
verify_state_save=0
do_verify=0
JOBS

log "region A: write and verify"
fio --output="$WORK/a.log" "$WORK/a.fio" || { cat "$WORK/a.log"; fail "fio region A failed"; }

log "region B: random writes while the snapshot is taken"
fio --output="$WORK/b.log" "$WORK/b.fio" &
FIO_PID=$!
sleep 3
cmkctl snapshot create snap --source src >/dev/null || fail "snapshot create failed under load"
log "snapshot taken"
wait "$FIO_PID" || { cat "$WORK/b.log"; fail "fio region B failed"; }

SNAP=$MNT/snapshots/snap
log "checking the snapshot"
cmp -n $((32 << 20)) "$SNAP" "$DISK" || fail "region A of the snapshot differs from the disk"
"$CHECK" "$SNAP" 0 $((32 << 20)) $((1 << 20)) --no-zero || fail "region A of the snapshot is not intact fio data"
OUT=$("$CHECK" "$SNAP" $((32 << 20)) $((64 << 20)) 4096) || fail "region B of the snapshot has a bad block"
log "region B of the snapshot: $OUT"
VALID=$(sed -n 's/valid=\([0-9]*\).*/\1/p' <<<"$OUT")
[[ "$VALID" -gt 0 ]] || fail "no fio block in the snapshot: it was taken before any write"
"$CHECK" "$DISK" $((32 << 20)) $((64 << 20)) 4096 >/dev/null || fail "region B of the disk has a bad block"
if cmp -s -i $((32 << 20)) "$SNAP" "$DISK"; then
  fail "region B of the snapshot equals the disk: later writes leaked in"
fi
stop_daemon
