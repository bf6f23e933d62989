#!/usr/bin/env bash
# A real guest on a cmkfs disk: Debian's kernel and a small busybox initramfs
# (built here, in seconds) boot under qemu-system-x86_64 with the disk file
# from the mount as a virtio disk. The guest checks a pattern the host wrote,
# writes its own, reads it back, discards a range and powers off. The host then
# reads the guest's pattern through the mount, checks that the discarded range
# reads as zeros, remounts, reads it again and checks that no pattern reached
# the state directory in plaintext.
#
#   examples/qemu-boot.sh                  the walkthrough on a fresh state dir
#   examples/qemu-boot.sh --disk-file F    boot the same guest on any raw file F
#                                          (at least 8 MiB; its first 6 MiB are
#                                          overwritten): a baseline to compare
#
# Needs: qemu-system-x86, a Debian kernel (linux-image-amd64), busybox-static,
# cpio. Uses TCG (-accel tcg): no /dev/kvm needed. Environment, besides the
# ones of lib.sh and examples/guest.sh (CMKFS_GUEST_KERNEL):
#   CMKFS_QEMU_AIO       native (default) or io_uring
#   CMKFS_QEMU_TIMEOUT   seconds before the guest is killed (default 180)
#   CMKFS_QEMU_EXTRA     more QEMU arguments (e.g. "-bios /usr/share/qemu/qboot.rom")
#   CMKFS_GUEST_APPEND   more kernel command-line words
set -euo pipefail

disk_file=
case "${1:-}" in
  "") ;;
  --disk-file) disk_file=${2:?--disk-file needs a file}; shift 2 ;;
  *) echo "qemu-boot.sh: unknown argument '$1'; accepted: --disk-file FILE" >&2; exit 2 ;;
esac

aio=${CMKFS_QEMU_AIO:-native}
case "$aio" in native | io_uring) ;; *)
  echo "qemu-boot.sh: CMKFS_QEMU_AIO='$aio'; accepted: native, io_uring" >&2; exit 2 ;;
esac
qemu_timeout=${CMKFS_QEMU_TIMEOUT:-180}

if [ -n "$disk_file" ]; then
  # Baseline mode: no cmkfs involved.
  work=$(mktemp -d /var/tmp/cmkfs-qemu.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  step() { printf '\n==> %s\n' "$*"; }
  fail() { echo "FAIL: $*" >&2; exit 1; }
  pattern() { head -c 1048576 < <(yes "cmkfs example $1"); }
else
  # shellcheck source=examples/lib.sh
  source "$(dirname "$0")/lib.sh"
fi

# shellcheck source=examples/guest.sh
source "$(dirname "$0")/guest.sh"

sha() { sha256sum | cut -d' ' -f1; }

tag=$RANDOM$RANDOM
host_sum=$(pattern "host $tag" | sha)
guest_sum=$(pattern "guest $tag" | sha)

if [ -z "$disk_file" ]; then
  step "A vault, an RSA key, a disk encryption set and a 64 MiB disk"
  ctl vault create demo-vault --purge-protection >/dev/null
  ctl key create demo-vault vm-key --size 3072
  identity=$(ctl des create vm-des --key-id cmk://demo-vault/keys/vm-key)
  ctl vault set-policy demo-vault --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
  ctl disk create vm-disk --size 64M --des vm-des >/dev/null
  mount_cmkfs
  disk_file=$mnt/disks/vm-disk
fi
[ -f "$disk_file" ] || fail "$disk_file is not a file"

step "The host writes a pattern at offset 0, and data at 4 MiB for the guest to discard"
pattern "host $tag" | dd of="$disk_file" bs=1M conv=notrunc,fsync status=none
pattern "discard me $tag" | dd of="$disk_file" bs=1M seek=4 conv=notrunc,fsync status=none

step "Building the guest: kernel $kver and a busybox initramfs"
build_initramfs "$tag" "$host_sum" "$guest_sum"
echo "initramfs: $(stat -c %s "$work/initramfs.gz") bytes, modules: $(tr '\n' ' ' <"$work/initramfs/lib/modules/order")"

step "Booting the guest under QEMU (TCG) on $disk_file"
drive="file=$disk_file,format=raw,if=virtio,cache=none,aio=$aio,discard=unmap"
echo "+ qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot -kernel $kernel -initrd initramfs.gz -append 'console=ttyS0 quiet panic=-1' -drive $drive"
read -r -a qemu_extra <<<"${CMKFS_QEMU_EXTRA:-}"
start=$(date +%s)
set +e
timeout "$qemu_timeout" qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 ${CMKFS_GUEST_APPEND:-}" \
  -drive "$drive" "${qemu_extra[@]}" </dev/null >"$work/console.log" 2>&1
qemu_rc=$?
set -e
elapsed=$(($(date +%s) - start))
sed -n 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g; /GUEST\|CMKFS-GUEST-RESULT\|Kernel panic\|qemu-system/p' "$work/console.log"
echo "QEMU exited with $qemu_rc after $elapsed s"
if [ "$qemu_rc" -ne 0 ] || ! grep -q '^CMKFS-GUEST-RESULT ok' "$work/console.log"; then
  echo "--- guest console ---" >&2
  tail -n 40 "$work/console.log" >&2
  fail "the guest did not report success (QEMU exit $qemu_rc)"
fi

step "The host reads the guest's pattern through the mount"
[ "$(dd if="$disk_file" bs=1M skip=1 count=1 status=none | sha)" = "$guest_sum" ] ||
  fail "the guest's pattern is not at offset 1 MiB of $disk_file"
echo "guest pattern at offset 1 MiB: ok"
# discard=unmap: QEMU punches the guest's discard into the file, which then
# reads as zeros.
cmp -s <(dd if="$disk_file" bs=1M skip=4 count=1 status=none) <(head -c 1048576 /dev/zero) ||
  fail "the range the guest discarded (4 MiB..5 MiB) does not read as zeros"
echo "discarded range reads as zeros: ok"

if [ -n "${mnt:-}" ]; then
  step "Remount: the data is still there"
  unmount_cmkfs
  mount_cmkfs
  [ "$(dd if="$disk_file" bs=1M skip=1 count=1 status=none | sha)" = "$guest_sum" ] ||
    fail "after a remount, the guest's pattern is gone from $disk_file"
  echo "guest pattern after remount: ok"
  unmount_cmkfs

  step "The state directory holds no plaintext of either pattern"
  if grep -rqa -e "cmkfs example guest $tag" -e "cmkfs example host $tag" -e "cmkfs example discard me $tag" "$state"; then
    fail "a pattern was found in plaintext under $state"
  fi
  echo "no plaintext under $state: ok"
fi
echo
echo "qemu-boot: OK (guest boot and I/O in $elapsed s)"
