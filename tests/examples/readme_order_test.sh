#!/usr/bin/env bash
# The README's two commands in their order: examples/quickstart.sh configures
# build/ with the tests off, then tests/run-all.sh reuses build/. This checks,
# on a scratch tree and with the configure code both scripts use
# (tests/ci-trees.sh), that run-all's configuration yields a tree whose
# release-only tests are registered whatever quickstart left in the cache,
# that a filter matching no test fails, and that quickstart still works after
# run-all. It configures only (no compile).
#
#   readme_order_test.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: readme_order_test.sh SOURCE_DIR}
cd "$src"
# shellcheck source=tests/ci-trees.sh
source tests/ci-trees.sh

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
tmp=$(mktemp -d /var/tmp/cmkfs-readme-order.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/build
cache() { sed -n "s/^$1:[A-Z]*=//p" "$tree/CMakeCache.txt"; }
total() { (cd "$tree" && ctest -N "$@" | sed -n 's/^Total Tests: //p'); }

# Both scripts use this code for build/ (a change to either shows here).
grep -q '^ *cmkfs_configure_quickstart build$' examples/quickstart.sh ||
  fail "examples/quickstart.sh no longer configures build/ with cmkfs_configure_quickstart"
grep -q 'cmkfs_build_part release-only build ' tests/run-all.sh ||
  fail "tests/run-all.sh no longer builds build/ with cmkfs_build_part release-only"
# Every ctest call of run-all.sh that runs tests refuses to find none.
calls=0
while IFS= read -r line; do
  [[ "$line" == *--no-tests=error* ]] || fail "run-all.sh runs ctest without --no-tests=error: $line"
  calls=$((calls + 1))
done < <(grep -E '(^|[^-_[:alnum:]])ctest ' tests/run-all.sh | grep -v -- 'ctest -N' | grep -v '^ *#')
[ "$calls" -gt 0 ] || fail "found no ctest call in tests/run-all.sh"

echo "== 1. quickstart.sh's configuration: tests off, none registered"
cmkfs_configure_quickstart "$tree"
[ "$(cache CMKFS_BUILD_TESTS)" = OFF ] || fail "quickstart configured CMKFS_BUILD_TESTS=$(cache CMKFS_BUILD_TESTS)"
[ "$(total)" = 0 ] || fail "a tests-off tree lists $(total) tests"
# This is the state in which ctest used to pass with "No tests were found".
if (cd "$tree" && ctest --no-tests=error -R "$(cmkfs_release_only_regex)" >/dev/null 2>&1); then
  fail "ctest --no-tests=error passed on a tree with no tests"
fi

echo "== 2. run-all.sh's release-only configuration on the same tree"
cmkfs_configure_part release-only "$tree"
[ "$(cache CMKFS_BUILD_TESTS)" = ON ] || fail "run-all left CMKFS_BUILD_TESTS=$(cache CMKFS_BUILD_TESTS)"
cmkfs_require_tests "$tree" "${CMKFS_RELEASE_ONLY_TESTS[@]}" || fail "release-only tests missing"
n=$(total -R "$(cmkfs_release_only_regex)")
[ "$n" = "${#CMKFS_RELEASE_ONLY_TESTS[@]}" ] ||
  fail "the release-only filter selects $n tests, expected ${#CMKFS_RELEASE_ONLY_TESTS[@]}"
[ "$(cache CMAKE_SKIP_INSTALL_ALL_DEPENDENCY)" = ON ] ||
  fail "release-only tree would let cpack build every target"
if cmkfs_require_tests "$tree" no.such.test 2>/dev/null; then
  fail "cmkfs_require_tests accepted a test that does not exist"
fi
if cmkfs_require_labels "$tree" packaging no_such_label 2>/dev/null; then
  fail "cmkfs_require_labels accepted a label no test has"
fi
cmkfs_require_labels "$tree" packaging bench || fail "labels packaging, bench select nothing"

echo "== 3. after the part: the default install dependency is back"
cmkfs_restore_release_tree "$tree"
[ "$(cache CMAKE_SKIP_INSTALL_ALL_DEPENDENCY)" = OFF ] ||
  fail "'cmake --build build --target package' would pack unbuilt binaries"
[ "$(cache CMKFS_BUILD_TESTS)" = ON ] || fail "restoring the tree turned the tests off"

echo "== 4. quickstart.sh again, then the sanitizer parts (exclusive options)"
cmkfs_configure_quickstart "$tree"
[ "$(cache CMKFS_BUILD_TESTS)" = OFF ] || fail "quickstart after run-all left the tests on"
cmkfs_configure_part tsan "$tree"
cmkfs_configure_part asan "$tree" || fail "the asan configuration failed on a TSan tree"
[ "$(cache CMKFS_ASAN)/$(cache CMKFS_TSAN)/$(cache CMKFS_BUILD_TESTS)" = ON/OFF/ON ] ||
  fail "asan part left ASAN/TSAN/TESTS = $(cache CMKFS_ASAN)/$(cache CMKFS_TSAN)/$(cache CMKFS_BUILD_TESTS)"
cmkfs_configure_part release "$tree"
[ "$(cache CMKFS_ASAN)/$(cache CMKFS_TSAN)" = OFF/OFF ] || fail "release part kept a sanitizer on"
echo "PASS: quickstart.sh then run-all.sh configure build/ with its tests"
