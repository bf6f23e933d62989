#!/usr/bin/env bash
# Key revocation, end to end, on a live mount:
#   1. a vault, an RSA key, a DES, a disk with data, mounted; a handle open on
#      the disk file, as a running VM's would be;
#   2. the key is disabled: within the watcher's poll interval the disk is
#      sealed: `disk show` says sealed, I/O on the open handle fails, new opens
#      fail, and the configured on_seal command runs with the disk's name;
#   3. the key is enabled again: the disk is active again, without a remount,
#      and the data reads back intact.
# Environment: see examples/lib.sh (CMKFS_BIN_DIR, CMKFS_WORK_DIR, CMKFS_KEEP).
set -euo pipefail
# shellcheck source=examples/lib.sh
source "$(dirname "$0")/lib.sh"

# The on_seal hook: cmkfs runs it with the sealed disk's name. A real one
# would stop the VM that uses the disk; this one notes the name.
seal_log=$work/sealed-disks.log
cat >"$work/on-seal.sh" <<HOOK
#!/bin/sh
echo "\$1" >>"$seal_log"
HOOK
chmod 0755 "$work/on-seal.sh"
sed -i "s|^on_seal = .*|on_seal = \"$work/on-seal.sh\"|" "$config"

tag=$RANDOM$RANDOM
disk=guarded-disk
file=$mnt/disks/$disk

step "Vault, key, DES and a 64 MiB disk; the watcher polls every second"
ctl vault create rev-vault --purge-protection >/dev/null
ctl key create rev-vault rev-key --size 2048
identity=$(ctl des create rev-des --key-id cmk://rev-vault/keys/rev-key)
ctl vault set-policy rev-vault --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create "$disk" --size 64M --des rev-des >/dev/null

step "Mount, write data, keep a handle open"
mount_cmkfs
write_and_hold "$disk" "revocation $tag"
sum=$(pattern "revocation $tag" | sha256sum)

step "Disable the key"
ctl key set-attributes rev-vault rev-key --enabled false >/dev/null
start=$(date +%s%N)
wait_for_state "$disk" sealed 15
echo "sealed after $((($(date +%s%N) - start) / 1000000)) ms"
ctl disk show "$disk"

step "Sealed: I/O on the open handle fails, new opens fail"
# Read a range never read before (no page cache can answer) and write.
if dd bs=1M skip=20 count=1 status=none <&3 >/dev/null 2>"$work/read.err"; then
  fail "a read through the handle opened before sealing succeeded"
fi
echo "read on the open handle: $(head -n 1 "$work/read.err")"
if pattern "must not land $tag" | dd bs=1M seek=30 iflag=fullblock conv=fsync status=none >&3 2>"$work/write.err"; then
  fail "a write through the handle opened before sealing succeeded"
fi
echo "write on the open handle: $(head -n 1 "$work/write.err")"
exec 3>&-
if dd if="$file" bs=1M skip=1 count=1 iflag=direct status=none >/dev/null 2>"$work/open.err"; then
  fail "a new open of the sealed disk succeeded in reading"
fi
echo "new open: $(head -n 1 "$work/open.err")"

step "on_seal ran with the disk's name"
for _ in $(seq 50); do [ -s "$seal_log" ] && break; sleep 0.1; done
[ "$(head -n 1 "$seal_log" 2>/dev/null)" = "$disk" ] ||
  fail "on_seal was not called with '$disk' (log: '$(cat "$seal_log" 2>/dev/null)')"
echo "on_seal was called with: $(head -n 1 "$seal_log")"

step "Enable the key again: the disk comes back without a remount"
ctl key set-attributes rev-vault rev-key --enabled true >/dev/null
wait_for_state "$disk" active 15
[ "$(dd if="$file" bs=1M skip=1 count=1 iflag=direct status=none | sha256sum)" = "$sum" ] ||
  fail "after unsealing, the data reads back differently"
echo "data after unsealing: ok"

step "The vault's audit log recorded it"
ctl vault audit rev-vault --key rev-key | tail -n 5
audit=$(ctl_quiet vault audit rev-vault --key rev-key -o json)
# In order: the key disabled, the disk sealed, the key enabled, the disk back.
events=$(jq -r '[.[] | select(.operation | test("^(key[.]update|disk[.](un)?seal)$"))][-4:]
  | map(.operation + "=" + (.result | split(" ")[0])) | join(" ")' <<<"$audit")
[[ "$events" =~ ^key\.update=ok\ disk\.seal=[^\ ]+\ key\.update=ok\ disk\.unseal=[^\ ]+$ ]] ||
  fail "the audit log does not show disable, seal, enable, unseal in order: $events"
[ "$(jq -r '[.[] | select(.operation == "disk.seal")][-1].identity' <<<"$audit")" = "$identity" ] ||
  fail "the audit's disk.seal entry does not name the DES identity $identity"
echo "audit: key disabled, disk sealed, key enabled, disk unsealed"

unmount_cmkfs
echo
echo "key-revocation: OK"
