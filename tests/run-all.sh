#!/usr/bin/env bash
# Installs what is needed, builds cmkfs and runs every test. This is the
# second command of the README and exactly what CI runs.
#
#   tests/run-all.sh            everything CI runs, in four builds:
#                                 build-asan/  ASan+UBSan: the whole suite except
#                                              the tests that need the shipped
#                                              binaries (below)
#                                 build/       release: the packages (.deb,
#                                              .rpm) and the benchmark smoke
#                                              run; only what they use is built
#                                 build-tsan/  TSan: every concurrent part (core,
#                                              keystore, cli, fuse, engine,
#                                              watcher, fsx through the mount,
#                                              the crash loop)
#                                 build-tsa/   clang -Wthread-safety -Werror:
#                                              the daemon, cmkctl and every
#                                              library (a build, no tests)
#   tests/run-all.sh --release  the whole suite on the release build only (the
#                               quick local loop)
#   tests/run-all.sh --asan     only the ASan+UBSan part
#   tests/run-all.sh --tsan     only the TSan part
#   tests/run-all.sh --tsa      only the clang thread-safety build
#   CMKFS_LONG_TESTS=1 tests/run-all.sh   the long variants (crash loops, model
#                               test, fuzzing, soak) instead of the CI-sized ones
#
# Each part prints ctest's summary and its wall time; the script fails if any
# part fails, and a part that selects no test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/ci-trees.sh
source tests/ci-trees.sh

release_only=$(cmkfs_release_only_regex)
# The TSan part: every label whose tests run threads (each must select a test)
# plus the tests labelled 'tsan' (fsx through the mount, the crash loop).
tsan_labels=(core keystore cli fuse engine watcher tsan)
# Tests that cannot run under TSan, with the reason in docs/reliability.md
# (Sanitizers).
# Entries are regular expressions (anchored). The token, TPM and TLS-relay
# variants run NSS softokn, p11-kit's RPC client and tpm2-tss, libraries TSan
# cannot see into; the same code paths of ours run under TSan with the
# software backend and SoftHSM2 loaded directly.
tsan_excluded=(
  'keystore\.(KeyBackendTest|TokenKeyTest)\..*(Nss|P11Kit).*'
  'keystore\.Tpm2Test\..*'
  'keystore\.KeyBackendThroughTlsRelay'
  'watcher\.Tokens/.*Nss.*'
  'cli\.CustodyTest\.MigrationToTheTpmAndTheTpmPosture'
)

parts=(asan release-only tsan tsa)
case "${1:-}" in
  "") ;;
  --release) parts=(release) ;;
  --asan) parts=(asan) ;;
  --tsan) parts=(tsan) ;;
  --tsa) parts=(tsa) ;;
  *) echo "run-all.sh: unknown option '$1'; accepted: --release, --asan, --tsan, --tsa" >&2
     exit 2 ;;
esac

packaging/install-deps.sh
scripts/check-format.sh
# Let ccache reuse objects across checkouts in different directories.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
# A sanitizer report fails the test that triggered it. Reports are written to
# files (log_path): each harness that starts the daemon points log_path at a
# directory of its own and fails on any report there (tests/daemon_reports.sh);
# everything else reports under DIR/sanitizer-logs/, and any report left there
# fails the part (san_checked), even one whose exit status nobody saw.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

san_checked() { # COMMAND...: runs it with reports under ./sanitizer-logs/
  local logs=$PWD/sanitizer-logs rc=0
  rm -rf "$logs"
  mkdir -p "$logs"
  ASAN_OPTIONS=$ASAN_OPTIONS:log_path=$logs/asan \
    UBSAN_OPTIONS=$UBSAN_OPTIONS:log_path=$logs/ubsan \
    TSAN_OPTIONS=$TSAN_OPTIONS:log_path=$logs/tsan "$@" || rc=$?
  if compgen -G "$logs/*" >/dev/null; then
    echo "run-all.sh: sanitizer reports in $logs:" >&2
    tail -n +1 "$logs"/* >&2
    rc=1
  fi
  return $rc
}

# Each failed test's name and the last lines of its output, collected for the
# recap at the end of the run: CI shows only the tail of what run-all.sh
# prints, so a failure in the middle of a long part would not be seen there.
recap=$(mktemp)
trap 'rm -f "$recap"' EXIT

run_ctest() { # DIR TITLE CTEST_ARGS...
  local dir=$1 title=$2 log rc=0
  shift 2
  echo "=== $title"
  log=$(mktemp)
  (cd "$dir" && san_checked ctest --output-on-failure --no-tests=error --timeout 900 \
    --parallel "$(nproc)" "$@") \
    2>&1 | tee "$log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    { echo "--- $title ($dir): failed"
      recap_failures "$log"; } >>"$recap"
  fi
  rm -f "$log"
  return "$rc"
}

recap_failures() { # CTEST_LOG: each failed test's result line and output tail
  awk '
    function flush(  i) {
      for (i = (n > 25 ? n - 25 : 0); i < n; i++) print "    " buf[i % 25]
      on = 0; n = 0
    }
    / Test +#[0-9]+: / || /^ +Start +[0-9]+: / { if (on) flush() }
    / Test +#[0-9]+: / && /\*\*\*|Not Run/ { print; on = 1; next }
    /^run-all.sh: sanitizer reports/ { if (on) flush(); print; on = 1; next }
    on { buf[n++ % 25] = $0 }
    END { if (on) flush() }
  ' "$1"
}

# CI-sized fsx and crash-loop counts for the TSan part, unless
# CMKFS_LONG_TESTS=1 or FSX_OPS/CRASH_CYCLES are set.
tsan_sized() { # COMMAND...
  if [ "${CMKFS_LONG_TESTS:-0}" != 1 ]; then
    export FSX_OPS=${FSX_OPS:-100000} CRASH_CYCLES=${CRASH_CYCLES:-20}
  fi
  "$@"
}

# Wall time of each step since the script started (SECONDS counts from 0),
# printed at the end (docs/reliability.md, CI budget).
times=()
step_start=0
timed() { # NAME: records the time since the previous step
  times+=("$(printf '%-14s %5d s' "$1" $((SECONDS - step_start)))")
  step_start=$SECONDS
}
timed setup

failed=()
for part in "${parts[@]}"; do
  case "$part" in
    release)
      cmkfs_build_part release build
      run_ctest build "whole suite, release build" || failed+=(release) ;;
    release-only)
      if cmkfs_build_part release-only build &&
        cmkfs_require_tests build "${CMKFS_RELEASE_ONLY_TESTS[@]}"; then
        run_ctest build "packages and benchmark smoke run, release build" \
          -R "$release_only" || failed+=(release)
      else
        failed+=(release)
      fi
      cmkfs_restore_release_tree build ;;
    asan)
      cmkfs_build_part asan build-asan
      run_ctest build-asan "whole suite under ASan+UBSan" -E "$release_only" ||
        failed+=(asan) ;;
    tsan)
      cmkfs_build_part tsan build-tsan
      cmkfs_require_labels build-tsan "${tsan_labels[@]}"
      labels=$(IFS='|'; echo "^(${tsan_labels[*]})\$")
      exclude=()
      if [ ${#tsan_excluded[@]} -gt 0 ]; then
        exclude=(-E "^($(IFS='|'; echo "${tsan_excluded[*]}"))\$")
      fi
      (tsan_sized run_ctest build-tsan "every concurrent part under TSan" \
        -L "$labels" "${exclude[@]}") || failed+=(tsan) ;;
    tsa)
      echo "=== clang -Wthread-safety build of the product"
      cmkfs_build_part tsa build-tsa || failed+=(tsa) ;;
  esac
  timed "$part"
done

echo "=== wall time"
printf '%s\n' "${times[@]}"
printf '%-14s %5d s\n' total "$SECONDS"
if [ ${#failed[@]} -gt 0 ]; then
  if [ -s "$recap" ]; then
    echo "=== failed tests"
    cat "$recap"
  fi
  echo "run-all.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "run-all.sh: all parts passed: ${parts[*]}"
