#!/usr/bin/env bash
# Key rotation, end to end, on a live mount:
#   1. a vault, an RSA key, a disk encryption set (DES) on that key's version,
#      a disk, data written to it through the mount;
#   2. `key rotate` makes a new key version; `des update --key-id` points the
#      DES at it, which re-wraps the disk's data key (no data is rewritten) while
#      a handle on the disk stays open and keeps working;
#   3. `disk show -o json` reports the new key version; the data reads back,
#      also after a remount;
#   4. the old version is disabled: a second disk left on it seals (so the key
#      watcher has seen the change), and the rotated disk no longer depends on
#      it and stays active.
# Environment: see examples/lib.sh (CMKFS_BIN_DIR, CMKFS_WORK_DIR, CMKFS_KEEP).
set -euo pipefail
# shellcheck source=examples/lib.sh
source "$(dirname "$0")/lib.sh"

tag=$RANDOM$RANDOM
disk=rotating-disk
file=$mnt/disks/$disk

step "Vault, key, DES (pinned to the key's first version) and a 64 MiB disk"
ctl vault create rot-vault --purge-protection >/dev/null
v1_id=$(ctl key create rot-vault rot-key --size 2048)
echo "key version 1: $v1_id"
identity=$(ctl des create rot-des --key-id "$v1_id")
ctl vault set-policy rot-vault --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create "$disk" --size 64M --des rot-des >/dev/null
[ "$(disk_field "$disk" key_id)" = "$v1_id" ] || fail "the new disk is not wrapped by $v1_id"
# A second disk, under a DES that stays on version 1, for comparison in step 4.
old_identity=$(ctl des create old-des --key-id "$v1_id")
ctl vault set-policy rot-vault --object-id "$old_identity" --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create left-on-v1 --size 16M --des old-des >/dev/null

step "Mount and write data"
mount_cmkfs
pattern "before rotation $tag" | dd of="$file" bs=1M seek=2 conv=notrunc,fsync status=none
sum_before=$(pattern "before rotation $tag" | sha256sum)

# A handle that stays open across the rotation, as a running VM's would.
exec 3<>"$file"

step "Rotate the key: a new version"
v2_id=$(ctl key rotate rot-vault rot-key)
echo "key version 2: $v2_id"
[ "$v2_id" != "$v1_id" ] || fail "key rotate printed the old key id"
[ "${v2_id%/*}" = "${v1_id%/*}" ] || fail "key rotate printed a key id of another key: $v2_id"

step "Point the DES at the new version: the disk's data key is re-wrapped"
ctl des update rot-des --key-id "$v2_id" >/dev/null
ctl des show rot-des
[ "$(disk_field "$disk" key_id)" = "$v2_id" ] ||
  fail "disk show reports key_id $(disk_field "$disk" key_id), expected $v2_id"
echo "disk key_id: $(disk_field "$disk" key_id)"

step "The open handle kept working: write through it, read through a new one"
pattern "after rotation $tag" | dd bs=1M seek=3 iflag=fullblock conv=fsync status=none >&3
exec 3>&-
[ "$(dd if="$file" bs=1M skip=2 count=1 status=none | sha256sum)" = "$sum_before" ] ||
  fail "the data written before the rotation reads back differently"
[ "$(dd if="$file" bs=1M skip=3 count=1 status=none | sha256sum)" = "$(pattern "after rotation $tag" | sha256sum)" ] ||
  fail "the data written during the rotation reads back differently"
echo "data before and after rotation: ok"

step "Remount: the re-wrapped key still opens the disk"
unmount_cmkfs
mount_cmkfs
[ "$(dd if="$file" bs=1M skip=2 count=1 status=none | sha256sum)" = "$sum_before" ] ||
  fail "after a remount, the data reads back differently"
echo "after remount: ok"

step "Disable the old version: the disk no longer depends on it"
ctl key set-attributes rot-vault rot-key --version "${v1_id##*/}" --enabled false >/dev/null
# The disk left on version 1 seals: the watcher has acted on the change.
wait_for_state left-on-v1 sealed 15
echo "left-on-v1 (still on version 1): sealed"
[ "$(disk_field "$disk" state)" = active ] || fail "disabling the old version sealed the rotated disk"
[ "$(dd if="$file" bs=1M skip=2 count=1 status=none | sha256sum)" = "$sum_before" ] ||
  fail "with the old version disabled, the data reads back differently"
ctl disk show "$disk"

unmount_cmkfs
echo
echo "key-rotation: OK"
