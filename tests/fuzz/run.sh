#!/usr/bin/env bash
# Builds the libFuzzer targets in a clang build directory and fuzzes each one
# for SECONDS (default 20; the documented long run is 600), starting from the
# committed seeds. Fails if any target crashes, leaks, hits a sanitizer report,
# times out on an input, or violates an invariant.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
# Env: CMKFS_FUZZ_BUILD_DIR (default <repo>/build-fuzz), CMKFS_FUZZ_JOBS (-j
# for the build, default 2), CMKFS_LONG_TESTS=1 (600 s per target),
# CMKFS_FUZZ_NO_BUILD=1 (fuzz the binaries already in $BUILD).
# Crash inputs land in $BUILD/fuzz-artifacts/<target>/; the working corpus
# (seeds plus what libFuzzer found) in $BUILD/fuzz-corpus/<target>/.
# Summary (executions per target): $BUILD/fuzz-summary.txt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=${CMKFS_FUZZ_BUILD_DIR:-$SRC/build-fuzz}
SECONDS_PER_TARGET=${1:-20}
if [[ "${CMKFS_LONG_TESTS:-0}" == 1 && $# -lt 1 ]]; then SECONDS_PER_TARGET=600; fi
shift || true
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
  TARGETS=(config keystore_records engine_records control_protocol pem wrapped_dek)
fi

CXX_BIN=$(command -v clang++-14 || command -v clang++ || true)
[[ -n "$CXX_BIN" ]] || { echo "FAIL: clang++ not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 1; }

if [[ "${CMKFS_FUZZ_NO_BUILD:-0}" == 1 ]]; then
  :
elif [[ ! -f "$BUILD/CMakeCache.txt" ]] || ! grep -q '^CMKFS_FUZZ:BOOL=ON' "$BUILD/CMakeCache.txt"; then
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$CXX_BIN" -DCMKFS_FUZZ=ON >/dev/null
fi
build_targets=()
for t in "${TARGETS[@]}"; do build_targets+=(--target "fuzz_$t"); done
if [[ "${CMKFS_FUZZ_NO_BUILD:-0}" != 1 ]]; then
  cmake --build "$BUILD" -j "${CMKFS_FUZZ_JOBS:-2}" "${build_targets[@]}" >/dev/null ||
    { cmake --build "$BUILD" -j 1 "${build_targets[@]}" 2>&1 | tail -40; exit 1; }
fi

summary=$BUILD/fuzz-summary.txt
: >"$summary"
failed=()
for t in "${TARGETS[@]}"; do
  bin=$(find "$BUILD" -type f -name "fuzz_$t" -perm -u+x | head -1)
  corpus=$BUILD/fuzz-corpus/$t
  artifacts=$BUILD/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  rm -f "$artifacts"/*
  dict=()
  [[ -f "$HERE/$t.dict" ]] && dict=(-dict="$HERE/$t.dict")
  log=$BUILD/fuzz-$t.log
  rc=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$SECONDS_PER_TARGET" -seed="${CMKFS_FUZZ_SEED:-1}" -print_final_stats=1 -timeout=10 \
      -rss_limit_mb=2048 -max_len=8192 "${dict[@]}" -artifact_prefix="$artifacts/" \
      "$corpus" "$HERE/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  n_corpus=$(find "$corpus" -type f | wc -l)
  if [[ $rc -ne 0 ]] || compgen -G "$artifacts/*" >/dev/null; then
    failed+=("$t")
    status=FAIL
    echo "=== fuzz_$t failed (exit $rc); last lines of $log:" >&2
    tail -40 "$log" >&2
  else
    status=ok
  fi
  printf '%-18s %-4s seconds=%s execs=%s execs_per_sec=%s cov=%s corpus=%s\n' \
    "$t" "$status" "$SECONDS_PER_TARGET" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$n_corpus" \
    | tee -a "$summary"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAIL: fuzz targets that crashed: ${failed[*]} (inputs in $BUILD/fuzz-artifacts/)" >&2
  exit 1
fi
echo "PASS: ${#TARGETS[@]} fuzz targets, $SECONDS_PER_TARGET s each"
