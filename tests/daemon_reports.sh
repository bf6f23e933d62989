# shellcheck shell=bash
# Sanitizer reports and the daemon's exit status reach the test. Sourced by
# every harness that starts cmkfs (tests/e2e/lib.sh, tests/reliability/lib.sh,
# examples/lib.sh under ctest, ...):
#
#   reports_init DIR REAPER  every process started from here on writes its
#                            ASan/LSan, UBSan and TSan reports under DIR (the
#                            *_OPTIONS already set are kept, only log_path is
#                            replaced); REAPER is the cmkfs_test_reaper binary
#   reports_launch CMD...    runs a detaching start command (cmkfs ... MNT)
#                            under REAPER, which records the exit status of the
#                            daemon it leaves behind; returns CMD's status
#                            (124 if it has not returned within 60 s)
#   reports_wrapper FILE BIN writes FILE, an executable that runs BIN as
#                            reports_launch does, for scripts that start the
#                            daemon themselves (quickstart.sh, mount helper)
#   reports_killed PID       PID was killed with SIGKILL on purpose
#   reports_check            at teardown: prints every sanitizer report and
#                            every daemon that did not exit 0 (nor was killed
#                            on purpose, nor is still running); returns 1 if
#                            there was any
#   alive PID                PID exists and is neither a zombie nor dead (a
#                            process reaped between two looks is gone)

reports_init() {
  REPORTS_DIR=$1
  REPORTS_REAPER=$2
  REPORTS_RUNS=0
  [ -x "$REPORTS_REAPER" ] ||
    { echo "FAIL: $REPORTS_REAPER is not built (target cmkfs_test_reaper)" >&2; return 1; }
  mkdir -p "$REPORTS_DIR"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$REPORTS_DIR/asan"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$REPORTS_DIR/ubsan"
  export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$REPORTS_DIR/tsan"
}

reports_launch() {
  REPORTS_RUNS=$((REPORTS_RUNS + 1))
  local run=$REPORTS_DIR/run.$REPORTS_RUNS
  mkdir -p "$run"
  echo "$*" >"$run/command"
  timeout 60 "$REPORTS_REAPER" "$run" "$@"
}

reports_wrapper() {
  cat >"$1" <<WRAP
#!/bin/sh
run=$REPORTS_DIR/run.\$\$
mkdir -p "\$run" && echo "$2 \$*" >"\$run/command"
exec "$REPORTS_REAPER" "\$run" "$2" "\$@"
WRAP
  chmod 0755 "$1"
}

reports_killed() { [ -z "${REPORTS_DIR:-}" ] || : >"$REPORTS_DIR/killed.$1"; }

reports_check() {
  [ -n "${REPORTS_DIR:-}" ] || return 0
  local bad=0 run f pid st
  for run in "$REPORTS_DIR"/run.*; do
    [ -d "$run" ] || continue
    for _ in $(seq 100); do [ -e "$run/done" ] && break; sleep 0.1; done
    if [ ! -e "$run/done" ]; then
      echo "FAIL: a daemon started by this test is still running: $(cat "$run/command")" >&2
      bad=1
    fi
    for f in "$run"/exit.*; do
      [ -e "$f" ] || continue
      pid=${f##*.}
      st=$(cat "$f")
      case "$st" in
        *" exit 0") ;;
        *" signal 9") [ -e "$REPORTS_DIR/killed.$pid" ] ||
          { echo "FAIL: daemon pid $pid ended: $st (not killed by the test)" >&2; bad=1; } ;;
        *) echo "FAIL: daemon pid $pid ended: $st" >&2; bad=1 ;;
      esac
    done
  done
  for f in "$REPORTS_DIR"/asan.* "$REPORTS_DIR"/ubsan.* "$REPORTS_DIR"/tsan.*; do
    [ -e "$f" ] || continue
    echo "FAIL: sanitizer report ${f##*/}:" >&2
    cat "$f" >&2
    bad=1
  done
  return $bad
}

alive() {
  local st
  st=$(grep '^State:' "/proc/$1/status" 2>/dev/null) || return 1
  [[ $st != *Z* && $st != *X* ]]
}
