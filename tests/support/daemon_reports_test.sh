#!/usr/bin/env bash
# Proves that the harness teardown (tests/daemon_reports.sh, used by every
# script that starts cmkfs) fails on what a detached daemon hides: a
# LeakSanitizer report, a UBSan abort and a non-zero exit, each planted in
# fake_daemon, a test-only daemon look-alike. A clean fake daemon passes, so
# the check is not simply always failing. Registered only in the ASan+UBSan
# build, where the planted faults produce reports.
# Usage: daemon_reports_test.sh REAPER FAKE_DAEMON
set -euo pipefail
reaper=${1:?path to cmkfs_test_reaper}
fake=${2:?path to fake_daemon}
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d /tmp/cmkfs-reports-XXXXXX)
trap 'rm -rf "$root"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# run_case MODE: starts the fake daemon as a harness starts cmkfs, stops it
# with SIGTERM, and runs the teardown check. Prints the check's output; exit
# status is the check's.
run_case() (
  mode=$1
  # shellcheck source=tests/daemon_reports.sh
  source "$here/../daemon_reports.sh"
  reports_init "$root/$mode/reports" "$reaper"
  reports_launch "$fake" "$mode" "$root/$mode/pid" || fail "$mode: the fake daemon did not start"
  pid=$(cat "$root/$mode/pid")
  kill -TERM "$pid"
  reports_check 2>&1
)

out=$(run_case clean) || fail "a clean daemon was reported: $out"
echo "clean: passes"

expect_reported() { # MODE WHAT
  local out rc=0
  out=$(run_case "$1") || rc=$?
  [ "$rc" -ne 0 ] || fail "$1: the teardown check passed; output: $out"
  grep -q -- "$2" <<<"$out" || fail "$1: the check failed without '$2': $out"
  echo "$1: reported ($(grep -m1 -- "$2" <<<"$out"))"
}
expect_reported leak 'ERROR: LeakSanitizer: detected memory leaks'
expect_reported leak 'daemon pid [0-9]* ended: fake_daemon exit [1-9]'
# gcc's UBSan abort handler writes its report to stderr whatever log_path
# says (the daemon's stderr is /dev/null), so for UB the exit status is what
# reaches the test.
expect_reported ub 'daemon pid [0-9]* ended: fake_daemon exit [1-9]'
expect_reported fail 'daemon pid [0-9]* ended: fake_daemon exit 3'
echo "daemon_reports: OK"
