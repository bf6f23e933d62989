#!/usr/bin/env bash
# The shipped binaries hold no test double, and the engine reaches its
# metadata only through the MetaStore interface.
# Usage: no_test_doubles.sh SOURCE_DIR DOUBLES_LIBRARY SHIPPED_BINARY...
# DOUBLES_LIBRARY (libcmkfs_test_doubles.a) is the positive control of the
# symbol check.
set -euo pipefail
src=$1 control=$2
shift 2
doubles='FaultInjecting|MemoryIoLayer|MemoryFile|PowerCut'
fail() {
  echo "no_test_doubles: $*" >&2
  exit 1
}

syms=$(nm -C "$control") || fail "nm $control failed"
grep -Eq "$doubles" <<<"$syms" ||
  fail "the positive control $control shows no test double symbol ($doubles): the check cannot see them"

for bin in "$@"; do
  syms=$(nm -C "$bin") || fail "nm $bin failed"
  grep -q 'cmkfs::fs::OpenEngine' <<<"$syms" ||
    fail "nm shows no engine symbol in $bin (stripped?): cannot check it"
  if hits=$(grep -E "$doubles" <<<"$syms"); then
    fail "$bin holds test doubles: $(head -3 <<<"$hits" | tr '\n' ' ')"
  fi
  echo "no_test_doubles: $bin: $(wc -l <<<"$syms") symbols, no test double"
done

if hits=$(grep -rlE '<lmdb\.h>|\bmdb_[a-z_]+\(|cmkfs/lmdb\.h|<openssl/' "$src/fs/engine" "$src/fs/volume"); then
  fail "fs/engine or fs/volume reaches LMDB or OpenSSL directly (use cmkfs/meta_store.h, cmkfs/crypto.h): $hits"
fi
echo "no_test_doubles: fs/engine and fs/volume use no LMDB or OpenSSL API"
