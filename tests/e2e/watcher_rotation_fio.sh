#!/usr/bin/env bash
# Key watcher e2e: rotation under load. fio verifies on one disk of an
# auto-rotating DES (plus WATCHER_E2E_DISKS more disks, default 50) while the
# key is rotated: auto-rotation must pick the new version up within the 5 s
# window, fio must see no error and no verify failure. Prints the longest I/O
# pause fio saw (the figure for docs/BENCHMARKS.md; for the 1000-disk figure:
# WATCHER_E2E_DISKS=999 WATCHER_E2E_FIO_SECONDS=60) and fails if it exceeds
# CMKFS_E2E_MAX_PAUSE_MS (default 1500 ms: the < 100 ms target is the
# benchmark's; this bound holds for an ASan build on a loaded 2-core machine
# and still fails when I/O stalls for seconds during the re-wrap).
set -euo pipefail
# shellcheck source=tests/e2e/watcher_lib.sh
source "$(dirname "$0")/watcher_lib.sh"

extra=${WATCHER_E2E_DISKS:-50}
fio_secs=${WATCHER_E2E_FIO_SECONDS:-15}
setup_disk wrot-vault wrot-des wrot-disk Premium_LRS --auto-rotate
for i in $(seq "$extra"); do
  ctl_quiet disk create "wrot-extra$i" --size 4M --des wrot-des >/dev/null
done
file=$mnt/disks/wrot-disk
mount_cmkfs
old=$(disk_field wrot-disk key_id)

step "fio verifies for $fio_secs s; the key rotates after 3 s"
fio_verify "$file" "$fio_secs" >/dev/null 2>"$work/fio-rot.err" &
fio_pid=$!
sleep 3
new=$(ctl_quiet key rotate wrot-vault k)
start=$(now_ms)
# The DES names the new version when the re-wrap starts (picked up), and
# drops previous_key_id when every resource is re-wrapped (done).
des_state() { ctl_quiet des show wrot-des -o json | jq -r '.key_id + " " + (.previous_key_id // "-")'; }
picked=""
for _ in $(seq $((fio_secs * 10))); do
  state_now=$(des_state)
  if [ -z "$picked" ] && [ "${state_now%% *}" = "$new" ]; then picked=$(($(now_ms) - start)); fi
  [ "$state_now" = "$new -" ] && break
  sleep 0.1
done
done_ms=$(($(now_ms) - start))
[ "$(des_state)" = "$new -" ] ||
  fail "wrot-des not fully on $new ${fio_secs} s after the rotation: $(des_state)"
[ "$(disk_field wrot-disk key_id)" = "$new" ] || fail "wrot-disk was not re-wrapped"
echo "auto-rotation from $old to $new: picked up after ${picked} ms (window 5 s), $((extra + 1)) disks re-wrapped after ${done_ms} ms"
[ "$picked" -le 6000 ] || fail "auto-rotation took longer than its 5 s window"
wait "$fio_pid" || fail "fio saw an error during rotation: $(head -n 3 "$work/fio-rot.err")"
[ "$(disk_field "wrot-extra$extra" key_id)" = "$new" ] || fail "wrot-extra$extra was not re-wrapped"
pause_ms=$(fio_max_latency_ms)
max_pause_ms=${CMKFS_E2E_MAX_PAUSE_MS:-1500}
echo "longest I/O pause during rotation of $((extra + 1)) disks: ${pause_ms} ms (bound ${max_pause_ms} ms)"
awk -v p="$pause_ms" 'BEGIN { exit !(p > 0) }' || fail "fio reported no I/O latency: '$pause_ms'"
awk -v p="$pause_ms" -v m="$max_pause_ms" 'BEGIN { exit !(p <= m) }' ||
  fail "an I/O paused ${pause_ms} ms during the rotation (bound ${max_pause_ms} ms)"
ctl des show wrot-des
echo "PASS"
