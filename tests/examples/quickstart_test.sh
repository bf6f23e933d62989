#!/usr/bin/env bash
# Runs examples/quickstart.sh with the built binaries (CMKFS, CMKCTL) in a
# scratch demo directory, checks the demo disk it leaves mounted, then
# unmounts and removes it.
set -euo pipefail
: "${CMKFS:?set CMKFS to the cmkfs binary}" "${CMKCTL:?set CMKCTL to the cmkctl binary}"
examples=$(cd "$(dirname "$0")/../../examples" && pwd)
# shellcheck source=tests/daemon_reports.sh
source "$(dirname "$0")/../daemon_reports.sh"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
tmp=$(mktemp -d /var/tmp/cmkfs-quickstart-test.XXXXXX)
demo=$tmp/demo
cleanup() {
  local rc=$?
  set +e
  if findmnt -rn --mountpoint "$demo/mnt" >/dev/null 2>&1; then
    fusermount3 -u "$demo/mnt" 2>/dev/null || fusermount3 -u -z "$demo/mnt"
    for _ in $(seq 50); do findmnt -rn --mountpoint "$demo/mnt" >/dev/null 2>&1 || break; sleep 0.1; done
  fi
  reports_check || [ "$rc" -ne 0 ] || rc=1
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

mkdir -p "$tmp/bin"
# cmkfs runs through cmkfs_test_reaper: the daemon's sanitizer reports and
# exit status are checked on exit.
reports_init "$tmp/reports" "${CMKFS_TEST_REAPER:?set CMKFS_TEST_REAPER to cmkfs_test_reaper}"
reports_wrapper "$tmp/bin/cmkfs" "$CMKFS"
ln -s "$CMKCTL" "$tmp/bin/cmkctl"
CMKFS_BIN_DIR=$tmp/bin CMKFS_DEMO_DIR=$demo bash "$examples/quickstart.sh" || fail "quickstart.sh failed"

mountpoint -q "$demo/mnt" || fail "quickstart.sh did not leave $demo/mnt mounted"
file=$demo/mnt/disks/demo
[ "$(stat -c %s "$file")" = 1073741824 ] || fail "$file is not 1 GiB"
show=$("$CMKCTL" --state-dir "$demo/state" disk show demo -o json)
[ "$(jq -r .encryption <<<"$show")" = customer ] || fail "the demo disk is not customer-encrypted: $show"
[ "$(jq -r .state <<<"$show")" = active ] || fail "the demo disk is not active: $show"
head -c 1048576 /dev/urandom >"$tmp/data"
dd if="$tmp/data" of="$file" bs=1M seek=100 conv=notrunc,fsync status=none
cmp <(dd if="$file" bs=1M skip=100 count=1 status=none) "$tmp/data" || fail "the demo disk does not read back"

# Run twice: it starts afresh, unmounting the previous demo.
CMKFS_BIN_DIR=$tmp/bin CMKFS_DEMO_DIR=$demo bash "$examples/quickstart.sh" >/dev/null || fail "a second quickstart.sh failed"
mountpoint -q "$demo/mnt" || fail "the second quickstart.sh did not leave $demo/mnt mounted"
[ "$(jq -r .state <<<"$("$CMKCTL" --state-dir "$demo/state" disk show demo -o json)")" = active ] ||
  fail "after the second run the demo disk is not active"
echo "quickstart: OK"
