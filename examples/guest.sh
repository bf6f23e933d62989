# shellcheck shell=bash
# The busybox guest of the QEMU and libvirt walkthroughs: Debian's kernel and an
# initramfs built here in seconds. Sourced after lib.sh (or after defining
# fail and $work). Sets kernel, kver and moddir; build_initramfs TAG HOST_SUM
# GUEST_SUM writes $work/initramfs.gz, whose init checks the host's pattern at
# offset 0 of /dev/vda, writes its own at 1 MiB, reads it back, discards
# 4 MiB..5 MiB, prints "CMKFS-GUEST-RESULT ok|failed" and powers off — or,
# with "cmkfs.hold" on the kernel command line, keeps writing at 2 MiB once a
# second ("GUEST: write ok|FAILED") until it is stopped.
#
#   CMKFS_GUEST_KERNEL   kernel image (default: the newest /boot/vmlinuz-*)

# shellcheck disable=SC2154 # set by the script that sources this one
: "${work:?examples/guest.sh needs \$work, the directory of the walkthrough}"

for tool in qemu-system-x86_64 busybox cpio gzip modinfo; do
  command -v "$tool" >/dev/null ||
    fail "$tool not found; install qemu-system-x86, busybox-static, cpio and kmod (packaging/install-deps.sh does)"
done
kernel=${CMKFS_GUEST_KERNEL:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)}
[ -r "$kernel" ] || fail "no readable kernel image at '${kernel}'; install linux-image-amd64 or set CMKFS_GUEST_KERNEL"
kver=${kernel##*/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || fail "$moddir is missing: the modules of kernel $kver are needed for virtio_blk"

# The guest's virtio-blk stack, in load order (dependencies first).
guest_modules=()
declare -A module_seen=()
add_module() {
  local name=$1 dep file
  [ -n "${module_seen[$name]:-}" ] && return 0
  module_seen[$name]=1
  file=$(modinfo -k "$kver" -n "$name" 2>/dev/null) || return 0
  [[ "$file" == /* ]] || return 0 # built into the kernel
  for dep in $(modinfo -k "$kver" -F depends "$name" | tr ',' ' '); do add_module "$dep"; done
  guest_modules+=("$file")
}

build_initramfs() {
  local root=$work/initramfs tag=$1 host_sum=$2 guest_sum=$3
  rm -rf "$root"
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
  cp "$(command -v busybox)" "$root/bin/busybox"
  file "$root/bin/busybox" 2>/dev/null | grep -q 'statically linked' ||
    fail "busybox is not statically linked; install busybox-static"
  for m in virtio_pci virtio_blk; do add_module "$m"; done
  : >"$root/lib/modules/order"
  local f base
  for f in "${guest_modules[@]}"; do
    base=$(basename "$f")
    case "$f" in
      *.ko.xz) xz -dc "$f" >"$root/lib/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$f" >"$root/lib/modules/${base%.zst}"; base=${base%.zst} ;;
      *.ko.gz) gzip -dc "$f" >"$root/lib/modules/${base%.gz}"; base=${base%.gz} ;;
      *) cp "$f" "$root/lib/modules/$base" ;;
    esac
    echo "$base" >>"$root/lib/modules/order"
  done
  cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in \$(cat /lib/modules/order); do insmod /lib/modules/\$m || echo "GUEST: insmod \$m failed"; done
for i in \$(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
echo "GUEST: kernel up, /dev/vda present after \$(cut -d' ' -f1 /proc/uptime) s of guest time"
result=ok
check() { if [ "\$2" = "\$3" ]; then echo "GUEST: \$1 ok"; else echo "GUEST: \$1 FAILED (\$2 != \$3)"; result=failed; fi; }
echo "GUEST: /dev/vda has \$(blockdev --getsize64 /dev/vda) bytes"
check "read host pattern at 0" "\$(dd if=/dev/vda bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1)" "$host_sum"
yes "cmkfs example guest $tag" | head -c 1048576 >/tmp/pattern
dd if=/tmp/pattern of=/dev/vda bs=1M seek=1 conv=fsync 2>/dev/null || result=failed
echo 3 >/proc/sys/vm/drop_caches
check "read back own pattern at 1M" "\$(dd if=/dev/vda bs=1M skip=1 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)" "$guest_sum"
if blkdiscard -o 4194304 -l 1048576 /dev/vda; then echo "GUEST: discard ok"; else echo "GUEST: discard FAILED"; result=failed; fi
sync
echo "GUEST: done after \$(cut -d' ' -f1 /proc/uptime) s of guest time"
echo "CMKFS-GUEST-RESULT \$result"
if grep -qw cmkfs.hold /proc/cmdline; then
  while :; do
    if echo "\$(date) guest write" | dd of=/dev/vda bs=4096 seek=512 conv=fsync,sync 2>/dev/null; then echo "GUEST: write ok"; else echo "GUEST: write FAILED"; fi
    sleep 1
  done
fi
poweroff -f
INIT
  chmod 0755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.gz"
}

