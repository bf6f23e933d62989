#!/usr/bin/env bash
# fsx against a plain local file (no daemon): the model checker's own tests.
#  1. a clean run (200k ops in CI, 5M with CMKFS_LONG_TESTS=1) with snapshots
#     taken by `cp` must report 0 mismatches;
#  2. with one write dropped on purpose (--inject-lost-write), fsx must fail,
#     print the seed, the offset and the ops touching it, and --minimize must
#     shrink the failing sequence to a handful of ops including that write.
# Usage: fsx_local.sh FSX
set -euo pipefail
FSX=${1:?path to fsx}
WORK=$(mktemp -d /tmp/cmkfs-fsx-local-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

OPS=${FSX_OPS:-100000}
[[ "${CMKFS_LONG_TESTS:-0}" == 1 ]] && OPS=5000000
SEED=${FSX_SEED:-$RANDOM$RANDOM}

echo "== clean run: $OPS ops, seed $SEED"
"$FSX" --file "$WORK/disk.img" --size 8M --seed "$SEED" --ops "$OPS" \
  --snapshot-every $((OPS / 10)) --snapshot-cmd "cp --sparse=always $WORK/disk.img $WORK/snap-%n" \
  --snapshot-path "$WORK/snap-%n" --snapshot-delete-cmd "rm $WORK/snap-%n" \
  --log-file "$WORK/clean.log" | tee "$WORK/clean.out"
grep -q 'mismatches=0' "$WORK/clean.out" || fail "clean run did not report 0 mismatches"
grep -Eq 'snapshot=[1-9]' "$WORK/clean.out" || fail "clean run took no snapshot"
grep -Eq 'discard=[1-9]' "$WORK/clean.out" || fail "clean run did no discard"
grep -q 'fallocate not supported' "$WORK/clean.out" && fail "local fallocate unsupported?"

echo "== self-test: a lost write must be caught and minimized"
rc=0
"$FSX" --file "$WORK/lost.img" --size 1M --seed 42 --ops 3000 --inject-lost-write 2990 \
  --minimize --minimize-seconds 60 --log-file "$WORK/lost.log" >"$WORK/lost.out" 2>&1 || rc=$?
cat "$WORK/lost.out"
[[ $rc -eq 1 ]] || fail "fsx exited $rc on a lost write, expected 1"
grep -q 'MISMATCH seed=42' "$WORK/lost.out" || fail "no seed in the mismatch report"
grep -Eq 'offset [0-9]+ \(0x' "$WORK/lost.out" || fail "no offset in the mismatch report"
grep -Eq '#29[0-9][0-9] +write' "$WORK/lost.out" || fail "the lost write is not among the listed ops"
grep -q 'replay: ' "$WORK/lost.out" || fail "no replay command line"
n=$(sed -n 's/.*shortest failing sequence found (\([0-9]*\) ops.*/\1/p' "$WORK/lost.out")
[[ -n "$n" && "$n" -le 5 ]] || fail "minimized sequence has ${n:-no} ops, expected at most 5"
[[ -s "$WORK/lost.log.min" ]] || fail "no minimized log written"
# The minimized log replays to the same failure.
rc=0
"$FSX" --file "$WORK/replay.img" --size 1M --seed 42 --inject-lost-write 2990 \
  --replay "$WORK/lost.log.min" || rc=$?
[[ $rc -eq 1 ]] || fail "replaying the minimized log did not fail (exit $rc)"
echo "PASS"
