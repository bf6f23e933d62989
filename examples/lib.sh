# shellcheck shell=bash
# Shared helpers for the cmkfs example walkthroughs. Sourced, not run.
#
# Environment:
#   CMKFS_BIN_DIR   directory holding both cmkfs and cmkctl (e.g. /usr/bin)
#   CMKFS, CMKCTL   paths of each binary (override CMKFS_BIN_DIR)
#   CMKFS_WORK_DIR  where state, config and mountpoint go (default: a fresh
#                   directory under /var/tmp, removed on exit)
#   CMKFS_KEEP=1    keep the work directory on exit (for a look afterwards)
#   CMKFS_TEST_REAPER  set by the test suite: the daemon's sanitizer reports
#                   and exit status are checked on exit (tests/daemon_reports.sh)
# Without any of these, the binaries come from the build tree build/ next to
# examples/ when it has them, else from /usr/bin (the installed package).

examples_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$examples_dir")

if [ -n "${CMKFS_BIN_DIR:-}" ]; then
  CMKFS=${CMKFS:-$CMKFS_BIN_DIR/cmkfs}
  CMKCTL=${CMKCTL:-$CMKFS_BIN_DIR/cmkctl}
elif [ -x "$repo_dir/build/fs/daemon/cmkfs" ] && [ -x "$repo_dir/build/cli/cmkctl" ]; then
  CMKFS=${CMKFS:-$repo_dir/build/fs/daemon/cmkfs}
  CMKCTL=${CMKCTL:-$repo_dir/build/cli/cmkctl}
else
  CMKFS=${CMKFS:-/usr/bin/cmkfs}
  CMKCTL=${CMKCTL:-/usr/bin/cmkctl}
fi
for b in "$CMKFS" "$CMKCTL"; do
  if [ ! -x "$b" ]; then
    echo "$(basename "$0"): $b is not an executable; build cmkfs, install the package, or set CMKFS_BIN_DIR" >&2
    exit 2
  fi
done

work_owned=0
if [ -n "${CMKFS_WORK_DIR:-}" ]; then
  work=$CMKFS_WORK_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d /var/tmp/cmkfs-example.XXXXXX)
  work_owned=1
fi
state=$work/state
mnt=$work/mnt
config=$work/cmkfs.toml
mkdir -p "$state" "$mnt"
if [ -n "${CMKFS_TEST_REAPER:-}" ]; then
  # shellcheck source=tests/daemon_reports.sh
  source "$repo_dir/tests/daemon_reports.sh"
  reports_init "$work/reports" "$CMKFS_TEST_REAPER" || exit 1
fi

# A config of its own, so the walkthrough never touches /etc/cmkfs or
# /var/lib/cmkfs, and the key watcher reacts within a second.
cat >"$config" <<TOML
state_dir = "$state"
[watcher]
poll_interval = "1s"
auto_rotation_window = "5s"
on_seal = ""
TOML

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# Runs cmkctl on the example's state, echoing the command as a user would type it.
ctl() {
  echo "+ cmkctl $*" >&2
  "$CMKCTL" --config "$config" "$@"
}
# Same, without echo: for values captured into variables inside checks.
ctl_quiet() { "$CMKCTL" --config "$config" "$@"; }

# Mounts cmkfs on $mnt in the background and waits until the mount is up.
mount_cmkfs() {
  echo "+ cmkfs --config $config $mnt" >&2
  if [ -n "${REPORTS_DIR:-}" ]; then
    reports_launch "$CMKFS" --config "$config" "$mnt"
  else
    "$CMKFS" --config "$config" "$mnt"
  fi
  for _ in $(seq 100); do
    mountpoint -q "$mnt" && return 0
    sleep 0.1
  done
  fail "cmkfs did not mount $mnt within 10 s"
}

# Whether $1 is in the mount table. Unlike `mountpoint -q`, also true for a
# FUSE mount whose daemon died (stat fails with ENOTCONN), which teardown must
# still remove.
in_mount_table() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

unmount_cmkfs() {
  in_mount_table "$mnt" || return 0
  echo "+ fusermount3 -u $mnt" >&2
  fusermount3 -u "$mnt" 2>/dev/null || true
  for _ in $(seq 100); do
    in_mount_table "$mnt" || return 0
    sleep 0.1
  done
  fusermount3 -u -z "$mnt" 2>/dev/null || true
  fail "$mnt was still mounted 10 s after fusermount3 -u"
}

cleanup_example() {
  local rc=$?
  set +e
  if in_mount_table "$mnt"; then
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
    for _ in $(seq 50); do in_mount_table "$mnt" || break; sleep 0.1; done
  fi
  if [ -n "${REPORTS_DIR:-}" ]; then
    reports_check || [ "$rc" -ne 0 ] || rc=1
  fi
  if [ "$work_owned" = 1 ] && [ "${CMKFS_KEEP:-0}" != 1 ]; then
    rm -rf "$work"
  elif [ "${CMKFS_KEEP:-0}" = 1 ]; then
    echo "kept $work" >&2
  fi
  exit "$rc"
}
trap cleanup_example EXIT
trap 'exit 130' INT TERM

# Prints one field of `cmkctl disk show DISK -o json`.
disk_field() { ctl_quiet disk show "$1" -o json | jq -er ".$2"; }

# Waits until `disk show` reports STATE for DISK; fails after TIMEOUT s.
wait_for_state() {
  local disk=$1 want=$2 timeout=${3:-15} now
  for _ in $(seq $((timeout * 10))); do
    now=$(disk_field "$disk" state 2>/dev/null || true)
    [ "$now" = "$want" ] && return 0
    sleep 0.1
  done
  fail "disk $disk is '$now' after $timeout s, expected '$want'"
}

# Writes a 1 MiB pattern that names its purpose and a random tag.
pattern() { head -c 1048576 < <(yes "cmkfs example $1"); }

# Writes pattern TEXT at 1 MiB into the mounted DISK, checks that it reads
# back, checks that the disk is active, and keeps a handle open on fd 3 (the
# caller closes it).
write_and_hold() { # DISK TEXT
  local file=$mnt/disks/$1 sum
  pattern "$2" | dd of="$file" bs=1M seek=1 conv=notrunc,fsync status=none
  sum=$(pattern "$2" | sha256sum)
  [ "$(dd if="$file" bs=1M skip=1 count=1 status=none | sha256sum)" = "$sum" ] ||
    fail "data does not read back from $1"
  exec 3<>"$file"
  [ "$(disk_field "$1" state)" = active ] || fail "disk $1 is not active"
}
