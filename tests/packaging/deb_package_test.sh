#!/usr/bin/env bash
# Builds the .deb from a build tree, installs it with dpkg, checks what the
# package promises (files, conffiles, state directory mode, unit, man pages,
# dependencies), runs a smoke test and the systemd unit's commands against the
# installed /usr/bin binaries, then removes and purges it.
#
#   deb_package_test.sh BUILD_DIR PROJECT_VERSION
#
# Leaves nothing behind, even on failure: no mount, no daemon, no package.
set -euo pipefail
build=${1:?usage: deb_package_test.sh BUILD_DIR PROJECT_VERSION}
version=${2:?usage: deb_package_test.sh BUILD_DIR PROJECT_VERSION}
build=$(cd "$build" && pwd)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

# Refuse to clobber an installation that is not ours.
if dpkg-query -W -f='${Status}' cmkfs 2>/dev/null | grep -q 'install ok installed'; then
  fail "the cmkfs package is already installed on this machine; remove it (dpkg -r cmkfs) to run this test"
fi
for f in /usr/bin/cmkfs /usr/bin/cmkctl /etc/cmkfs/cmkfs.toml; do
  [ ! -e "$f" ] || fail "$f exists outside the package; remove it to run this test"
done
state_dir_existed=0
[ -e /var/lib/cmkfs ] && state_dir_existed=1

tmp=$(mktemp -d /var/tmp/cmkfs-deb-test.XXXXXX)
state=$tmp/state
mnt=$tmp/mnt
srv=$tmp/srv
installed=0
daemon_pid=

unmount_quietly() {
  local m=$1
  mountpoint -q "$m" 2>/dev/null || return 0
  fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
  for _ in $(seq 50); do mountpoint -q "$m" 2>/dev/null || return 0; sleep 0.1; done
}
cleanup() {
  local rc=$?
  set +e
  unmount_quietly "$mnt"
  unmount_quietly "$srv"
  unmount_quietly "$tmp/fstab-mnt"
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  if [ "$installed" = 1 ]; then
    dpkg -P cmkfs >/dev/null 2>&1 || echo "cleanup: dpkg -P cmkfs failed" >&2
  fi
  if [ "$state_dir_existed" = 0 ] && [ -d /var/lib/cmkfs ]; then
    rmdir /var/lib/cmkfs 2>/dev/null
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_mounted() {
  for _ in $(seq 100); do
    mountpoint -q "$1" && return 0
    sleep 0.1
  done
  fail "$1 was not mounted within 10 s"
}
wait_unmounted() {
  for _ in $(seq 100); do
    mountpoint -q "$1" || return 0
    sleep 0.1
  done
  fail "$1 was still mounted 10 s later"
}

step "cpack -G DEB in $build"
(cd "$build" && cpack --config CPackConfig.cmake -G DEB -B "$tmp/pkg") >"$tmp/cpack.log" 2>&1 ||
  { tail -n 30 "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$tmp/pkg/cmkfs_${version}_amd64.deb
[ -f "$deb" ] || fail "expected $deb; cpack made: $(ls "$tmp/pkg")"

step "package metadata"
dpkg-deb -f "$deb" Package Version Architecture Maintainer Depends
[ "$(dpkg-deb -f "$deb" Package)" = cmkfs ] || fail "Package is not cmkfs"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version is not $version"
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || fail "no Maintainer"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in fuse3 libfuse3-3 libssl3 liblmdb0 libc6; do
  grep -Eq "(^|, )$dep( |,|$)" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
if objdump -p "$build/fs/daemon/cmkfs" | grep -q 'NEEDED.*libspdlog'; then
  grep -q libspdlog <<<"$depends" || fail "cmkfs links libspdlog but Depends lacks it: $depends"
fi
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/cmkfs ./usr/bin/cmkctl ./usr/sbin/mount.fuse.cmkfs ./etc/cmkfs/cmkfs.toml ./lib/systemd/system/cmkfs.service ./lib/systemd/system/cmkvault.service ./usr/bin/cmkvault ./usr/share/man/man8/cmkvault.8.gz \
  ./usr/share/man/man8/cmkfs.8.gz ./usr/share/man/man8/cmkctl.8.gz ./var/lib/cmkfs/ \
  ./usr/lib/cmkfs/cmkfs-metrics-http.so \
  ./usr/share/bash-completion/completions/cmkctl ./usr/share/bash-completion/completions/cmkfs; do
  grep -q " $f\$" <<<"$contents" || fail "the .deb lacks $f"
done
grep -q '^drwx------ root/root .* \./var/lib/cmkfs/$' <<<"$contents" ||
  fail "/var/lib/cmkfs is not drwx------ root/root in the .deb"

step "dpkg -i"
installed=1
dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log" >&2; fail "dpkg -i failed"; }
dpkg-query -W -f='${Status}\n' cmkfs | grep -q 'install ok installed' || fail "cmkfs is not installed after dpkg -i"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' cmkfs)
echo "conffiles:$conffiles"
grep -q '^ /etc/cmkfs/cmkfs.toml ' <<<"$conffiles" || fail "/etc/cmkfs/cmkfs.toml is not a conffile"
[ "$(stat -c '%a %U %G' /var/lib/cmkfs)" = "700 root root" ] ||
  fail "/var/lib/cmkfs is $(stat -c '%a %U %G' /var/lib/cmkfs), expected 700 root root"
[ "$(/usr/bin/cmkfs --version)" = "cmkfs $version" ] || fail "cmkfs --version: $(/usr/bin/cmkfs --version)"
/usr/bin/cmkctl version | grep -q "$version" || fail "cmkctl version does not print $version"
for page in cmkfs cmkctl; do
  [ "$(man -w "$page" 2>/dev/null)" = "/usr/share/man/man8/$page.8.gz" ] || fail "man -w $page does not find the page"
  rendered=$(env MANPAGER=cat man "$page" 2>/dev/null) || fail "man $page failed"
  grep -q "cmkfs $version" <<<"$rendered" || fail "man $page does not render with 'cmkfs $version'"
done

# bash-completion loads the installed script on first use, for both names.
for program in cmkctl cmkfs; do
  loaded=$(bash -c 'source /usr/share/bash-completion/bash_completion && __load_completion "$1" && complete -p "$1"' _ "$program") ||
    fail "bash-completion does not load a completion for $program"
  grep -q -- "-F _cmkfs_complete $program\$" <<<"$loaded" || fail "completion for $program: $loaded"
done

step "the systemd unit"
unit=/lib/systemd/system/cmkfs.service
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
# shellcheck disable=SC2016 # ${CMKFS_MOUNTPOINT} is systemd's, literally
for line in 'After=local-fs.target' 'Before=libvirtd.service' 'Type=simple' 'KillSignal=SIGTERM' \
  'Restart=on-failure' 'ExecStart=/usr/bin/cmkfs --config /etc/cmkfs/cmkfs.toml --foreground ${CMKFS_MOUNTPOINT}'; do
  grep -qF "$line" "$unit" || fail "$unit lacks '$line'"
done
grep -q '^TimeoutStopSec=' "$unit" || fail "$unit has no TimeoutStopSec"

step "smoke test with /usr/bin binaries and the installed /etc/cmkfs/cmkfs.toml"
mkdir -p "$state" "$mnt"
ctl() { /usr/bin/cmkctl --state-dir "$state" "$@"; }
ctl vault create pkg-vault --purge-protection >/dev/null
key_id=$(ctl key create pkg-vault pkg-key --size 2048)
[[ "$key_id" == cmk://pkg-vault/keys/pkg-key/* ]] || fail "key create printed '$key_id'"
identity=$(ctl des create pkg-des --key-id cmk://pkg-vault/keys/pkg-key)
[ -n "$identity" ] || fail "des create printed no identity"
ctl vault set-policy pkg-vault --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create pkg-disk --size 64M --des pkg-des >/dev/null
[ "$(ctl disk show pkg-disk -o json | jq -r .encryption)" = customer ] || fail "pkg-disk is not customer-encrypted"
/usr/bin/cmkfs --state-dir "$state" "$mnt" || fail "/usr/bin/cmkfs did not mount"
wait_mounted "$mnt"
[ "$(stat -c %s "$mnt/disks/pkg-disk")" = 67108864 ] || fail "disks/pkg-disk is not 64 MiB"
head -c 4194304 /dev/urandom >"$tmp/data"
dd if="$tmp/data" of="$mnt/disks/pkg-disk" bs=1M seek=3 conv=notrunc,fsync status=none
cmp <(dd if="$mnt/disks/pkg-disk" bs=1M skip=3 count=4 iflag=direct status=none) "$tmp/data" ||
  fail "read back differs from what was written"
fusermount3 -u "$mnt"
wait_unmounted "$mnt"
echo "write, read back, unmount: ok"

step "an /etc/fstab line (in a scratch fstab): mount(8) runs the packaged /sbin/mount.fuse.cmkfs"
fstab_mnt=$tmp/fstab-mnt
mkdir -p "$fstab_mnt"
echo "$state  $fstab_mnt  fuse.cmkfs  defaults,nofail  0 0" >"$tmp/fstab"
cat "$tmp/fstab"
mount -T "$tmp/fstab" "$fstab_mnt" || fail "mount -T FSTAB $fstab_mnt failed"
wait_mounted "$fstab_mnt"
cmp <(dd if="$fstab_mnt/disks/pkg-disk" bs=1M skip=3 count=4 iflag=direct status=none) "$tmp/data" ||
  fail "through the fstab mount, the data differs"
umount "$fstab_mnt" || fail "umount $fstab_mnt failed"
wait_unmounted "$fstab_mnt"
echo "fstab mount, read, umount: ok"

step "the unit's commands, as systemd runs them (CMKFS_MOUNTPOINT and CMKFS_STATE_DIR from the environment)"
# systemd is not PID 1 here: run ExecStartPre/ExecStart with the unit's
# environment, then stop with its KillSignal and TimeoutStopSec.
export CMKFS_MOUNTPOINT=$srv CMKFS_STATE_DIR=$state
unit_cmd() { sed -n "s/^$1=//p" "$unit" | sed "s|\${CMKFS_MOUNTPOINT}|$srv|g"; }
while read -r cmd; do
  if [[ "$cmd" == -* ]]; then
    eval "${cmd#-}" 2>/dev/null || true
  else
    eval "$cmd" || fail "ExecStartPre '$cmd' failed"
  fi
done < <(unit_cmd ExecStartPre)
[ -d "$srv" ] || fail "ExecStartPre did not create the mountpoint $srv"
start_cmd=$(unit_cmd ExecStart)
eval "$start_cmd &"
daemon_pid=$!
start_timeout=$(sed -n 's/^TimeoutStartSec=\([0-9]*\).*/\1/p' "$unit")
while read -r cmd; do
  timeout "$start_timeout" bash -c "$cmd" || fail "ExecStartPost '$cmd' failed"
done < <(unit_cmd ExecStartPost)
mountpoint -q "$srv" || fail "the unit's start finished, but $srv is not mounted"
cmp <(dd if="$srv/disks/pkg-disk" bs=1M skip=3 count=4 iflag=direct status=none) "$tmp/data" ||
  fail "through the service's mount, the data differs"
stop_timeout=$(sed -n 's/^TimeoutStopSec=\([0-9]*\).*/\1/p' "$unit")
kill -TERM "$daemon_pid"
for _ in $(seq $((stop_timeout * 10))); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$daemon_pid" 2>/dev/null && fail "cmkfs did not stop within TimeoutStopSec=$stop_timeout s of SIGTERM"
set +e
wait "$daemon_pid"
daemon_rc=$?
set -e
daemon_pid=
[ "$daemon_rc" = 0 ] || fail "cmkfs --foreground exited with $daemon_rc after SIGTERM, expected 0"
mountpoint -q "$srv" && fail "$srv is still mounted after the service stopped"
echo "service start, read, SIGTERM stop (exit 0, unmounted): ok"
unset CMKFS_MOUNTPOINT CMKFS_STATE_DIR

step "dpkg -r"
dpkg -r cmkfs >"$tmp/dpkg-r.log" 2>&1 || { cat "$tmp/dpkg-r.log" >&2; fail "dpkg -r failed"; }
grep -i 'warning' "$tmp/dpkg-r.log" && fail "dpkg -r printed a warning"
for f in /usr/bin/cmkfs /usr/bin/cmkctl /usr/sbin/mount.fuse.cmkfs "$unit" /usr/share/man/man8/cmkfs.8.gz \
  /usr/share/bash-completion/completions/cmkctl; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg -r"
done
[ -f /etc/cmkfs/cmkfs.toml ] || fail "dpkg -r removed the conffile (only purge should)"
if [ "$state_dir_existed" = 0 ] && [ -e /var/lib/cmkfs ]; then
  fail "/var/lib/cmkfs (empty, created by the package) is still there after dpkg -r"
fi
dpkg -P cmkfs >/dev/null 2>&1 || fail "dpkg -P failed"
installed=0
[ ! -e /etc/cmkfs/cmkfs.toml ] || fail "/etc/cmkfs/cmkfs.toml is still there after dpkg -P"
echo
echo "deb package test: OK"
