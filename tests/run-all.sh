#!/usr/bin/env bash
# Installs what is needed, builds cmkfs and runs every test. This is the
# second command of the README and exactly what CI runs.
#
#   tests/run-all.sh            everything CI runs, in three builds:
#                                 build-asan/  ASan+UBSan: the whole suite except
#                                              the two parts that need the
#                                              shipped binaries (below)
#                                 build/       Release (-O3, the build type a
#                                              new user picks first, so CI
#                                              proves it builds): the packages
#                                              (.deb, .rpm) and the benchmark
#                                              smoke run
#                                 build-tsan/  TSan: the engine and watcher tests
#   tests/run-all.sh --release  the whole suite on the release build only (the
#                               quick local loop)
#   tests/run-all.sh --asan     only the ASan+UBSan part
#   tests/run-all.sh --tsan     only the TSan part
#   CMKFS_LONG_TESTS=1 tests/run-all.sh   the long variants (crash loops, model
#                               test, fuzzing, soak) instead of the CI-sized ones
#
# Each part prints ctest's summary; the script fails if any part fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that need the binaries as shipped: packages are built from the release
# tree, and the benchmark smoke run times the release daemon. Every other test
# runs under ASan+UBSan.
release_only='^(packaging\.(deb|rpm)|bench\.quick)$'

parts=(asan release-only tsan)
case "${1:-}" in
  "") ;;
  --release) parts=(release) ;;
  --asan) parts=(asan) ;;
  --tsan) parts=(tsan) ;;
  *) echo "run-all.sh: unknown option '$1'; accepted: --release, --asan, --tsan" >&2
     exit 2 ;;
esac

packaging/install-deps.sh
scripts/check-format.sh
# Let ccache reuse objects across checkouts in different directories.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
# A sanitizer report fails the test that triggered it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

build() { # DIR CMAKE_FLAGS...
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}

run_ctest() { # DIR TITLE CTEST_ARGS...
  local dir=$1 title=$2
  shift 2
  echo "=== $title"
  (cd "$dir" && ctest --output-on-failure --timeout 900 "$@")
}

failed=()
for part in "${parts[@]}"; do
  case "$part" in
    release)
      build build -DCMAKE_BUILD_TYPE=Release
      run_ctest build "whole suite, release build" || failed+=(release) ;;
    release-only)
      build build -DCMAKE_BUILD_TYPE=Release
      run_ctest build "packages and benchmark smoke run, release build" \
        -R "$release_only" || failed+=(release) ;;
    asan)
      build build-asan -DCMKFS_ASAN=ON
      run_ctest build-asan "whole suite under ASan+UBSan" -E "$release_only" ||
        failed+=(asan) ;;
    tsan)
      build build-tsan -DCMKFS_TSAN=ON
      run_ctest build-tsan "engine and watcher tests under TSan" \
        -L 'engine|watcher' || failed+=(tsan) ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-all.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "run-all.sh: all parts passed: ${parts[*]}"
