#!/usr/bin/env bash
# Installs what is needed, builds cmkfs and runs every test. This is the
# second command of the README and exactly what CI runs.
#
#   tests/run-all.sh                 build in build/ and run the whole suite
#   tests/run-all.sh --asan          same, in build-asan/ with ASan+UBSan
#   tests/run-all.sh --tsan          engine, keystore and core tests under TSan
#   CMKFS_LONG_TESTS=1 tests/run-all.sh   the long variants (crash loops, model
#                                    test, soak) instead of the CI-sized ones
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
cmake_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
ctest_flags=()
case "${1:-}" in
  "") ;;
  --asan) build_dir=build-asan; cmake_flags+=(-DCMKFS_ASAN=ON) ;;
  --tsan) build_dir=build-tsan; cmake_flags+=(-DCMKFS_TSAN=ON)
          ctest_flags+=(-L 'core|keystore|engine|watcher') ;;
  *) echo "run-all.sh: unknown option '$1'; accepted: --asan, --tsan" >&2; exit 2 ;;
esac

packaging/install-deps.sh
scripts/check-format.sh
# Let ccache reuse objects across checkouts in different directories.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B "$build_dir" "${cmake_flags[@]}" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
cd "$build_dir"
ctest --output-on-failure --timeout 900 "${ctest_flags[@]}"
