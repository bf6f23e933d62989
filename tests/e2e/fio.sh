#!/bin/bash
# fio with crc32c verification through the mount: 4 KiB random and 1 MiB
# sequential writes, O_DIRECT and buffered, each job in its own 24 MiB
# region of one 128 MiB disk. Then the daemon is restarted and everything is
# verified again (fio --verify_only).
source "$(dirname "$0")/lib.sh" "$@"

cmkctl disk create fio --size 128M >/dev/null
start_daemon
DISK=$MNT/disks/fio

cat > "$WORK/jobs.fio" <<JOBS
[global]
filename=$DISK
allow_file_create=0
fallocate=none
verify=crc32c
verify_state_save=0
verify_fatal=1
randrepeat=1
size=24m

[rand4k-direct]
rw=randwrite
bs=4k
direct=1
ioengine=libaio
iodepth=16
offset=0

[rand4k-buffered]
rw=randwrite
bs=4k
direct=0
ioengine=psync
offset=32m

[seq1m-direct]
rw=write
bs=1m
direct=1
ioengine=libaio
iodepth=4
offset=64m

[seq1m-buffered]
rw=write
bs=1m
direct=0
ioengine=psync
offset=96m
JOBS

log "fio write + verify"
fio --output="$WORK/fio-write.log" "$WORK/jobs.fio" || { cat "$WORK/fio-write.log"; fail "fio write/verify failed"; }
grep -q "err= 0" "$WORK/fio-write.log" || { cat "$WORK/fio-write.log"; fail "fio reported errors"; }

log "restart the daemon"
stop_daemon
start_daemon

log "fio verify_only after restart"
fio --verify_only --output="$WORK/fio-verify.log" "$WORK/jobs.fio" || { cat "$WORK/fio-verify.log"; fail "fio verify after restart failed"; }
grep -q "err= 0" "$WORK/fio-verify.log" || { cat "$WORK/fio-verify.log"; fail "fio verify reported errors"; }
stop_daemon
