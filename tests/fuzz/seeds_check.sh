#!/usr/bin/env bash
# ctest fuzz.seeds_current: the committed seeds are what fuzz_seed_gen makes
# today, and each still reaches the code it was made for.
#   tests/fuzz/seeds_check.sh SEED_GEN FUZZ_BIN_DIR CORPUS_DIR
# 1. Regenerates the structured seeds into a temporary directory.
# 2. Every generated seed must be committed under the same name, with the
#    same bytes (except the seeds made with fresh randomness, below).
# 3. The fresh seeds are replayed: each must decode as its name says
#    (NAME.ok accepted, NAME.bad refused; replay_main.cc).
# 4. The check itself can fail: a truncated valid record named .ok must fail
#    the replay.
set -euo pipefail
gen=$1
bin=$2
corpus=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$gen" "$tmp/gen"

# RSA-OAEP padding and the AES-GCM nonce differ on every run.
randomized=" wrapped_dek/wrapped_dek.ok wrapped_dek/sealed_material.ok wrapped_dek/aead_blob.ok "
fail=0
count=0
while IFS= read -r f; do
  rel=${f#"$tmp/gen/"}
  count=$((count + 1))
  if [[ ! -f "$corpus/$rel" ]]; then
    echo "FAIL: fuzz_seed_gen makes $rel but it is not committed: run fuzz_seed_gen tests/fuzz/corpus" >&2
    fail=1
  elif [[ $randomized != *" $rel "* ]] && ! cmp -s "$f" "$corpus/$rel"; then
    echo "FAIL: committed seed $rel differs from what fuzz_seed_gen makes now: run fuzz_seed_gen tests/fuzz/corpus" >&2
    fail=1
  fi
done < <(find "$tmp/gen" -type f | sort)
[[ $count -gt 0 ]] || { echo "FAIL: fuzz_seed_gen made no seeds" >&2; exit 1; }

for d in "$tmp/gen"/*/; do
  t=$(basename "$d")
  [[ -x "$bin/fuzz_$t" ]] || { echo "FAIL: no replay binary $bin/fuzz_$t" >&2; fail=1; continue; }
  "$bin/fuzz_$t" "$d" >/dev/null || { echo "FAIL: fresh $t seeds do not replay as named" >&2; fail=1; }
done

# A stale seed: a valid resource record cut in half, still named .ok.
mkdir "$tmp/stale"
head -c 40 "$tmp/gen/engine_records/resource.ok" >"$tmp/stale/resource.ok"
if out=$("$bin/fuzz_engine_records" "$tmp/stale" 2>&1); then
  echo "FAIL: the replay accepted a truncated record named .ok" >&2
  fail=1
elif [[ $out != *"was made to be accepted"* ]]; then
  echo "FAIL: the replay failed on the stale seed for another reason: $out" >&2
  fail=1
fi

[[ $fail -eq 0 ]] || exit 1
echo "PASS: $count generated seeds committed and current, each decodes as named; a stale seed fails"
