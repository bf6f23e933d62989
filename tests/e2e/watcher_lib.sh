# shellcheck shell=bash
# Shared by tests/e2e/watcher_*.sh: the key watcher, end to end, on a live
# mount with fio as the VM. Sourced, not run.
#
# Builds on examples/lib.sh (binaries, work directory, config with a 1 s poll
# interval and a 5 s auto-rotation window, mount/unmount, cleanup).
# Environment, besides that of examples/lib.sh:
#   CMKFS_E2E_SLACK_MS  time allowed on top of the poll interval + 1 s bound
#                       for fio to notice and exit (default 1000)
set -euo pipefail

e2e_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The daemon's sanitizer reports and exit status are checked at exit.
: "${CMKFS_TEST_REAPER:?set CMKFS_TEST_REAPER to the cmkfs_test_reaper binary}"
# shellcheck source=examples/lib.sh
source "$e2e_dir/../../examples/lib.sh"

command -v fio >/dev/null || fail "fio is not installed"
command -v jq >/dev/null || fail "jq is not installed"

poll_ms=1000
bound_ms=$((poll_ms + 1000))
slack_ms=${CMKFS_E2E_SLACK_MS:-1000}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# on_seal notes each sealed disk's name in $seal_log.
seal_log=$work/sealed-disks.log
cat >"$work/on-seal.sh" <<HOOK
#!/bin/sh
echo "\$1" >>"$seal_log"
HOOK
chmod 0755 "$work/on-seal.sh"
sed -i "s|^on_seal = .*|on_seal = \"$work/on-seal.sh\"|" "$config"

# setup_disk VAULT DES DISK SKU [--auto-rotate]: a purge-protected vault with
# a 2048-bit key "k", a DES granted get/wrapKey/unwrapKey, a 64 MiB disk.
# Sets $identity.
setup_disk() {
  local vault=$1 des=$2 disk=$3 sku=$4
  shift 4
  ctl vault create "$vault" --purge-protection >/dev/null
  ctl key create "$vault" k --size 2048 >/dev/null
  identity=$(ctl des create "$des" --key-id "cmk://$vault/keys/k" "$@")
  ctl vault set-policy "$vault" --object-id "$identity" \
    --key-permissions get wrapKey unwrapKey >/dev/null
  ctl disk create "$disk" --size 64M --sku "$sku" --des "$des" >/dev/null
}

# fio_verify FILE SECONDS [extra fio args]: random writes with crc32c
# verification, direct I/O; the JSON report goes to $work/fio.json.
fio_verify() {
  local file=$1 secs=$2
  shift 2
  fio --name=vm --filename="$file" --size=32M --rw=randrw --bs=4k \
    --direct=1 --ioengine=psync --verify=crc32c --verify_fatal=1 \
    --time_based --runtime="$secs" --output-format=json \
    --output="$work/fio.json" "$@"
}

# xattr FILE NAME: one user.cmkfs.* attribute of a disk file.
xattr() {
  python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())' "$1" "$2"
}

# Longest completion latency fio saw (ms): the longest I/O pause.
fio_max_latency_ms() {
  jq -r '[.jobs[] | (.read.clat_ns.max, .write.clat_ns.max)] | max / 1e6' \
    "$work/fio.json"
}

# revoke_and_restore DISK TAKE_AWAY GIVE_BACK REASON: fio runs on the disk
# while TAKE_AWAY (a shell command) removes access to the key; fio must fail
# with EIO within the bound; a new open must fail with EIO; the disk shows
# sealed with a seal reason "key cmk://... unusable: ..." that matches REASON
# (an extended regex: what was taken away); on_seal ran with its name.
# GIVE_BACK restores access: the disk comes back without a remount and fio
# verifies again.
revoke_and_restore() {
  local disk=$1 take_away=$2 give_back=$3 want_reason=$4
  local file=$mnt/disks/$disk
  step "fio writes to $disk; then: $take_away"
  fio_verify "$file" 2 >/dev/null || fail "fio failed before the key went away"
  # Data outside fio's 32 MiB, to read back after access returns.
  pattern "$disk $RANDOM" >"$work/kept.bin"
  dd if="$work/kept.bin" of="$file" bs=1M seek=40 conv=notrunc,fsync status=none
  fio --name=vm --filename="$file" --size=32M --rw=randrw --bs=4k --direct=1 \
    --ioengine=psync --time_based --runtime=60 --output-format=json \
    --output="$work/fio-revoke.json" >/dev/null 2>"$work/fio-revoke.err" &
  local fio_pid=$!
  sleep 1.5
  kill -0 "$fio_pid" 2>/dev/null || fail "fio stopped before the key went away"
  local start end
  start=$(now_ms)
  eval "$take_away" >/dev/null
  local rc=0
  wait "$fio_pid" || rc=$?
  end=$(now_ms)
  [ "$rc" -ne 0 ] || fail "fio kept running: I/O did not fail after '$take_away'"
  grep -q -i "input/output error" "$work/fio-revoke.err" ||
    fail "fio failed (exit $rc) without EIO: $(head -n 3 "$work/fio-revoke.err")" \
      "$(jq -c '[.jobs[] | {error, read: .read.io_bytes, write: .write.io_bytes}]' "$work/fio-revoke.json" 2>&1)"
  local took=$((end - start))
  echo "I/O failed ${took} ms after '$take_away' (bound ${bound_ms} ms + ${slack_ms} ms for fio to exit)"
  [ "$took" -le $((bound_ms + slack_ms)) ] || fail "seal took ${took} ms"

  [ "$(disk_field "$disk" state)" = sealed ] || fail "$disk does not show sealed"
  [ "$(xattr "$file" user.cmkfs.state)" = sealed ] ||
    fail "user.cmkfs.state of $disk is not sealed"
  local reason
  reason=$(ctl_quiet disk show "$disk" -o json | jq -r '.seal_reason // empty')
  echo "reason: $reason"
  [[ "$reason" == "key cmk://"*" unusable: "* ]] ||
    fail "the seal reason of $disk does not name the unusable key: '$reason'"
  grep -qE -- "$want_reason" <<<"$reason" ||
    fail "the seal reason of $disk does not say /$want_reason/: '$reason'"
  if dd if="$file" bs=4k count=1 iflag=direct status=none of=/dev/null 2>"$work/open.err"; then
    fail "a new open of sealed $disk could read"
  fi
  echo "new open: $(head -n 1 "$work/open.err")"
  grep -q -i "input/output error" "$work/open.err" ||
    fail "a new open of sealed $disk failed without EIO: $(head -n 1 "$work/open.err")"
  for _ in $(seq 50); do grep -qx "$disk" "$seal_log" 2>/dev/null && break; sleep 0.1; done
  grep -qx "$disk" "$seal_log" || fail "on_seal did not run with '$disk'"

  step "$give_back"
  eval "$give_back" >/dev/null
  wait_for_state "$disk" active 5
  fio_verify "$file" 2 >/dev/null || fail "fio failed after access came back"
  cmp -s "$work/kept.bin" <(dd if="$file" bs=1M skip=40 count=1 iflag=direct status=none) ||
    fail "data written before the seal reads back differently"
  echo "I/O works again without a remount"
}
