#!/usr/bin/env bash
# Layers built on a disk file after a seal (docs/threat-model.md, "Layers
# built on the disk file"): a loop device over the disk file.
#  1. Without on_seal. (a) A loop device nobody holds open: read, then the
#     seal; the next read fails (the kernel drops a block device's page cache
#     at its last close, so every read reaches the sealed file). (b) Held
#     open (what a mounted file system or a running VM does): after the seal
#     it keeps serving, in clear, what it had read; what it had not read
#     fails.
#  2. With on_seal = losetup -d of every loop device over the disk file.
#     (a) Not held: the seal detaches it; it serves nothing. (b) Held: the
#     detach is deferred (autoclear) and the cached part is still served
#     until the holder closes it; then it is gone.
# Usage: seal_loop_device.sh CMKFS CMKCTL
# shellcheck source=tests/reliability/lib.sh
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || fail "jq is not installed"
command -v losetup >/dev/null || fail "losetup is not installed (util-linux)"
[[ -e /dev/loop-control ]] || fail "no /dev/loop-control: the loop module is not loaded (modprobe loop)"

CONF=$WORK/cmkfs.toml
DLOG=$WORK/daemon.log
write_conf() { # ON_SEAL
  cat >"$CONF" <<TOML
state_dir = "$STATE"
[watcher]
poll_interval = "1s"
on_seal = "$1"
TOML
}
cmkctl() { timeout 120 "$CMKCTL_BIN" --config "$CONF" "$@"; }
LOOP=
detach_loop() {
  [[ -n "$LOOP" ]] && losetup "$LOOP" >/dev/null 2>&1 && losetup -d "$LOOP" 2>/dev/null
  LOOP=
  return 0
}
trap 'rc=$?; set +e; detach_loop; (exit $rc); rel_cleanup' EXIT
wait_state() { # DISK STATE
  for _ in $(seq 1 100); do
    [[ "$(cmkctl disk show "$1" -o json | jq -r .state)" == "$2" ]] && return 0
    sleep 0.1
  done
  fail "disk $1 is not $2 after 10 s: $(cmkctl disk show "$1" 2>&1)"
}
# read_loop OFFSET_MIB COUNT_MIB: buffered read of the loop device into stdout.
read_loop() { dd if="$LOOP" bs=1M skip="$1" count="$2" status=none; }

log "setup: customer-key disk with 16 MiB of data"
write_conf ""
start_fg
cmkctl vault create loopv --purge-protection >/dev/null
cmkctl key create loopv k --size 2048 >/dev/null
identity=$(cmkctl des create ldes --key-id cmk://loopv/keys/k)
cmkctl vault set-policy loopv --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
cmkctl disk create ld --size 16M --des ldes >/dev/null
head -c 16M /dev/urandom >"$WORK/data.bin"
dd if="$WORK/data.bin" of="$MNT/disks/ld" bs=1M conv=notrunc,fsync status=none

# seal_and_wait: disables the key and waits for the seal.
seal_and_wait() {
  cmkctl key set-attributes loopv k --enabled false >/dev/null
  wait_state ld sealed
  dd if="$MNT/disks/ld" of=/dev/null bs=1M count=1 iflag=direct status=none 2>/dev/null &&
    fail "the sealed disk file still reads"
  return 0
}
unseal_and_wait() {
  cmkctl key set-attributes loopv k --enabled true >/dev/null
  wait_state ld active
}
# attach_and_read [hold]: a loop device over the disk file, its first 4 MiB
# read; with "hold", fd 9 keeps it open from before that read.
attach_and_read() {
  LOOP=$(losetup -f --show "$MNT/disks/ld") || fail "losetup -f --show failed"
  if [[ "${1:-}" == hold ]]; then exec 9<"$LOOP"; fi
  cmp <(read_loop 0 4) <(head -c 4M "$WORK/data.bin") || fail "the loop device reads wrong data"
}
# serves_plaintext OFFSET_MIB: the loop device returns the disk's 4 MiB there.
serves_plaintext() {
  read_loop "$1" 4 2>/dev/null | cmp -s - <(tail -c +$(($1 * 1048576 + 1)) "$WORK/data.bin" | head -c 4M)
}
bound() { [[ -n "$(losetup -n -O BACK-FILE "$LOOP" 2>/dev/null | tr -d ' ')" ]]; }

log "1a. no on_seal, loop device not held open: read, seal, read again"
attach_and_read
seal_and_wait
serves_plaintext 0 && fail "an idle loop device served plaintext after the seal"
log "  the read after the seal fails (the device's cache went at its last close)"
detach_loop
unseal_and_wait

log "1b. no on_seal, loop device held open (as a mounted fs or a VM holds it)"
attach_and_read hold
seal_and_wait
serves_plaintext 0 ||
  fail "expected a held loop device to keep serving what it had read; it did not (update docs/threat-model.md)"
log "  it still serves, in clear, the 4 MiB it had read before the seal"
serves_plaintext 12 && fail "the loop device served plaintext it had never read before the seal"
log "  and fails for the part it had not read"
exec 9<&-
detach_loop
unseal_and_wait
stop_fg

log "2. on_seal detaches every loop device over the disk file"
cat >"$WORK/on_seal.sh" <<SH
#!/bin/sh
# The recipe of docs/threat-model.md: detach the loop devices over the disk.
for dev in \$(losetup -n -O NAME -j "$MNT/disks/\$1"); do losetup -d "\$dev"; done
echo "on_seal \$1 done" >>"$WORK/on_seal.log"
SH
chmod 0700 "$WORK/on_seal.sh"
write_conf "$WORK/on_seal.sh"
start_fg
wait_on_seal() { # N: the Nth run
  for _ in $(seq 1 100); do
    [[ $(grep -c "on_seal ld done" "$WORK/on_seal.log" 2>/dev/null) -ge $1 ]] && return 0
    sleep 0.1
  done
  fail "on_seal did not run (run $1): $(cat "$DLOG")"
}

log "2a. not held open: the seal's on_seal detaches it"
attach_and_read
seal_and_wait
wait_on_seal 1
bound && fail "$LOOP is still bound to the disk file after on_seal"
serves_plaintext 0 && fail "$LOOP served plaintext after on_seal detached it"
log "  $LOOP is detached and serves nothing"
LOOP=
unseal_and_wait

log "2b. held open: the detach waits for the holder"
attach_and_read hold
seal_and_wait
wait_on_seal 2
[[ "$(losetup -n -O AUTOCLEAR "$LOOP" | tr -d ' ')" == 1 ]] ||
  fail "expected on_seal's losetup -d of a busy device to defer (autoclear)"
serves_plaintext 0 || fail "expected the held device to keep serving its cache until closed"
log "  still bound (autoclear) and serving its cache while held"
exec 9<&-
for _ in $(seq 1 50); do bound || break; sleep 0.1; done
bound && fail "$LOOP stayed bound after its holder closed it"
serves_plaintext 0 && fail "$LOOP served plaintext after its holder closed it"
log "  once the holder closed it, it is detached and serves nothing"
LOOP=
unseal_and_wait
stop_fg
