#!/usr/bin/env bash
# The mount helper packaging/mount.fuse.cmkfs, which mount(8) runs for
# /etc/fstab lines of type fuse.cmkfs:
#   STATE_DIR  MNT  fuse.cmkfs  defaults,nofail  0 0
# is called here as mount(8) calls it (`mount.fuse.cmkfs SOURCE MOUNTPOINT -o
# rw,...,nofail`, fstab-only options included), with the build's cmkfs
# (CMKFS_MOUNT_HELPER_CMKFS), so nothing is installed system-wide. The deb
# package test runs the real `mount -t fuse.cmkfs` against the installed helper.
set -euo pipefail
: "${CMKFS:?set CMKFS to the cmkfs binary}" "${CMKCTL:?set CMKCTL to the cmkctl binary}"
helper=$(cd "$(dirname "$0")/../../packaging" && pwd)/mount.fuse.cmkfs
# shellcheck source=tests/daemon_reports.sh
source "$(dirname "$0")/../daemon_reports.sh"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
tmp=$(mktemp -d /var/tmp/cmkfs-fstab-test.XXXXXX)
state=$tmp/state
mnt=$tmp/mnt
cleanup() {
  local rc=$?
  set +e
  if mountpoint -q "$mnt" 2>/dev/null; then
    umount "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt"
    for _ in $(seq 50); do mountpoint -q "$mnt" || break; sleep 0.1; done
  fi
  reports_check || [ "$rc" -ne 0 ] || rc=1
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
mkdir -p "$state" "$mnt"

# The helper runs the build's cmkfs through cmkfs_test_reaper: the daemon's
# sanitizer reports and exit status are checked on exit.
reports_init "$tmp/reports" "${CMKFS_TEST_REAPER:?set CMKFS_TEST_REAPER to cmkfs_test_reaper}"
reports_wrapper "$tmp/cmkfs-reaped" "$CMKFS"
export CMKFS_MOUNT_HELPER_CMKFS=$tmp/cmkfs-reaped

"$CMKCTL" --state-dir "$state" disk create fstab-disk --size 16M >/dev/null
head -c 1048576 /dev/urandom >"$tmp/data"

check_mount() {
  local how=$1
  mountpoint -q "$mnt" || fail "$how: $mnt is not mounted"
  grep -q " $mnt fuse.cmkfs " /proc/mounts || fail "$how: $mnt is not a fuse.cmkfs mount in /proc/mounts"
  [ "$(stat -c %s "$mnt/disks/fstab-disk")" = 16777216 ] || fail "$how: disks/fstab-disk is not 16 MiB"
}
unmount() {
  umount "$mnt" || fail "umount $mnt failed"
  for _ in $(seq 100); do mountpoint -q "$mnt" || return 0; sleep 0.1; done
  fail "$mnt still mounted after umount"
}

echo "+ mount.fuse.cmkfs $state $mnt -o rw,noatime,nofail,_netdev,x-systemd.requires=local-fs.target"
"$helper" "$state" "$mnt" -o rw,noatime,nofail,_netdev,x-systemd.requires=local-fs.target ||
  fail "the helper did not mount"
check_mount "state dir source"
grep " $mnt fuse.cmkfs " /proc/mounts | grep -q noatime || fail "the noatime option did not reach the mount"
dd if="$tmp/data" of="$mnt/disks/fstab-disk" bs=1M seek=2 conv=notrunc,fsync status=none
unmount

# Source "cmkfs": the state directory comes from the config (config=FILE).
printf 'state_dir = "%s"\n' "$state" >"$tmp/cmkfs.toml"
echo "+ mount.fuse.cmkfs cmkfs $mnt -o rw,config=$tmp/cmkfs.toml"
"$helper" cmkfs "$mnt" -o "rw,config=$tmp/cmkfs.toml" || fail "the helper did not mount with config="
check_mount "config= source"
cmp <(dd if="$mnt/disks/fstab-disk" bs=1M skip=2 count=1 status=none) "$tmp/data" ||
  fail "data written through the first mount does not read back through the second"
unmount

# -f (fake) mounts nothing; a bad argument is refused with a reason.
"$helper" "$state" "$mnt" -f -o rw || fail "-f failed"
mountpoint -q "$mnt" && fail "-f mounted"
if "$helper" "$state" "$mnt" --bogus 2>"$tmp/err"; then fail "the helper accepted --bogus"; fi
grep -q "unknown argument '--bogus'" "$tmp/err" || fail "no reason for --bogus: $(cat "$tmp/err")"
echo "fstab mount helper: OK"
