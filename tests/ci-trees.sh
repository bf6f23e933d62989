# shellcheck shell=bash
# Sourced (bash) by tests/run-all.sh, examples/quickstart.sh and
# tests/examples/readme_order_test.sh: how each build tree is configured and
# what is built in it. Run from the top of the source tree.
#
# Every option a tree relies on is passed on every configure, so whatever an
# earlier command left in its CMake cache does not matter: quickstart.sh
# configures build/ with the tests off, run-all.sh turns them back on.

# The tests that need the binaries as shipped: the packages are built from the
# release tree, and the benchmark smoke run times the release daemon. Every
# other test runs under ASan+UBSan.
CMKFS_RELEASE_ONLY_TESTS=(packaging.deb packaging.rpm bench.quick)
# What those tests use: the installed binaries and man pages (cpack) and the
# daemon and cmkctl (the benchmark). Nothing else is compiled for them.
# cmkvault: installed by the packages, so cpack needs it built.
CMKFS_RELEASE_ONLY_TARGETS=(cmkfs cmkctl cmkvault cmkfs_man_pages)
# The shipped binaries hold no test double: nm on the release cmkfs and
# cmkctl, with the doubles' library as the positive control (issue 15).
CMKFS_RELEASE_ONLY_TESTS+=(engine.no_test_doubles)
CMKFS_RELEASE_ONLY_TARGETS+=(cmkfs_test_doubles)
# ctest -R regex naming exactly CMKFS_RELEASE_ONLY_TESTS.
cmkfs_release_only_regex() {
  local IFS='|'
  local names="${CMKFS_RELEASE_ONLY_TESTS[*]}"
  echo "^(${names//./\\.})\$"
}

# The thread-safety part (tsa): the product built with clang and
# -Wthread-safety -Werror (CMKFS_THREAD_SAFETY, docs/reliability.md). The two
# binaries link every product library; the tests are not built there.
CMKFS_TSA_TARGETS=(cmkfs cmkctl)

cmkfs_configure() { # DIR CMAKE_FLAGS... (RelWithDebInfo unless the flags say)
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
}

# build/ (the demo and the release part) is Release: the build type a new user
# picks first, so CI proves it builds with -Werror (issue 14, item 16); the
# sanitizer trees stay RelWithDebInfo for their stack traces.
CMKFS_RELEASE_BUILD_TYPE=-DCMAKE_BUILD_TYPE=Release

# The sanitizer trees compile at -O1 with line tables only (-g1): what the
# sanitizers' documentation recommends for speed, and enough for their stack
# traces (file:line). Measured against RelWithDebInfo's -O2 -g, it halves the
# compile time of the largest files (docs/reliability.md, CI budget).
CMKFS_SANITIZER_FLAGS=-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"

# The demo's tree (examples/quickstart.sh): release, no tests.
cmkfs_configure_quickstart() { # DIR
  cmkfs_configure "$1" "$CMKFS_RELEASE_BUILD_TYPE" -DCMKFS_BUILD_TESTS=OFF -DCMKFS_ASAN=OFF -DCMKFS_TSAN=OFF \
    -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=OFF
}

# The tree of a run-all.sh part, tests on. release-only: cpack builds the
# 'preinstall' target, which depends on 'all' unless
# CMAKE_SKIP_INSTALL_ALL_DEPENDENCY is on; cmkfs_restore_release_tree puts
# the default back afterwards so that 'cmake --build build --target package'
# builds what it packs.
cmkfs_configure_part() { # PART DIR
  local part=$1 dir=$2
  case "$part" in
    release) cmkfs_configure "$dir" "$CMKFS_RELEASE_BUILD_TYPE" -DCMKFS_BUILD_TESTS=ON -DCMKFS_FUZZ=OFF -DCMKFS_ASAN=OFF -DCMKFS_TSAN=OFF \
      -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=OFF ;;
    release-only) cmkfs_configure "$dir" "$CMKFS_RELEASE_BUILD_TYPE" -DCMKFS_BUILD_TESTS=ON -DCMKFS_FUZZ=OFF -DCMKFS_ASAN=OFF -DCMKFS_TSAN=OFF \
      -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON ;;
    asan) cmkfs_configure "$dir" "$CMKFS_SANITIZER_FLAGS" -DCMKFS_BUILD_TESTS=ON -DCMKFS_FUZZ=OFF -DCMKFS_ASAN=ON -DCMKFS_TSAN=OFF \
      -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=OFF ;;
    tsan) cmkfs_configure "$dir" "$CMKFS_SANITIZER_FLAGS" -DCMKFS_BUILD_TESTS=ON -DCMKFS_FUZZ=OFF -DCMKFS_ASAN=OFF -DCMKFS_TSAN=ON \
      -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=OFF ;;
    tsa) CC=clang CXX=clang++ cmkfs_configure "$dir" -DCMKFS_BUILD_TESTS=OFF -DCMKFS_ASAN=OFF -DCMKFS_TSAN=OFF \
      -DCMKFS_THREAD_SAFETY=ON -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=OFF ;;
    *) echo "ci-trees.sh: unknown part '$part'; accepted: release, release-only, asan, tsan, tsa" >&2
       return 2 ;;
  esac
}

cmkfs_restore_release_tree() { # DIR
  cmkfs_configure "$1" "$CMKFS_RELEASE_BUILD_TYPE" -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=OFF
}

cmkfs_build_part() { # PART DIR
  local part=$1 dir=$2
  cmkfs_configure_part "$part" "$dir" || return
  if [ "$part" = release-only ]; then
    cmake --build "$dir" -j"$(nproc)" --target "${CMKFS_RELEASE_ONLY_TARGETS[@]}"
  elif [ "$part" = tsa ]; then
    cmkfs_build_without_warnings "$dir" "${CMKFS_TSA_TARGETS[@]}"
  else
    cmake --build "$dir" -j"$(nproc)"
  fi
}

# Builds TARGETS in DIR; fails if the build fails or prints any warning
# (-Werror makes the compiler's errors; this also catches the rest, such as
# the linker's).
cmkfs_build_without_warnings() { # DIR TARGET...
  local dir=$1 log rc=0
  shift
  log=$(mktemp)
  cmake --build "$dir" -j"$(nproc)" --target "$@" >"$log" 2>&1 || rc=$?
  cat "$log"
  if grep -qi 'warning' "$log"; then
    echo "ci-trees.sh: the build of $dir printed warnings:" >&2
    grep -i 'warning' "$log" >&2
    rc=1
  fi
  rm -f "$log"
  return $rc
}

# Fails unless each ctest label (an exact name) selects at least one test in
# DIR, so that a label filter cannot quietly shrink to nothing.
cmkfs_require_labels() { # DIR LABEL...
  local dir=$1 label n
  shift
  for label in "$@"; do
    n=$(cd "$dir" && ctest -N -L "^${label}\$" | sed -n 's/^Total Tests: //p')
    if [ "${n:-0}" -eq 0 ]; then
      echo "ci-trees.sh: no test has label '$label' in $dir" >&2
      return 1
    fi
  done
}

# Fails unless every test named is registered in DIR.
cmkfs_require_tests() { # DIR NAME...
  local dir=$1 name listed
  shift
  listed=$(cd "$dir" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p')
  for name in "$@"; do
    if ! grep -qxF "$name" <<<"$listed"; then
      echo "ci-trees.sh: test '$name' is not registered in $dir" >&2
      return 1
    fi
  done
}
