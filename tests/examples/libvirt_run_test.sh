#!/usr/bin/env bash
# examples/libvirt-domain.xml under a real libvirtd: a private session libvirtd
# and virtlogd (run as libvirt-qemu, every socket, pid file, log and domain
# definition under this test's directory; no systemd needed) define and start
# the example domain on a cmkfs disk (FUSE mount with allow_other, owned by
# libvirt-qemu:kvm). The busybox guest of examples/qemu-boot.sh boots (TCG),
# checks the host's pattern, writes its own, discards a range; the host reads
# the guest's pattern through the mount; the domain is destroyed and
# undefined. Then the domain runs again, the disk's key is disabled, and the
# documented on_seal command (`virsh ... destroy`, with the disk's name) stops
# it: the test checks that libvirt reports it shut off.
#
# The per-test XML is the example with only the paths changed (disk source in
# this test's mount, the guest's kernel and initramfs, a serial log) and the
# disk's DAC <seclabel relabel='no'> dropped (a session libvirtd has no DAC
# driver and refuses it; tests/examples/libvirt_domain_test.sh checks it is
# there for the system instance): the <driver> of the disk, the domain type
# and everything else are the example's, and the test checks that they are.
#
# Fails, naming why, when libvirtd or virtlogd cannot start.
set -euo pipefail
examples=$(cd "$(dirname "$0")/../../examples" && pwd)
# shellcheck source=examples/lib.sh
source "$examples/lib.sh"
# shellcheck source=examples/guest.sh
source "$examples/guest.sh"

for tool in libvirtd virtlogd virsh setpriv python3; do
  command -v "$tool" >/dev/null ||
    fail "$tool not found; install libvirt-daemon-system, libvirt-daemon-driver-qemu and libvirt-clients (packaging/install-deps.sh does)"
done
id libvirt-qemu >/dev/null 2>&1 ||
  fail "no libvirt-qemu user; install libvirt-daemon-driver-qemu (packaging/install-deps.sh does)"
qemu_uid=$(id -u libvirt-qemu)
qemu_gid=$(id -g libvirt-qemu)
domain=cmkfs-vm
xml=$examples/libvirt-domain.xml

# The libvirt side of the test: libvirt-qemu's private XDG directories.
lv=$work/libvirt
mkdir -p "$lv"/{home,run,config,cache}
chmod 0711 "$work"
chmod 0700 "$lv/run"
chown -R libvirt-qemu:"$qemu_gid" "$lv"
# Runs a command as libvirt-qemu in the private libvirt environment.
as_libvirt="$lv/as-libvirt"
cat >"$as_libvirt" <<SH
#!/bin/sh
exec setpriv --reuid=$qemu_uid --regid=$qemu_gid --init-groups \\
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$lv/home XDG_RUNTIME_DIR=$lv/run \\
  XDG_CONFIG_HOME=$lv/config XDG_CACHE_HOME=$lv/cache "\$@"
SH
chmod 0755 "$as_libvirt"
virsh_() { timeout 60 "$as_libvirt" virsh -q -c qemu:///session "$@"; }
domstate() { virsh_ domstate "$domain" 2>/dev/null || true; }

stop_pidfile() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "$(basename "$f" .pid) (pid $pid) still running 10 s after SIGTERM: SIGKILL" >&2
  kill -9 "$pid" 2>/dev/null || true
}
cleanup_libvirt() {
  local rc=$?
  set +e
  if [ -S "$lv/run/libvirt/libvirt-sock" ]; then
    virsh_ destroy "$domain" >/dev/null 2>&1
    virsh_ undefine "$domain" >/dev/null 2>&1
  fi
  # A QEMU that libvirtd left behind (session libvirtd does not kill its
  # domains when it exits).
  stop_pidfile "$lv/run/libvirt/qemu/run/$domain.pid"
  stop_pidfile "$lv/run/libvirtd.pid"
  stop_pidfile "$lv/run/virtlogd.pid"
  (exit "$rc")
  cleanup_example
}
trap cleanup_libvirt EXIT

# A config of its own (replacing lib.sh's): the mount is libvirt-qemu's, and
# on_seal is the documented `virsh destroy`, here run as libvirt-qemu on the
# private session instead of `virsh -c qemu:///system destroy`.
cat >"$config" <<TOML
state_dir = "$state"
[watcher]
poll_interval = "1s"
auto_rotation_window = "5s"
on_seal = "$as_libvirt virsh -c qemu:///session destroy"
[mount]
uid = $qemu_uid
gid = $qemu_gid
allow_other = true
TOML

step "A private virtlogd and libvirtd (session mode, as libvirt-qemu, under $lv)"
# What a daemon said (stderr, then its log) on one line: its error lines, or
# else its last lines.
daemon_says() {
  local files=() f
  for f in "$lv/$1.stderr" "$lv/$1.log"; do [ -s "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] || return 0
  { grep -h -i -m 3 -E 'error|fail|unable|cannot|unrecognized|invalid' "${files[@]}" ||
    tail -q -n 3 "${files[@]}"; } 2>/dev/null | tr '\n' ' '
}
start_daemon() {
  local name=$1
  "$as_libvirt" env LIBVIRT_LOG_OUTPUTS="3:file:$lv/$name.log" \
    timeout 60 "$name" --daemon --pid-file "$lv/run/$name.pid" 2>"$lv/$name.stderr" ||
    fail "$name did not start (exit $?): $(daemon_says "$name")"
}
start_daemon virtlogd
start_daemon libvirtd
started=$(date +%s)
for _ in $(seq 300); do
  [ -S "$lv/run/libvirt/libvirt-sock" ] && break
  sleep 0.1
done
[ -S "$lv/run/libvirt/libvirt-sock" ] ||
  fail "libvirtd made no socket at $lv/run/libvirt/libvirt-sock within 30 s: $(daemon_says libvirtd)"
version=$(virsh_ version 2>&1) ||
  fail "libvirtd does not answer virsh version: $version; log: $(daemon_says libvirtd)"
grep -q 'Running hypervisor: QEMU' <<<"$version" ||
  fail "libvirtd has no QEMU driver (virsh version: $(tr '\n' ' ' <<<"$version")); install libvirt-daemon-driver-qemu"
echo "libvirtd up after $(($(date +%s) - started)) s: $(grep 'Running hypervisor' <<<"$version")"

step "A vault, a key, a disk encryption set and the 64 MiB disk $domain"
ctl vault create lv-vault --purge-protection >/dev/null
ctl key create lv-vault lv-key --size 3072
identity=$(ctl des create lv-des --key-id cmk://lv-vault/keys/lv-key)
ctl vault set-policy lv-vault --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create "$domain" --size 64M --des lv-des >/dev/null
mount_cmkfs
disk_file=$mnt/disks/$domain
[ "$(stat -c %u:%g "$disk_file")" = "$qemu_uid:$qemu_gid" ] ||
  fail "$disk_file is owned by $(stat -c %u:%g "$disk_file"), expected libvirt-qemu ($qemu_uid:$qemu_gid)"
"$as_libvirt" test -r "$disk_file" -a -w "$disk_file" ||
  fail "libvirt-qemu cannot read and write $disk_file (allow_other?)"

tag=$RANDOM$RANDOM
host_sum=$(pattern "host $tag" | sha256sum | cut -d' ' -f1)
guest_sum=$(pattern "guest $tag" | sha256sum | cut -d' ' -f1)
pattern "host $tag" | dd of="$disk_file" bs=1M conv=notrunc,fsync status=none
pattern "discard me $tag" | dd of="$disk_file" bs=1M seek=4 conv=notrunc,fsync status=none
build_initramfs "$tag" "$host_sum" "$guest_sum"
chmod 0644 "$work/initramfs.gz"

# The example with this test's paths: disk source, direct kernel boot, and a
# log of the serial console (written by virtlogd).
console=$lv/console.log
domain_xml() {
  python3 - "$xml" "$disk_file" "$kernel" "$work/initramfs.gz" "$console" "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
src, disk, kernel, initrd, log, cmdline = sys.argv[1:]
tree = ET.parse(src)
os_ = tree.find("os")
for tag, text in (("kernel", kernel), ("initrd", initrd), ("cmdline", cmdline)):
    ET.SubElement(os_, tag).text = text
source = tree.find("devices/disk[@device='disk']/source")
source.set("file", disk)
# A session libvirtd has no DAC driver (it never chowns): the example's
# <seclabel model='dac' relabel='no'/> is for the system instance.
source.remove(source.find("seclabel[@model='dac']"))
ET.SubElement(tree.find("devices/serial"), "log", file=log, append="off")
tree.write(sys.stdout, encoding="unicode")
PY
}
# Checks that the domain libvirt holds has the example's disk settings.
check_defined() {
  local live want
  virsh_ dumpxml "$domain" >"$lv/live.xml"
  for a in type driver/@type driver/@cache driver/@io driver/@discard target/@bus; do
    want=$(xmllint --xpath "string(/domain/devices/disk[@device='disk']/$a)" "$xml")
    live=$(xmllint --xpath "string(/domain/devices/disk[@device='disk']/$a)" "$lv/live.xml")
    [ "$live" = "$want" ] || fail "the defined domain's disk $a is '$live', the example's is '$want'"
  done
  [ "$(xmllint --xpath 'string(/domain/@type)' "$lv/live.xml")" = qemu ] ||
    fail "the defined domain is not type='qemu' (TCG)"
}
wait_console() {
  local want=$1 timeout=$2
  for _ in $(seq $((timeout * 10))); do
    grep -q "$want" "$console" 2>/dev/null && return 0
    [ "$(domstate)" = running ] || break
    sleep 0.1
  done
  echo "--- guest console ---" >&2
  tail -n 30 "$console" >&2 2>/dev/null
  fail "no '$want' on the guest console within $timeout s (domain: $(domstate))"
}
wait_domstate() {
  local want=$1 timeout=$2 now
  for _ in $(seq $((timeout * 10))); do
    now=$(domstate)
    [ "$now" = "$want" ] && return 0
    sleep 0.1
  done
  fail "domain $domain is '$now' after $timeout s, expected '$want'"
}
define_and_start() {
  domain_xml "console=ttyS0 quiet panic=-1 cmkfs.hold" >"$lv/domain.xml"
  chmod 0644 "$lv/domain.xml"
  echo "+ virsh define $lv/domain.xml (examples/libvirt-domain.xml, paths of this test)" >&2
  virsh_ define "$lv/domain.xml" >/dev/null
  check_defined
  echo "+ virsh start $domain" >&2
  virsh_ start "$domain" >/dev/null ||
    fail "virsh start failed; libvirt's QEMU log: $(tail -n 5 "$lv/cache/libvirt/qemu/log/$domain.log" 2>/dev/null | tr '\n' ' ')"
}

step "Boot the example domain (TCG) on $disk_file"
start=$(date +%s)
define_and_start
wait_console 'CMKFS-GUEST-RESULT' 120
elapsed=$(($(date +%s) - start))
sed -n 's/\x1b\[[0-9;?]*[A-Za-z]//g; /GUEST: [^w]\|CMKFS-GUEST-RESULT/p' "$console"
grep -q 'CMKFS-GUEST-RESULT ok' "$console" || fail "the guest reported failure (console above)"
echo "guest booted and did its I/O in $elapsed s"

step "The host reads the guest's pattern through the mount"
[ "$(dd if="$disk_file" bs=1M skip=1 count=1 status=none | sha256sum | cut -d' ' -f1)" = "$guest_sum" ] ||
  fail "the guest's pattern is not at offset 1 MiB of $disk_file"
cmp -s <(dd if="$disk_file" bs=1M skip=4 count=1 status=none) <(head -c 1048576 /dev/zero) ||
  fail "the range the guest discarded (4 MiB..5 MiB) does not read as zeros"
echo "guest pattern at 1 MiB, discarded range reads as zeros: ok"

step "virsh destroy, virsh undefine"
virsh_ destroy "$domain" >/dev/null
wait_domstate "shut off" 10
virsh_ undefine "$domain" >/dev/null
if virsh_ domstate "$domain" >/dev/null 2>&1; then fail "$domain is still defined after undefine"; fi
echo "destroyed and undefined: ok"

step "The domain runs again; the key is disabled: on_seal destroys it"
define_and_start
wait_console 'GUEST: write ok' 120
[ "$(domstate)" = running ] || fail "domain $domain is '$(domstate)' before the key is disabled, expected running"
sealed_at=$(date +%s%N)
ctl key set-attributes lv-vault lv-key --enabled false >/dev/null
wait_for_state "$domain" sealed 15
wait_domstate "shut off" 30
echo "domain shut off $((($(date +%s%N) - sealed_at) / 1000000)) ms after the key was disabled: ok"
[ "$(virsh_ domstate --reason "$domain")" = "shut off (destroyed)" ] ||
  fail "domain $domain is '$(virsh_ domstate --reason "$domain")', expected 'shut off (destroyed)' (by on_seal)"
ctl key set-attributes lv-vault lv-key --enabled true >/dev/null
wait_for_state "$domain" active 15
virsh_ undefine "$domain" >/dev/null
unmount_cmkfs
echo
echo "libvirt run: OK (guest boot and I/O under libvirtd in $elapsed s)"
